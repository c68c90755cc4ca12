"""The semantic model of one file: scopes, name bindings, imports and qualified names.

It is built in one pass over the tree before the rules run, so a rule can ask what a name
refers to anywhere in the file, including names bound after the place that uses them.
"""

from __future__ import annotations

import ast
import itertools
import threading
from collections.abc import Iterator
from typing import Any
from dataclasses import dataclass, field

from gradsight.static.memo import SubtreeMemo

ScopeNode = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef

# qualname() gives up after following this many names and attributes (alias cycles such as `a = b; b = a`).
_MAX_QUALNAME_DEPTH = 20
# Submodules whose classes torch re-exports one level up: `torch.optim.sgd.SGD` is `torch.optim.SGD`.
_REEXPORTING_PACKAGES = ("torch.optim.", "torch.nn.modules.", "torchvision.transforms.", "torchvision.models.")


@dataclass(eq=False)
class Binding:
    """One place where a name gets a value.

    `kind` is one of: "assign" (the value is `value`), "param" (a function parameter whose
    default is `value`), "for" (a loop target; `value` is the iterable), "import", "def",
    "class", "with", "other" (augmented assignment, except handler, del, star targets and other
    forms whose value is not tracked).
    `index` selects an element when the target is part of a tuple: `a, b = f()` binds `b` at
    index 1 of the value.
    """

    name: str
    kind: str
    node: ast.AST
    scope: Scope
    value: ast.expr | None = None
    index: tuple[int, ...] = ()
    qualname: str | None = None


@dataclass(eq=False)
class Scope:
    node: ScopeNode
    parent: Scope | None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    global_names: set[str] = field(default_factory=set)
    nonlocal_names: set[str] = field(default_factory=set)

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)

    def add(self, binding: Binding) -> None:
        self.bindings.setdefault(binding.name, []).append(binding)


def canonical_qualname(name: str) -> str:
    """Map a class's defining-module path to the path users import it from."""
    for package in _REEXPORTING_PACKAGES:
        if not name.startswith(package):
            continue
        rest = name[len(package):].split(".")
        # Drop private or lowercase submodules between the package and a capitalised class name.
        if len(rest) >= 2 and rest[-1][:1].isupper() and all(part[:1].islower() or part.startswith("_") for part in rest[:-1]):
            if package == "torch.optim." and rest[0] == "lr_scheduler":
                return "torch.optim.lr_scheduler." + rest[-1]
            if package == "torchvision.transforms." and rest[0] == "v2":
                return "torchvision.transforms.v2." + rest[-1]
            if package == "torch.nn.modules.":
                return "torch.nn." + rest[-1]
            return package + rest[-1]
    return name


