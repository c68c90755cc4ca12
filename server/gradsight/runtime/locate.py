"""Map the layer names of a live model (`features.0`, `layer_4`, `blocks[0]`) to source lines.

The mapping is static: it parses the debugged script and the other given files and never
imports them. It starts at the model's class, or at the `model = nn.Sequential(...)` assignment,
and follows each part of the name through:

- `self.<name> = ...` in a class's `__init__`;
- the n-th element of an `nn.Sequential(...)` or `nn.ModuleList([...])` call, expanding
  `*layers` when the list is built in loops with a constant count;
- a factory function's returned expression, and list comprehensions.

A part it cannot follow ends the walk at the last place found, or at the `nn.Sequential` call
whose elements it cannot count. A model whose start point is not found gets no locations.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

SEQUENTIAL_NAMES = {"Sequential", "ModuleList", "ParameterList"}

_PART = re.compile(r"\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?\d+)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class SourceSpan:
    """A place in one source: 1-based lines, 1-based columns counted in code points."""

    source: str
    line: int
    column: int
    end_line: int
    end_column: int


def split_layer_name(name: str) -> list[str]:
    """Split `blocks[0].conv` into `["blocks", "0", "conv"]`, with quotes of dict keys removed."""
    parts = []
    for match in _PART.finditer(name):
        bracketed, plain = match.groups()
        if bracketed is not None:
            parts.append(ast.literal_eval(bracketed) if bracketed[0] in "'\"" else bracketed)
        else:
            parts.append(plain)
    return [str(part) for part in parts]


# Locators of recent source sets: `gradsight.watch` checks the same files every few steps, and
# parsing a long training script each time would cost more than the rest of a check.
_LOCATORS_KEPT = 4
_recent_locators: dict[tuple[tuple[str, int], ...], LayerLocator] = {}
_locators_lock = threading.Lock()


def locator_for(sources: dict[str, str]) -> LayerLocator:
    """Return a LayerLocator of `sources` (key: text), reusing the one built for the same texts."""
    key = tuple(sorted((path, hash(text)) for path, text in sources.items()))
    with _locators_lock:
        found = _recent_locators.get(key)
    if found is not None and found.sources == sources:
        return found
    found = LayerLocator(sources)
    with _locators_lock:
        _recent_locators[key] = found
        while len(_recent_locators) > _LOCATORS_KEPT:
            del _recent_locators[next(iter(_recent_locators))]
    return found


class LayerLocator:
    """Parsed sources of a debugged program, for looking up where layers are built."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = dict(sources)
        self._texts = {}
        self._classes: dict[str, tuple[str, ast.ClassDef]] = {}
        self._functions: dict[str, tuple[str, ast.FunctionDef]] = {}
        self._assignments: dict[str, list[tuple[str, ast.expr, ast.AST]]] = {}
        self._scopes: dict[int, ast.AST] = {}
        for key, text in sources.items():
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
            self._texts[key] = text.splitlines()
            self._index(key, tree)

    def locate(self, model_type: str, model_names: Iterable[str], layer_names: Iterable[str]) -> dict[str, SourceSpan | None]:
        """Return the span that builds each layer of a model of class `model_type`."""
        root = self._root(model_type, list(model_names))
        result: dict[str, SourceSpan | None] = {}
        for name in layer_names:
            result[name] = None if root is None or not name else self._walk(root, split_layer_name(name))
        return result

    def locate_own_parameters(self, model_type: str, model_names: Iterable[str], parameter_names: list[str]) -> SourceSpan | None:
        """Return where the model's own parameters are built: the first of `parameter_names` found
        as `self.<name> = ...` in its class, or the call that builds the whole model, such as
        `model = nn.Linear(...)`."""
        root = self._root(model_type, list(model_names))
        if root is None:
            return None
        for name in parameter_names:
            found = self._walk(root, [name])
            if found is not None:
                return found
        key, node = self._resolve(*root)
        if isinstance(node, ast.Call) and _call_name(node) not in SEQUENTIAL_NAMES:
            return self._span(key, node)
        return None

    # Indexing.

    def _index(self, key: str, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self._scopes.setdefault(id(child), node)
            if isinstance(node, ast.ClassDef):
                self._classes.setdefault(node.name, (key, node))
            elif isinstance(node, ast.FunctionDef) and isinstance(self._scopes.get(id(node)), ast.Module):
                self._functions.setdefault(node.name, (key, node))
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self._assignments.setdefault(node.targets[0].id, []).append((key, node.value, node))

    def _root(self, model_type: str, model_names: list[str]) -> tuple[str, ast.AST] | None:
        if model_type in self._classes:
            return self._classes[model_type]
        for name in model_names:
            for key, value, _ in self._assignments.get(name, []):
                if isinstance(value, ast.Call):
                    return key, value
        for assignments in self._assignments.values():
            for key, value, _ in assignments:
                if isinstance(value, ast.Call) and _call_name(value) == model_type:
                    return key, value
        return None

    # Walking a layer name.

    def _walk(self, root: tuple[str, ast.AST], parts: list[str]) -> SourceSpan | None:
        key, node = root
        found: SourceSpan | None = None
        for part in parts:
            step = self._step(key, node, part)
            if step is None:
                # An element of a Sequential whose arguments cannot be followed: the call itself.
                container_key, container = self._resolve(key, node)
                if isinstance(container, ast.Call) and _call_name(container) in SEQUENTIAL_NAMES:
                    return self._span(container_key, container)
                return found
            key, node = step
            found = self._span(key, node)
        return found

    def _step(self, key: str, node: ast.AST, part: str) -> tuple[str, ast.AST] | None:
        """Return the expression that builds child `part` of the module built by `node`."""
        node_key, node = self._resolve(key, node)
        if isinstance(node, ast.ClassDef):
            return self._attribute_in_class(node_key, node, part)
        if isinstance(node, ast.Call) and _call_name(node) in SEQUENTIAL_NAMES and part.lstrip("-").isdigit():
            elements = self._sequence_elements(node_key, node)
            index = int(part)
            if elements is not None and -len(elements) <= index < len(elements):
                return node_key, elements[index]
            return None
        if isinstance(node, (ast.List, ast.Tuple)) and part.lstrip("-").isdigit():
            index = int(part)
            return (node_key, node.elts[index]) if -len(node.elts) <= index < len(node.elts) else None
        if isinstance(node, ast.ListComp):
            return node_key, node.elt
        if isinstance(node, ast.Dict):
            for dict_key, value in zip(node.keys, node.values):
                if isinstance(dict_key, ast.Constant) and str(dict_key.value) == part:
                    return node_key, value
        return None

    def _resolve(self, key: str, node: ast.AST, depth: int = 0) -> tuple[str, ast.AST]:
        """Follow a user class's constructor, a factory function's return value or a variable."""
        if depth > 8:
            return key, node
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in self._classes and name not in SEQUENTIAL_NAMES:
                return self._classes[name]
            if name in self._functions:
                function_key, function = self._functions[name]
                returned = [n.value for n in ast.walk(function) if isinstance(n, ast.Return) and n.value is not None]
                if len(returned) == 1:
                    return self._resolve(function_key, returned[0], depth + 1)
        if isinstance(node, ast.Name):
            assignments = [item for item in self._assignments.get(node.id, []) if item[0] == key]
            if len(assignments) == 1:
                return self._resolve(key, assignments[0][1], depth + 1)
        return key, node

    def _attribute_in_class(self, key: str, cls: ast.ClassDef, attribute: str) -> tuple[str, ast.AST] | None:
        for node in ast.walk(cls):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr == attribute
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        return key, node.value
            if isinstance(node, ast.Call) and _call_name(node) in ("add_module", "register_module"):
                if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == attribute:
                    return (key, node.args[1]) if len(node.args) > 1 else (key, node)
        for base in cls.bases:
            base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
            if base_name in self._classes and base_name != cls.name:
                base_key, base_class = self._classes[base_name]
                found = self._attribute_in_class(base_key, base_class, attribute)
                if found is not None:
                    return found
        return None

    def _sequence_elements(self, key: str, call: ast.Call) -> list[ast.expr] | None:
        """Return the modules of a Sequential or ModuleList call in order, or None when unknown."""
        arguments = list(call.args)
        if _call_name(call) != "Sequential" and len(arguments) == 1:
            inner = arguments[0]
            if isinstance(inner, (ast.List, ast.Tuple)):
                arguments = list(inner.elts)
            elif isinstance(inner, ast.Name):
                arguments = [ast.Starred(value=inner)]
            else:
                return None
        elements: list[ast.expr] = []
        for argument in arguments:
            if not isinstance(argument, ast.Starred):
                elements.append(argument)
                continue
            if not isinstance(argument.value, ast.Name):
                return None
            expanded = self._list_elements(key, argument.value.id, call)
            if expanded is None:
                return None
            elements.extend(expanded)
        return elements

    def _list_elements(self, key: str, name: str, use: ast.AST) -> list[ast.expr] | None:
        """Return the elements of list `name` as built before `use`, following constant-count loops."""
        scope = self._scopes.get(id(use))
        while scope is not None and not isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = self._scopes.get(id(scope))
        if scope is None:
            return None
        builder = _ListBuilder(name, use)
        builder.run(scope.body)
        return builder.elements if builder.known else None

    def _span(self, key: str, node: ast.AST) -> SourceSpan | None:
        if not hasattr(node, "lineno"):
            return None
        lines = self._texts[key]
        end_line = getattr(node, "end_lineno", node.lineno) or node.lineno
        end_offset = getattr(node, "end_col_offset", node.col_offset) or node.col_offset
        return SourceSpan(
            source=key,
            line=node.lineno,
            column=_code_points(lines, node.lineno, node.col_offset) + 1,
            end_line=end_line,
            end_column=_code_points(lines, end_line, end_offset) + 1,
        )


class _ListBuilder:
    """Replay the statements that build a list variable: `=`, `+=`, `append`, `extend`, loops."""

    def __init__(self, name: str, stop_at: ast.AST) -> None:
        self.name = name
        self.stop_at = stop_at
        self.elements: list[ast.expr] = []
        self.known = False
        self.stopped = False

    def run(self, statements: list[ast.stmt], repeat: int = 1) -> None:
        for statement in statements:
            if self.stopped:
                return
            if any(node is self.stop_at for node in ast.walk(statement)):
                self.stopped = True
                return
            self._statement(statement, repeat)

    def _statement(self, statement: ast.stmt, repeat: int) -> None:
        if isinstance(statement, ast.For):
            count = _constant_range(statement.iter)
            if count is None:
                if self._mentions(statement):
                    self.known = False
                    self.stopped = True
                return
            for _ in range(count):
                self.run(statement.body, repeat)
            return
        if isinstance(statement, (ast.If, ast.While, ast.With, ast.Try)):
            if self._mentions(statement):
                self.known = False
                self.stopped = True
            return
        if isinstance(statement, ast.Assign) and _is_name(statement.targets[0], self.name):
            if isinstance(statement.value, (ast.List, ast.Tuple)):
                self.elements = list(statement.value.elts)
                self.known = True
            else:
                self.known = False
                self.stopped = True
        elif isinstance(statement, ast.AugAssign) and _is_name(statement.target, self.name):
            self._add(statement.value)
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            call = statement.value
            function = call.func
            if isinstance(function, ast.Attribute) and _is_name(function.value, self.name) and call.args:
                if function.attr == "append":
                    self.elements.append(call.args[0])
                elif function.attr == "extend":
                    self._add(call.args[0])

    def _add(self, value: ast.expr) -> None:
        if isinstance(value, (ast.List, ast.Tuple)):
            self.elements.extend(value.elts)
        else:
            self.known = False
            self.stopped = True

    def _mentions(self, statement: ast.stmt) -> bool:
        return any(_is_name(node, self.name) for node in ast.walk(statement))


def _constant_range(iterator: ast.expr) -> int | None:
    """Return N for `range(N)` with a literal N up to 10,000, else None."""
    if (
        isinstance(iterator, ast.Call)
        and _call_name(iterator) == "range"
        and len(iterator.args) == 1
        and isinstance(iterator.args[0], ast.Constant)
        and isinstance(iterator.args[0].value, int)
        and 0 <= iterator.args[0].value <= 10_000
    ):
        return iterator.args[0].value
    return None


def _call_name(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return None


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _code_points(lines: list[str], line: int, byte_offset: int) -> int:
    """Convert ast's UTF-8 byte offset on a 1-based line into a count of code points."""
    if not 1 <= line <= len(lines):
        return byte_offset
    return len(lines[line - 1].encode("utf-8")[:byte_offset].decode("utf-8", "replace"))
