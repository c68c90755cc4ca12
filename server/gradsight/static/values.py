"""Constant values of expressions, found without running the code.

A learning rate of `args.lr` is 1e-10 when the parser declares `add_argument("--lr", default=1e-10)`.
The resolver follows literals, module constants, `float("1e-10")`, arithmetic, argparse
defaults, function and constructor defaults, class attributes, dataclass fields and simple
config dicts. Anything it cannot prove gives None, so rules stay quiet rather than guess.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from gradsight.static.memo import SubtreeMemo
from gradsight.static.semantic import Binding, SemanticModel, StatementIndex

_MAX_DEPTH = 30
_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Pow: lambda a, b: a**b,
}
_NAMESPACE_FACTORIES = {"types.SimpleNamespace", "argparse.Namespace", "dict"}


@dataclass(frozen=True)
class Resolved:
    """A value and where it was set.

    `origin` is the expression that contains the value in the source. `via` describes how the
    value reached the place that uses it (for example "the default of --lr"); it is empty
    when the value is written right there.
    """

    value: object
    origin: ast.AST
    via: str = ""


class _Unresolved(Exception):
    pass


class ValueResolver:
    def __init__(self, model: SemanticModel) -> None:
        self.model = model
        self._argument_calls: list[ast.Call] | None = None
        self._arguments_by_dest: dict[str | None, list[ast.Call]] | None = None
        self._mutations: set[tuple[str, str]] | None = None
        self._active: set[int] = set()
        self._binding_values: dict[int, Resolved | None] = {}

    def resolve(self, expr: ast.AST | None) -> Resolved | None:
        """Return the constant value of `expr`, or None when it is not known for certain."""
        if expr is None:
            return None
        try:
            return self._resolve(expr, 0)
        except (_Unresolved, RecursionError, ArithmeticError, TypeError, ValueError, OverflowError):
            return None

    def number(self, expr: ast.AST | None) -> Resolved | None:
        """Return the value of `expr` when it is a real number (bool excluded)."""
        resolved = self.resolve(expr)
        if resolved is None or isinstance(resolved.value, bool) or not isinstance(resolved.value, (int, float)):
            return None
        if isinstance(resolved.value, float) and math.isnan(resolved.value):
            return None
        return resolved

    def unpacked_keyword(self, call: ast.Call, name: str) -> tuple[ast.keyword, ast.expr] | None:
        """Return the `**mapping` argument of `call` that passes keyword `name`, and the expression it passes.

        The mapping must be a dict literal or `dict(...)`, written in the call or bound once to a
        name, and that key must not be written elsewhere in the file. Returns None otherwise.
        """
        found = None
        for keyword in call.keywords:
            if keyword.arg is not None:
                continue
            try:
                entries = self._mapping_entries(keyword.value, 0, attribute=False)
            except RecursionError:
                return None
            if entries is None:
                return None  # A mapping whose keys are unknown may pass `name` too.
            if name in entries:
                if isinstance(keyword.value, ast.Name) and self._is_mutated(keyword.value, name):
                    return None
                found = (keyword, entries[name][0])
        return found

    # The recursive resolver raises _Unresolved instead of returning None, which keeps each case short.

    def _resolve(self, expr: ast.AST, depth: int) -> Resolved:
        if depth > _MAX_DEPTH:
            raise _Unresolved
        if isinstance(expr, ast.Constant):
            return Resolved(expr.value, expr)
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
            inner = self._resolve(expr.operand, depth + 1)
            value = self._numeric(inner.value)
            return Resolved(-value if isinstance(expr.op, ast.USub) else value, inner.origin, inner.via)
        if isinstance(expr, ast.BinOp) and type(expr.op) in _ARITHMETIC:
            return self._binary(expr, depth)
        if isinstance(expr, (ast.Tuple, ast.List)):
            elements = [self._resolve(element, depth + 1).value for element in expr.elts]
            return Resolved(tuple(elements) if isinstance(expr, ast.Tuple) else elements, expr)
        if isinstance(expr, ast.Name):
            return self._name(expr, depth)
        if isinstance(expr, ast.Call):
            return self._call(expr, depth)
        if isinstance(expr, ast.Attribute):
            return self._attribute(expr, depth)
        if isinstance(expr, ast.Subscript):
            return self._subscript(expr, depth)
        raise _Unresolved

    @staticmethod
    def _numeric(value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Unresolved
        return value

    def _binary(self, expr: ast.BinOp, depth: int) -> Resolved:
        left = self._resolve(expr.left, depth + 1)
        right = self._resolve(expr.right, depth + 1)
        if isinstance(expr.op, ast.Mult) and isinstance(left.value, (list, tuple)) and type(right.value) is int and 0 <= right.value <= 64:
            return Resolved(left.value * right.value, left.origin, left.via)  # `[0.5] * 3`
        a, b = self._numeric(left.value), self._numeric(right.value)
        if isinstance(expr.op, ast.Pow) and (abs(b) > 1000 or abs(a) > 1e6):
            raise _Unresolved
        value = _ARITHMETIC[type(expr.op)](a, b)
        # The computed value is written nowhere else, so the expression itself is its origin.
        return Resolved(value, expr)

    # Names

    def _name(self, expr: ast.Name, depth: int) -> Resolved:
        bindings = self.model.lookup(expr.id, expr)
        if not bindings or any(id(binding) in self._active for binding in bindings):
            raise _Unresolved  # `lr = lr * 0.5` refers to itself: not a constant.
        results = []
        for binding in bindings:
            results.append(self._memoised_binding(binding, depth))
        first = results[0]
        if any(result.value != first.value or type(result.value) is not type(first.value) for result in results[1:]):
            raise _Unresolved
        if not first.via:
            first = Resolved(first.value, first.origin, f"`{expr.id}`")
        return first

    def _memoised_binding(self, binding: Binding, depth: int) -> Resolved:
        # Memoised, failures included, so that chains of names with several bindings stay linear.
        key = id(binding)
        if key in self._binding_values:
            cached = self._binding_values[key]
            if cached is None:
                raise _Unresolved
            return cached
        self._active.add(key)
        try:
            result: Resolved | None = self._binding(binding, depth + 1)
        except _Unresolved:
            result = None
        finally:
            self._active.discard(key)
        self._binding_values[key] = result
        if result is None:
            raise _Unresolved
        return result

    def _binding(self, binding: Binding, depth: int) -> Resolved:
        if binding.kind == "assign" and binding.value is not None:
            return self._element(self._resolve_value_at(binding.value, binding.index, depth), binding.index)
        if binding.kind == "param":
            return self._parameter(binding, depth)
        raise _Unresolved

    def _resolve_value_at(self, value: ast.expr, index: tuple[int, ...], depth: int) -> Resolved:
        # `a, b = 1e-3, 0.9` binds each name to an element of a tuple literal: resolve that element only.
        node: ast.AST = value
        for position in index:
            if isinstance(node, (ast.Tuple, ast.List)) and position < len(node.elts) and not any(isinstance(e, ast.Starred) for e in node.elts):
                node = node.elts[position]
            else:
                return self._resolve(node, depth + 1)
        return self._resolve(node, depth + 1)

    @staticmethod
    def _element(resolved: Resolved, index: tuple[int, ...]) -> Resolved:
        if not index or not isinstance(resolved.value, (tuple, list)):
            return resolved
        value: object = resolved.value
        for position in index:
            if not isinstance(value, (tuple, list)) or position >= len(value):
                raise _Unresolved
            value = value[position]
        return Resolved(value, resolved.origin, resolved.via)

    def _parameter(self, binding: Binding, depth: int) -> Resolved:
        """Resolve a parameter to its default when no call in this file passes it."""
        function = binding.scope.node
        if binding.value is None or not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise _Unresolved
        if self._parameter_is_passed(function, binding.name):
            raise _Unresolved
        default = self._resolve(binding.value, depth + 1)
        return Resolved(default.value, default.origin, f"the default of parameter `{binding.name}` of `{function.name}()`")

    def _parameter_is_passed(self, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
        arguments = function.args
        positional = [arg.arg for arg in [*arguments.posonlyargs, *arguments.args]]
        owner = self.model.enclosing_class(function)
        is_method = owner is not None and self.model.parent(function) is owner
        callee = owner.name if is_method and function.name == "__init__" else function.name
        if is_method and positional and not any(
            isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
        ):
            positional = positional[1:]
        for call in self._calls_named(callee):
            if any(isinstance(arg, ast.Starred) for arg in call.args) or any(k.arg is None for k in call.keywords):
                return True
            if any(keyword.arg == name for keyword in call.keywords):
                return True
            if name in positional and positional.index(name) < len(call.args):
                return True
        return False

    def _is_mutated(self, base: ast.AST, key: str) -> bool:
        """Tell whether `base.key` or `base[key]` is written anywhere in the file, or `base` is updated."""
        if not isinstance(base, ast.Name):
            return False
        if self._mutations is None:
            self._mutations = set().union(*(_mutations_in(index) for index in self.model.statement_indexes))
        return (base.id, key) in self._mutations or (base.id, "*") in self._mutations

    def _calls_named(self, name: str) -> list[ast.Call]:
        return self.model.calls_named(name)

    # Calls

    def _call(self, expr: ast.Call, depth: int) -> Resolved:
        func = expr.func
        if isinstance(func, ast.Name) and func.id in ("float", "int") and len(expr.args) == 1 and not expr.keywords:
            inner = self._resolve(expr.args[0], depth + 1)
            if isinstance(inner.value, (str, int, float)) and not isinstance(inner.value, bool):
                converted = float(inner.value) if func.id == "float" else int(inner.value)
                return Resolved(converted, inner.origin, inner.via)
        if isinstance(func, ast.Attribute) and func.attr == "get" and expr.args:
            key = self._resolve(expr.args[0], depth + 1).value
            if isinstance(key, str) and not self._is_mutated(func.value, key):
                found = self._mapping_entry(func.value, key, depth + 1)
                if found is not None:
                    return found
                if len(expr.args) > 1 and self._mapping_keys(func.value, depth + 1) is not None:
                    return self._resolve(expr.args[1], depth + 1)
        raise _Unresolved

    # Attributes: argparse results, class attributes, namespaces and instance attributes

    def _attribute(self, expr: ast.Attribute, depth: int) -> Resolved:
        base = expr.value
        if isinstance(base, ast.Name) and base.id == "self":
            return self._self_attribute(expr, depth)
        if _is_self_attribute(base, "hparams"):
            return self._saved_hyperparameter(expr, depth)
        if self._is_mutated(base, expr.attr):
            raise _Unresolved
        if self._is_parse_result(base, depth):
            return self._argparse_default(expr.attr, depth)
        found = self._mapping_entry(base, expr.attr, depth + 1, attribute=True)
        if found is not None:
            return found
        raise _Unresolved

    def _is_parse_result(self, expr: ast.AST, depth: int) -> bool:
        if depth > _MAX_DEPTH:
            return False
        if isinstance(expr, ast.Name):
            bindings = self.model.lookup(expr.id, expr)
            if len(bindings) == 1 and bindings[0].kind == "param":
                return self._parameter_receives_parse_result(bindings[0], depth + 1)
        source = self._source_of(expr, depth)
        if source is None:
            return False
        value, index = source
        if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Constant) and value.slice.value == 0:
            value, index = value.value, (0,)
        if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Attribute):
            return self._returns_parse_result(value, depth)
        if value.func.attr == "parse_args":
            return index == ()
        if value.func.attr == "parse_known_args":
            return index == (0,)
        return self._returns_parse_result(value, depth)

    def _parameter_receives_parse_result(self, binding: Binding, depth: int) -> bool:
        """Tell whether every call in this file passes an argparse result for this parameter (`train(args)`)."""
        function = binding.scope.node
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) or binding.value is not None:
            return False
        positional = [arg.arg for arg in [*function.args.posonlyargs, *function.args.args]]
        if binding.name not in positional and binding.name not in [arg.arg for arg in function.args.kwonlyargs]:
            return False
        calls = [call for call in self._calls_named(function.name) if isinstance(call.func, ast.Name)]
        if not calls:
            return False
        for call in calls:
            passed = next((k.value for k in call.keywords if k.arg == binding.name), None)
            if passed is None and binding.name in positional and positional.index(binding.name) < len(call.args):
                passed = call.args[positional.index(binding.name)]
            if passed is None or isinstance(passed, ast.Starred) or not self._is_parse_result(passed, depth + 1):
                return False
        return True

    def _returns_parse_result(self, value: ast.AST, depth: int) -> bool:
        # `args = get_args()` where get_args() returns parser.parse_args().
        if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Name) or depth > _MAX_DEPTH:
            return False
        functions = self.model.functions.get(value.func.id, [])
        if len(functions) != 1:
            return False
        returns = [node.value for node in ast.walk(functions[0]) if isinstance(node, ast.Return) and node.value is not None]
        return bool(returns) and all(self._is_parse_result(ret, depth + 1) for ret in returns)

    def _source_of(self, expr: ast.AST, depth: int) -> tuple[ast.AST, tuple[int, ...]] | None:
        """Return the single expression a name was assigned from, with the tuple index it takes."""
        if not isinstance(expr, ast.Name):
            return (expr, ())
        bindings = [b for b in self.model.lookup(expr.id, expr)]
        if len(bindings) != 1 or bindings[0].kind != "assign" or bindings[0].value is None:
            return None
        return bindings[0].value, bindings[0].index

    def _argparse_default(self, dest: str, depth: int) -> Resolved:
        # parser.set_defaults(lr=...) wins over add_argument(default=...).
        for call in self._calls_named("set_defaults"):
            for keyword in call.keywords:
                if keyword.arg == dest:
                    value = self._resolve(keyword.value, depth + 1)
                    return Resolved(value.value, value.origin, f"parser.set_defaults({dest}=...)")
        candidates: list[Resolved] = []
        for call in self._argument_definitions_of(dest):
            keywords = {k.arg: k.value for k in call.keywords if k.arg}
            option = _first_option(call)
            via = f"the default of {option}" if option else f"the default of argument `{dest}`"
            required = keywords.get("required")
            if isinstance(required, ast.Constant) and required.value is True:
                raise _Unresolved  # The default of a required option is never used.
            if "default" in keywords:
                default = self._resolve(keywords["default"], depth + 1)
                value = default.value
                # argparse passes string defaults through `type`, so default="1e-10" with type=float is 1e-10.
                type_name = keywords.get("type")
                if isinstance(value, str) and isinstance(type_name, ast.Name) and type_name.id in ("float", "int"):
                    value = float(value) if type_name.id == "float" else int(value)
                candidates.append(Resolved(value, default.origin, via))
            else:
                raise _Unresolved
        if not candidates or any(candidate.value != candidates[0].value for candidate in candidates):
            raise _Unresolved
        return candidates[0]

    def _argument_definitions(self) -> list[ast.Call]:
        if self._argument_calls is None:
            self._argument_calls = list(self._calls_named("add_argument"))
        return self._argument_calls

    def _argument_definitions_of(self, dest: str) -> list[ast.Call]:
        """Return the `add_argument` calls that set `dest`, in file order."""
        if self._arguments_by_dest is None:
            self._arguments_by_dest = {}
            for call in self._argument_definitions():
                self._arguments_by_dest.setdefault(_argument_dest(call), []).append(call)
        return self._arguments_by_dest.get(dest, [])

    def _self_attribute(self, expr: ast.Attribute, depth: int) -> Resolved:
        owner = self.model.enclosing_class(expr)
        if owner is None:
            raise _Unresolved
        values = [
            node.value
            for node in self.model.subtree(owner)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            and node.value is not None
            and any(_is_self_attribute(target, expr.attr) for target in _assign_targets(node))
        ]
        if len(values) != 1:
            raise _Unresolved
        resolved = self._resolve(values[0], depth + 1)
        return Resolved(resolved.value, resolved.origin, resolved.via or f"`self.{expr.attr}`")

    def _saved_hyperparameter(self, expr: ast.Attribute, depth: int) -> Resolved:
        """Resolve Lightning's `self.hparams.name`: the `__init__` argument that `save_hyperparameters()` stored."""
        owner = self.model.enclosing_class(expr)
        if owner is None:
            raise _Unresolved
        saves = [
            node
            for node in self.model.subtree(owner)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "save_hyperparameters"
        ]
        init = next((node for node in owner.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"), None)
        if not saves or init is None or any(save.args or save.keywords for save in saves):
            raise _Unresolved  # save_hyperparameters("lr") or a dict argument: not followed
        scope = self.model.scopes.get(init)
        bindings = scope.bindings.get(expr.attr, []) if scope is not None else []
        params = [binding for binding in bindings if binding.kind == "param"]
        if len(params) != 1:
            raise _Unresolved
        return self._parameter(params[0], depth + 1)

    # Mappings: dict literals, dict(...), namespaces, classes and their instances

    def _mapping_entry(self, expr: ast.AST, key: str, depth: int, attribute: bool = False) -> Resolved | None:
        entries = self._mapping_entries(expr, depth, attribute)
        if entries is None or key not in entries:
            return None
        value, label = entries[key]
        resolved = self._resolve(value, depth + 1)
        return Resolved(resolved.value, resolved.origin, resolved.via or label)

    def _mapping_keys(self, expr: ast.AST, depth: int) -> set[str] | None:
        entries = self._mapping_entries(expr, depth, attribute=False)
        return None if entries is None else set(entries)

    def _mapping_entries(self, expr: ast.AST, depth: int, attribute: bool) -> dict[str, tuple[ast.expr, str]] | None:
        """Return the keys of a mapping-like value and the expressions stored under them.

        For attribute access, classes (class attributes and dataclass fields) and instances
        constructed from them count as mappings too.
        """
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Name):
            bindings = self.model.lookup(expr.id, expr)
            if len(bindings) != 1:
                return None
            binding = bindings[0]
            if binding.kind == "class" and attribute:
                return _class_fields(binding.node, expr.id)  # type: ignore[arg-type]
            if binding.kind != "assign" or binding.value is None or binding.index:
                return None
            return self._literal_entries(binding.value, expr.id, depth + 1, attribute)
        if isinstance(expr, ast.Subscript):
            key = self.resolve(expr.slice)
            if key is None or not isinstance(key.value, str):
                return None
            inner = self._mapping_entries(expr.value, depth + 1, attribute=False)
            if inner is None or key.value not in inner:
                return None
            return self._literal_entries(inner[key.value][0], key.value, depth + 1, attribute)
        if isinstance(expr, ast.Attribute) and attribute:
            inner = self._mapping_entries(expr.value, depth + 1, attribute=True)
            if inner is None or expr.attr not in inner:
                return None
            return self._literal_entries(inner[expr.attr][0], expr.attr, depth + 1, attribute)
        return self._literal_entries(expr, "", depth + 1, attribute)

    def _literal_entries(self, value: ast.AST, label: str, depth: int, attribute: bool) -> dict[str, tuple[ast.expr, str]] | None:
        where = f"`{label}`" if label else "the config"
        if isinstance(value, ast.Dict) and not attribute:
            entries = {}
            for key, item in zip(value.keys, value.values):
                if key is None:
                    return None  # `**other` may override any key.
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    entries[key.value] = (item, f"{where}[{key.value!r}]")
            return entries
        if not isinstance(value, ast.Call):
            if isinstance(value, (ast.Name, ast.Subscript, ast.Attribute)):
                return self._mapping_entries(value, depth + 1, attribute)
            return None
        qualname = self.model.call_qualname(value) or (value.func.id if isinstance(value.func, ast.Name) else None)
        if qualname in _NAMESPACE_FACTORIES and (attribute == (qualname != "dict")):
            if value.args:
                return None
            return {k.arg: (k.value, f"{where}.{k.arg}" if attribute else f"{where}[{k.arg!r}]") for k in value.keywords if k.arg}
        if attribute and isinstance(value.func, ast.Name):
            classes = self.model.classes.get(value.func.id, [])
            bindings = self.model.lookup(value.func.id, value)
            if len(classes) == 1 and len(bindings) == 1 and bindings[0].kind == "class":
                if value.args or any(k.arg is None for k in value.keywords):
                    return None
                fields = _class_fields(classes[0], label or value.func.id)
                if fields is None:
                    return None
                for keyword in value.keywords:
                    fields[keyword.arg] = (keyword.value, f"{where}.{keyword.arg}")  # type: ignore[index]
                return fields
        return None

    def _subscript(self, expr: ast.Subscript, depth: int) -> Resolved:
        key = self._resolve(expr.slice, depth + 1).value
        if isinstance(key, str) and self._is_mutated(expr.value, key):
            raise _Unresolved
        if isinstance(key, str):
            if isinstance(expr.value, ast.Call) and isinstance(expr.value.func, ast.Name) and expr.value.func.id == "vars":
                if len(expr.value.args) == 1 and self._is_parse_result(expr.value.args[0], depth):
                    return self._argparse_default(key, depth)
            if self._is_vars_of_parse_result(expr.value, depth):
                return self._argparse_default(key, depth)
            found = self._mapping_entry(expr.value, key, depth + 1)
            if found is not None:
                return found
        if isinstance(key, int) and not isinstance(key, bool):
            container = self._resolve(expr.value, depth + 1)
            if isinstance(container.value, (tuple, list)) and -len(container.value) <= key < len(container.value):
                return Resolved(container.value[key], container.origin, container.via)
        raise _Unresolved

    def _is_vars_of_parse_result(self, expr: ast.AST, depth: int) -> bool:
        source = self._source_of(expr, depth) if isinstance(expr, ast.Name) else None
        if source is None:
            return False
        value, _ = source
        return (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "vars"
            and len(value.args) == 1
            and self._is_parse_result(value.args[0], depth + 1)
        )


def _assign_targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return list(node.targets) if isinstance(node, ast.Assign) else [node.target]


def _is_self_attribute(target: ast.AST, attr: str) -> bool:
    return (
        isinstance(target, ast.Attribute)
        and target.attr == attr
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    )


def _class_fields(node: ast.ClassDef, label: str) -> dict[str, tuple[ast.expr, str]] | None:
    """Return class-level assignments (plain attributes and dataclass fields with a default)."""
    fields: dict[str, tuple[ast.expr, str]] = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            fields[statement.targets[0].id] = (statement.value, f"`{label}.{statement.targets[0].id}`")
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None and isinstance(statement.target, ast.Name):
            value = statement.value
            # A dataclass field(default=...) passes its default as a keyword.
            if isinstance(value, ast.Call) and isinstance(value.func, (ast.Name, ast.Attribute)):
                func_name = value.func.id if isinstance(value.func, ast.Name) else value.func.attr
                default = next((k.value for k in value.keywords if k.arg == "default"), None)
                if func_name == "field" and default is not None:
                    value = default
            fields[statement.target.id] = (value, f"`{label}.{statement.target.id}`")
    return fields


def _argument_dest(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "dest" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
            return keyword.value.value
    options = [arg.value for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    long_options = [option for option in options if option.startswith("--")]
    if long_options:
        return long_options[0][2:].replace("-", "_")
    short_options = [option for option in options if option.startswith("-")]
    if short_options:
        return short_options[0][1:].replace("-", "_")
    return options[0] if options else None


def _first_option(call: ast.Call) -> str | None:
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _find_mutations(index: StatementIndex) -> frozenset[tuple[str, str]]:
    """Return the (name, key) pairs that one top-level statement writes: `name.key = ...`, `name[key] = ...`, `name.update(...)` ("*")."""
    found: set[tuple[str, str]] = set()
    candidates = [*index.nodes_of(ast.Attribute), *index.nodes_of(ast.Subscript), *index.nodes_of(ast.Call)]
    for node in candidates:
        target_key = None
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            target_key = node.attr
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                target_key = node.slice.value
            else:
                target_key = "*"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("update", "setdefault", "pop", "__setitem__", "merge_from_file", "merge_from_list"):
                target_key, node = "*", node.func
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
            target_key, node = "*", ast.Attribute(value=node.args[0], attr="*")
        if target_key is not None and isinstance(node.value, ast.Name):  # type: ignore[union-attr]
            found.add((node.value.id, target_key))  # type: ignore[union-attr]
    return frozenset(found)


# Depends on one statement alone, so it is kept across edits (see memo.py).
_mutations_in = SubtreeMemo(_find_mutations)