class SemanticModel:
    """Scopes, bindings and parent links of a parsed module."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents: dict[ast.AST, ast.AST] = {}
        self.scopes: dict[ast.AST, Scope] = {}
        self.classes: dict[str, list[ast.ClassDef]] = {}
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        # Nodes by type, in walk order, and calls by the name they call (`f()`, `x.f()`), gathered
        # from the statement indexes on the first request.
        self._nodes_by_type: dict[type[ast.AST], list[ast.AST]] = {}
        self._calls_by_name: dict[str, list[ast.Call]] = {}
        self.module_scope = Scope(tree, None)
        self.scopes[tree] = self.module_scope
        self._scope_of: dict[ast.AST, Scope] = {}
        # qualname() of a name per (scope, name), with how many levels deeper its aliases led.
        self._name_qualnames: dict[tuple[Scope, str], tuple[str | None, int]] = {}
        # qualname() of expressions, memoised: many rules ask about the same call.
        self._qualnames: dict[ast.AST, str | None] = {}
        self._deepest = 0  # the deepest level the current qualname() call reached
        self._indexes = [_statement_index(statement) for statement in tree.body]  # type: ignore[misc]
        for statement, index in zip(tree.body, self._indexes):
            self._add_statement(statement, index)
        # What the module scope binds, as far as qualname() can tell: equal for two sources, the
        # qualnames of unchanged statements are equal too, and are reused from the last analysis.
        self._environment = _environment_id(tuple(index.module_signature() for index in self._indexes))

    def _add_statement(self, statement: ast.stmt, index: StatementIndex) -> None:
        """Merge what collecting one top-level statement found into this model, in walk order."""
        for name, classes in index.classes.items():
            self.classes.setdefault(name, []).extend(classes)
        for name, functions in index.functions.items():
            self.functions.setdefault(name, []).extend(functions)
        self.parents.update(index.parents)
        self.parents[statement] = self.tree
        self.scopes.update(index.scopes)
        module_scope = self.module_scope
        module_scope.global_names.update(index.module_scope.global_names)
        for binding in index.module_scope.ordered:
            module_scope.add(Binding(binding.name, binding.kind, binding.node, module_scope, binding.value, binding.index, binding.qualname))

    # Structure

    @property
    def statement_indexes(self) -> list[StatementIndex]:
        """The index of each top-level statement, in order: for results that can be kept per statement across edits."""
        return self._indexes

    @property
    def nodes(self) -> list[ast.AST]:
        """Every node of the tree but the module, in walk order."""
        return [node for index in self._indexes for node in index.nodes]

    def calls_named(self, name: str) -> list[ast.Call]:
        """Return the calls of `name()` and `<anything>.name()` in the file; do not modify the list."""
        return self._gathered(self._calls_by_name, "calls_by_name", name)

    def nodes_of(self, node_type: type[ast.AST]) -> list[ast.AST]:
        """Return the nodes of one type in walk order; do not modify the list."""
        return self._gathered(self._nodes_by_type, "nodes_by_type", node_type)

    def _gathered(self, cache: dict, field_name: str, key: Any) -> list:
        """Join the lists that the statement indexes keep under `key` in one of their dictionaries, once per key."""
        found = cache.get(key)
        if found is None:
            found = cache[key] = []
            for index in self._indexes:
                found.extend(getattr(index, field_name).get(key, ()))
        return found

    def nodes_of_types(self, node_types: frozenset[type[ast.AST]]) -> list[ast.AST]:
        """Return the nodes whose type is one of `node_types`, in the order of `nodes`."""
        found: list[ast.AST] = []
        for index in self._indexes:
            found.extend(index.nodes_of_types(node_types))
        return found

    def subtree(self, node: ast.AST) -> list[ast.AST]:
        """Return `node` and its descendants in `ast.walk` order.

        The list is memoised, and kept across edits while the node is unchanged, so callers must not modify it.
        """
        return subtree(node)

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(node)

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        current = self.parents.get(node)
        while current is not None:
            yield current
            current = self.parents.get(current)

    def scope_of(self, node: ast.AST) -> Scope:
        """Return the innermost scope whose body contains `node`."""
        found = self._scope_of.get(node)
        if found is not None:
            return found
        # Walk up to the nearest scope node, or to an ancestor whose scope is already known, and
        # record the result for every node on the way: their scope is the same.
        path = [node]
        found = self.module_scope
        current = self.parents.get(node)
        while current is not None:
            scope = self.scopes.get(current)
            if scope is None:
                scope = self._scope_of.get(current)
            if scope is not None:
                found = scope
                break
            path.append(current)
            current = self.parents.get(current)
        for visited in path:
            self._scope_of[visited] = found
        return found

    def enclosing_function(self, node: ast.AST) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return ancestor
        return None

    def enclosing_class(self, node: ast.AST) -> ast.ClassDef | None:
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, ast.ClassDef):
                return ancestor
        return None

    # Names

    def lookup(self, name: str, node: ast.AST) -> list[Binding]:
        """Return the bindings that `name` may refer to where `node` uses it (Python's LEGB rule)."""
        scope: Scope | None = self.scope_of(node)
        first = True
        while scope is not None:
            if scope.node is None:
                scope = self.module_scope  # the stand-in of a statement collected on its own
            if name in scope.global_names:
                return self.module_scope.bindings.get(name, [])
            # A class body's names are not visible from functions nested in it.
            if (first or not scope.is_class) and name in scope.bindings and name not in scope.nonlocal_names:
                return scope.bindings[name]
            first = False
            scope = scope.parent
        return []

    def qualname(self, expr: ast.AST, _depth: int = 0) -> str | None:
        """Return the dotted import path an expression refers to, such as `torch.optim.SGD`.

        Follows `import x as y`, `from x import y` and plain aliases (`Optim = torch.optim.SGD`).
        Returns None for anything that is not an imported name or an attribute of one.
        """
        if _depth > _MAX_QUALNAME_DEPTH:
            self._deepest = _depth
            return None
        if _depth == 0:
            if expr in self._qualnames:
                return self._qualnames[expr]
            stored = _qualnames.get(expr)
            if stored is not None and stored[0] == self._environment:
                found = stored[1]
            else:
                self._deepest = 0
                found = self.qualname(expr, 1)
                _qualnames.store(expr, (self._environment, found))
            self._qualnames[expr] = found
            return found
        if _depth > self._deepest:
            self._deepest = _depth
        if isinstance(expr, ast.Name):
            return self._name_qualname(expr, _depth)
        if isinstance(expr, ast.Attribute):
            base = self.qualname(expr.value, _depth + 1)
            if base is None:
                return None
            return canonical_qualname(f"{base}.{expr.attr}")
        return None

    def _name_qualname(self, expr: ast.Name, _depth: int) -> str | None:
        # A name's qualname depends only on its scope, so every use of the name there shares it. The
        # result is reused only where following the same aliases again stays within the depth limit.
        key = (self.scope_of(expr), expr.id)
        cached = self._name_qualnames.get(key)
        if cached is not None and _depth + cached[1] <= _MAX_QUALNAME_DEPTH:
            self._deepest = max(self._deepest, _depth + cached[1])
            return cached[0]
        outer_deepest = self._deepest
        self._deepest = _depth
        result = self._resolve_name(expr, _depth)
        if self._deepest <= _MAX_QUALNAME_DEPTH:
            self._name_qualnames[key] = (result, self._deepest - _depth)
        self._deepest = max(outer_deepest, self._deepest)
        return result

    def _resolve_name(self, expr: ast.Name, _depth: int) -> str | None:
        bindings = self.lookup(expr.id, expr)
        if bindings and all(b.kind == "import" and b.qualname == bindings[0].qualname for b in bindings):
            return bindings[0].qualname  # The same import repeated, e.g. at the top and inside a function.
        if len(bindings) != 1:
            return None
        binding = bindings[0]
        if binding.kind == "assign" and binding.value is not None and not binding.index:
            if isinstance(binding.value, (ast.Name, ast.Attribute)):
                return self.qualname(binding.value, _depth + 1)
        return None

    def call_qualname(self, call: ast.Call) -> str | None:
        return self.qualname(call.func)


@dataclass(eq=False)
class _ModuleStandIn(Scope):
    """Stand-in for the module scope while one top-level statement is collected on its own.

    It records the module-level bindings the statement makes, in order, and the model copies them
    into its real module scope. Lookups that reach the stand-in continue in that real scope.
    """

    ordered: list[Binding] = field(default_factory=list)

    def add(self, binding: Binding) -> None:
        super().add(binding)
        self.ordered.append(binding)


class StatementIndex:
    """Parent links, scopes, bindings and the node index of one top-level statement.

    None of it depends on the rest of the file, so the language server's incremental parse,
    which keeps the nodes of unchanged statements, lets a new model reuse it after an edit.
    Nothing may modify it once built.
    """

    def __init__(self, statement: ast.stmt) -> None:
        self.nodes: list[ast.AST] = []
        self.nodes_by_type: dict[type[ast.AST], list[ast.AST]] = {}
        self.calls_by_name: dict[str, list[ast.Call]] = {}
        self.parents: dict[ast.AST, ast.AST] = {}
        self.scopes: dict[ast.AST, Scope] = {}
        self.classes: dict[str, list[ast.ClassDef]] = {}
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        self.module_scope = _ModuleStandIn(None, None)  # type: ignore[arg-type]
        self._filtered: dict[frozenset[type[ast.AST]], list[ast.AST]] = {}
        self._signature: tuple | None = None
        collector = _BindingCollector(self)
        collector.visit(statement)

    def module_signature(self) -> tuple:
        """Describe the module-level bindings of the statement as far as they decide qualname() anywhere in the file."""
        if self._signature is None:
            self._signature = tuple(
                (
                    binding.name,
                    binding.kind,
                    binding.qualname,
                    binding.index,
                    ast.dump(binding.value) if isinstance(binding.value, (ast.Name, ast.Attribute)) else None,
                )
                for binding in self.module_scope.ordered
            )
        return self._signature

    def nodes_of(self, node_type: type[ast.AST]) -> list[ast.AST]:
        return self.nodes_by_type.get(node_type, [])

    def parent(self, node: ast.AST) -> ast.AST | None:
        """Return the parent of a node inside the statement; None for the statement itself."""
        return self.parents.get(node)

    def nodes_of_types(self, node_types: frozenset[type[ast.AST]]) -> list[ast.AST]:
        found = self._filtered.get(node_types)
        if found is None:
            found = self._filtered[node_types] = [node for node in self.nodes if type(node) in node_types]
        return found


class _BindingCollector(ast.NodeVisitor):
    """Fill a statement index's parent links, scopes and bindings in one walk."""

    def __init__(self, model: StatementIndex) -> None:
        self.model = model
        self.scope: Scope = model.module_scope

    def visit(self, node: ast.AST) -> None:
        # Index every node by type (and calls by name) during this walk, so rules need no walk of their own.
        # This runs for every node of the file, hence the dictionary dispatch in place of NodeVisitor's getattr.
        model = self.model
        model.nodes.append(node)
        node_type = type(node)
        same_type = model.nodes_by_type.get(node_type)
        if same_type is None:
            model.nodes_by_type[node_type] = [node]
        else:
            same_type.append(node)
        if node_type is ast.Call:
            func = node.func  # type: ignore[attr-defined]
            name = None
            if isinstance(func, ast.Name):
                name = func.id
            elif isinstance(func, ast.Attribute):
                name = func.attr
            if name is not None:
                model.calls_by_name.setdefault(name, []).append(node)  # type: ignore[arg-type]
        visitor = _VISITORS.get(node_type)
        if visitor is None:
            self.generic_visit(node)
        else:
            visitor(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        # The children of ast.iter_child_nodes, in its order, without its two nested generators.
        model = self.model
        parents = model.parents
        for name in child_fields(type(node)):
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                children: list[ast.AST] | tuple[ast.AST] = (value,)
            elif isinstance(value, list):
                children = value
            else:
                continue
            for child in children:
                if not isinstance(child, ast.AST):
                    continue
                parents[child] = node
                child_type = type(child)
                if child_type not in _LEAF_TYPES:
                    self.visit(child)
                    continue
                # What visit() does for a node without children (Load, Store, Constant, operators), inlined.
                model.nodes.append(child)
                same_type = model.nodes_by_type.get(child_type)
                if same_type is None:
                    model.nodes_by_type[child_type] = [child]
                else:
                    same_type.append(child)

    def _bind(self, name: str, kind: str, node: ast.AST, **details) -> None:
        scope = self.model.module_scope if name in self.scope.global_names else self.scope
        scope.add(Binding(name, kind, node, scope, **details))

    def _bind_target(self, target: ast.AST, kind: str, node: ast.AST, value: ast.expr | None, index: tuple[int, ...] = ()) -> None:
        if isinstance(target, ast.Name):
            self._bind(target.id, kind, node, value=value, index=index)
        elif isinstance(target, (ast.Tuple, ast.List)):
            starred = any(isinstance(element, ast.Starred) for element in target.elts)
            for position, element in enumerate(target.elts):
                if starred:
                    self._bind_target(element, "other", node, None)
                else:
                    self._bind_target(element, kind, node, value, index + (position,))
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, "other", node, None)

    def _enter(self, node: ScopeNode) -> Scope:
        scope = Scope(node, self.scope)
        self.model.scopes[node] = scope
        return scope

    def _visit_in_scope(self, nodes: list[ast.AST], parent: ast.AST, scope: Scope) -> None:
        outer = self.scope
        self.scope = scope
        for child in nodes:
            self.model.parents[child] = parent
            self.visit(child)
        self.scope = outer

    # Scopes

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            self._bind(node.name, "def", node)
            self.model.functions.setdefault(node.name, []).append(node)
            for decorator in node.decorator_list:
                self.model.parents[decorator] = node
                self.visit(decorator)
            if node.returns is not None:
                self.model.parents[node.returns] = node
                self.visit(node.returns)
        arguments = node.args
        self.model.parents[arguments] = node
        for default in [*arguments.defaults, *(d for d in arguments.kw_defaults if d is not None)]:
            self.model.parents[default] = arguments
            self.visit(default)

        scope = self._enter(node)
        positional = [*arguments.posonlyargs, *arguments.args]
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
        params = list(zip(positional, defaults)) + list(zip(arguments.kwonlyargs, arguments.kw_defaults))
        for extra in (arguments.vararg, arguments.kwarg):
            if extra is not None:
                params.append((extra, None))
        for arg, default in params:
            self.model.parents[arg] = arguments
            scope.add(Binding(arg.arg, "param", arg, scope, value=default))

        body = [node.body] if isinstance(node, ast.Lambda) else node.body
        self._visit_in_scope(body, node, scope)

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function
    visit_Lambda = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._bind(node.name, "class", node)
        self.model.classes.setdefault(node.name, []).append(node)
        for child in [*node.bases, *node.keywords, *node.decorator_list]:
            self.model.parents[child] = node
            self.visit(child)
        self._visit_in_scope(node.body, node, self._enter(node))

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        # The first iterable is evaluated in the enclosing scope, the rest in the comprehension's own.
        first = node.generators[0]
        self.model.parents[first] = node
        self.model.parents[first.iter] = first
        self.visit(first.iter)
        scope = self._enter(node)  # type: ignore[arg-type]
        outer = self.scope
        self.scope = scope
        for position, generator in enumerate(node.generators):
            self.model.parents[generator] = node
            self._bind_target(generator.target, "for", generator, generator.iter)
            self.model.parents[generator.target] = generator
            if position:
                self.model.parents[generator.iter] = generator
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.model.parents[condition] = generator
                self.visit(condition)
        elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for element in elements:
            self.model.parents[element] = node
            self.visit(element)
        self.scope = outer

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension
    visit_DictComp = _visit_comprehension

    # Bindings

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._bind_target(target, "assign", node, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        kind = "assign" if node.value is not None else "other"
        self._bind_target(node.target, kind, node, node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._bind_target(node.target, "other", node, None)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        scope = self.scope
        # An assignment expression in a comprehension binds in the enclosing function or module.
        while isinstance(scope.node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)) and scope.parent:
            scope = scope.parent
        scope.add(Binding(node.target.id, "assign", node, scope, value=node.value))
        self.generic_visit(node)

    def _visit_for(self, node: ast.For | ast.AsyncFor) -> None:
        self._bind_target(node.target, "for", node, node.iter)
        self.generic_visit(node)

    visit_For = _visit_for
    visit_AsyncFor = _visit_for

    def _visit_with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._bind_target(item.optional_vars, "with", node, item.context_expr)
        self.generic_visit(node)

    visit_With = _visit_with
    visit_AsyncWith = _visit_with

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name, "other", node)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self._bind(alias.asname, "import", node, qualname=alias.name)
            else:
                # `import torch.nn` binds `torch` to the top-level package.
                top = alias.name.split(".")[0]
                self._bind(top, "import", node, qualname=top)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            for alias in node.names:
                if alias.name == "*":
                    continue
                qualname = canonical_qualname(f"{node.module}.{alias.name}")
                self._bind(alias.asname or alias.name, "import", node, qualname=qualname)
        else:
            for alias in node.names:
                self._bind(alias.asname or alias.name, "other", node)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.global_names.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.nonlocal_names.update(node.names)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._bind_target(target, "other", node, None)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self._bind(node.name, "other", node)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name, "other", node)
        self.generic_visit(node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._bind(node.rest, "other", node)
        self.generic_visit(node)


# Visitor methods by node type, for the dispatch in _BindingCollector.visit.
_VISITORS = {
    getattr(ast, name[len("visit_") :]): method
    for name, method in vars(_BindingCollector).items()
    if name.startswith("visit_") and hasattr(ast, name[len("visit_") :])
}

# Fields that never hold a node (names, flags and numbers), skipped when listing a node's children.
_SCALAR_FIELDS = frozenset({"id", "attr", "arg", "asname", "module", "level", "kind", "type_comment", "is_async", "simple", "conversion", "tag"})
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def child_fields(node_type: type) -> tuple[str, ...]:
    """Return the fields of a node type that may hold child nodes, in `_fields` order."""
    fields = _CHILD_FIELDS.get(node_type)
    if fields is None:
        if node_type is ast.Constant:
            fields = ()  # its value is a Python object, never a node
        else:
            fields = tuple(name for name in node_type._fields if name not in _SCALAR_FIELDS)
        _CHILD_FIELDS[node_type] = fields
    return fields


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """Return the direct children of `node` in the order of `ast.iter_child_nodes`, as a list (faster than its generator)."""
    children: list[ast.AST] = []
    for name in child_fields(type(node)):
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            children.append(value)
        elif isinstance(value, list):
            children.extend([item for item in value if isinstance(item, ast.AST)])
    return children


def walk(node: ast.AST) -> list[ast.AST]:
    """Return `node` and its descendants in the order of `ast.walk` (breadth first), as a list."""
    found = [node]
    position = 0
    while position < len(found):
        current = found[position]
        position += 1
        for name in child_fields(type(current)):
            value = getattr(current, name, None)
            if isinstance(value, ast.AST):
                found.append(value)
            elif isinstance(value, list):
                found.extend([item for item in value if isinstance(item, ast.AST)])
    return found


# Node types without children, own visitor or call index entry, indexed by _BindingCollector without a visit() call.
_LEAF_TYPES = frozenset(
    node_type
    for node_type in vars(ast).values()
    if isinstance(node_type, type)
    and issubclass(node_type, ast.AST)
    and node_type is not ast.Call
    and node_type not in _VISITORS
    and not child_fields(node_type)
)


# Indexes of top-level statements and subtrees, kept while their nodes are unchanged.
_statement_index = SubtreeMemo(StatementIndex)
_subtree = SubtreeMemo(walk)
# qualname() of expressions, with the environment it was found in: (environment id, qualname).
_qualnames: SubtreeMemo[tuple[int, str | None]] = SubtreeMemo(limit=100_000)
_environments: dict[tuple, int] = {}
_environments_lock = threading.Lock()
_environment_numbers = itertools.count(1)


def _environment_id(signature: tuple) -> int:
    """Return a number that stands for a module environment: the same number for equal signatures."""
    found = _environments.get(signature)
    if found is None:
        with _environments_lock:
            if len(_environments) > 1_000:
                _environments.clear()  # the numbers handed out before stay unique: they keep counting up
            found = _environments[signature] = next(_environment_numbers)
    return found


def subtree(node: ast.AST) -> list[ast.AST]:
    """Return `node` and its descendants in `ast.walk` order, memoised across edits; do not modify the list."""
    return _subtree(node)  # type: ignore[return-value]
