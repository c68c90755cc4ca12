"""GS2: the autograd graph.

GS201 frozen-parameters reports `requires_grad = False` and `requires_grad_(False)` on
parameters. Freezing is often deliberate (a pretrained backbone), so each freeze is only
information. It becomes a warning in two cases: every parameter the optimizer receives is
frozen and never unfrozen, or the freeze comes after the optimizer was built and is never undone.

GS206 module-requires-grad-attribute reports `module.requires_grad = False` on an nn.Module.
Modules have no such attribute: the assignment creates a plain Python attribute and the
module's parameters keep their flags. `module.requires_grad_(False)` is what freezes them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradsight.findings import Severity
from gradsight.static import torch_api
from gradsight.static.kinds import PARAMETER_ITERATORS
from gradsight.static.registry import after_walk, on

if TYPE_CHECKING:
    from gradsight.static.context import Context
    from gradsight.static.semantic import Scope

_STATE = "GS2"


@dataclass(frozen=True)
class ModuleRef:
    """A module reached from a variable: `model.features` is root `model` (in `scope`) and path `.features`."""

    scope: Scope | None
    root: str
    path: str = ""

    def text(self) -> str:
        return self.root + self.path

    def overlaps(self, other: ModuleRef) -> bool:
        """Tell whether one of the two modules contains the other (or they are the same)."""
        if self.scope is not other.scope or self.root != other.root:
            return False
        return _contains(self.path, other.path) or _contains(other.path, self.path)

    def contains(self, other: ModuleRef) -> bool:
        return self.scope is other.scope and self.root == other.root and _contains(self.path, other.path)


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer + ".") or inner.startswith(outer + "[")


@dataclass
class FreezeEvent:
    """A statement that sets `requires_grad` on parameters of a module."""

    node: ast.AST
    module: ModuleRef | None
    requires_grad: bool
    # True when the statement covers all of the module's parameters on every run (no `if` picks some).
    whole_module: bool


@dataclass
class OptimizerParams:
    call: ast.Call
    modules: list[ModuleRef]
    # False when the parameter list is filtered (`if p.requires_grad`) or not understood.
    plain: bool


@dataclass
class _Facts:
    freezes: list[FreezeEvent] = field(default_factory=list)
    optimizers: list[OptimizerParams] = field(default_factory=list)
    # `module.requires_grad = True` statements (GS206): they look like an unfreeze but are not one.
    attribute_unfreezes: list[tuple[ast.AST, ModuleRef | None]] = field(default_factory=list)


def _facts(ctx: Context) -> _Facts:
    if _STATE not in ctx.state:
        ctx.state[_STATE] = _Facts()
    return ctx.state[_STATE]


# Collection during the walk


@on(ast.Assign)
def check_requires_grad_assignment(ctx: Context, node: ast.Assign) -> None:
    for target in node.targets:
        if isinstance(target, (ast.Attribute, ast.Subscript)) and ctx.kinds.is_module(node.value):
            # `model.fc = nn.Linear(...)` replaces a submodule with fresh, trainable parameters.
            module = _module_ref(ctx, target)
            if module is not None and module.path:
                _facts(ctx).freezes.append(FreezeEvent(node, module, True, whole_module=False))
        if not (isinstance(target, ast.Attribute) and target.attr == "requires_grad"):
            continue
        flag = ctx.values.resolve(node.value)
        requires_grad = flag.value if flag is not None and isinstance(flag.value, bool) else None
        owner = target.value
        if ctx.kinds.is_module(owner):
            _report_module_attribute(ctx, node, owner, requires_grad)
            continue
        if requires_grad is not None:
            _record_parameter_flag(ctx, node, owner, requires_grad)


@on(ast.Call)
def collect_requires_grad_calls(ctx: Context, call: ast.Call) -> None:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "requires_grad_":
        requires_grad = _requires_grad_argument(ctx, call)
        if requires_grad is None:
            return
        if ctx.kinds.is_module(func.value):
            module = _module_ref(ctx, func.value)
            _facts(ctx).freezes.append(FreezeEvent(call, module, requires_grad, whole_module=not _is_conditional(ctx, call, None)))
        else:
            _record_parameter_flag(ctx, call, func.value, requires_grad)
        return
    if ctx.model.call_qualname(call) in torch_api.OPTIMIZERS:
        params = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "params"), None)
        if params is not None:
            modules, plain = _parameter_sources(ctx, params, 0)
            _facts(ctx).optimizers.append(OptimizerParams(call, modules, plain))


def _requires_grad_argument(ctx: Context, call: ast.Call) -> bool | None:
    argument = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
    if argument is None:
        return True
    resolved = ctx.values.resolve(argument)
    return resolved.value if resolved is not None and isinstance(resolved.value, bool) else None


def _record_parameter_flag(ctx: Context, node: ast.AST, parameter: ast.expr, requires_grad: bool) -> None:
    """Record `p.requires_grad = flag` where `p` is a parameter: a loop variable over `m.parameters()` or `m.weight`."""
    if isinstance(parameter, ast.Name):
        loop = _parameter_loop(ctx, parameter)
        if loop is None:
            return
        loop_node, module_expr = loop
        module = _module_ref(ctx, module_expr)
        whole = not _is_conditional(ctx, node, loop_node)
        _facts(ctx).freezes.append(FreezeEvent(node, module, requires_grad, whole_module=whole))
        return
    kind = ctx.kinds.kind(parameter)
    if kind is not None and kind.category == "parameter" and isinstance(parameter, ast.Attribute):
        module = _module_ref(ctx, parameter.value)
        _facts(ctx).freezes.append(FreezeEvent(node, module, requires_grad, whole_module=False))


def _parameter_loop(ctx: Context, name: ast.Name) -> tuple[ast.AST, ast.expr] | None:
    """Return the loop (or comprehension) that binds `name` to each parameter of a module, and that module."""
    bindings = ctx.model.lookup(name.id, name)
    if len(bindings) != 1 or bindings[0].kind != "for" or bindings[0].value is None:
        return None
    iterable = bindings[0].value
    if not (isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute)):
        return None
    if PARAMETER_ITERATORS.get(iterable.func.attr) != bindings[0].index:
        return None
    if not ctx.kinds.is_module(iterable.func.value):
        return None
    return bindings[0].node, iterable.func.value


def _is_conditional(ctx: Context, node: ast.AST, stop: ast.AST | None) -> bool:
    """Tell whether `node` runs only under a condition between it and `stop` (its loop) or the top level."""
    for ancestor in ctx.model.ancestors(node):
        if ancestor is stop or isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
            return False
        if isinstance(ancestor, (ast.If, ast.IfExp, ast.While, ast.Try, ast.Match, ast.BoolOp)):
            return True
        if isinstance(ancestor, ast.comprehension) and ancestor.ifs:
            return True
    return False


def _module_ref(ctx: Context, expr: ast.AST, depth: int = 0) -> ModuleRef | None:
    """Describe a module expression as a variable plus an attribute path, following simple aliases."""
    path = ""
    node = expr
    while True:
        if isinstance(node, ast.Attribute):
            path = f".{node.attr}{path}"
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            path = f"[{node.slice.value!r}]{path}"
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.UnaryOp) and isinstance(node.slice.operand, ast.Constant):
            path = f"[-{node.slice.operand.value!r}]{path}"
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in torch_api.MODULE_RETURNING_METHODS:
            node = node.func.value
        else:
            break
    if not isinstance(node, ast.Name):
        return None
    bindings = ctx.model.lookup(node.id, node)
    if not bindings:
        return None
    scope = bindings[0].scope
    # `backbone = model.features` is an alias: describe it through `model`.
    if len(bindings) == 1 and bindings[0].kind == "assign" and depth < 10 and not bindings[0].index:
        value = bindings[0].value
        if isinstance(value, (ast.Attribute, ast.Subscript)):
            inner = _module_ref(ctx, value, depth + 1)
            if inner is not None:
                return ModuleRef(inner.scope, inner.root, inner.path + path)
    return ModuleRef(scope, node.id, path)


def _parameter_sources(ctx: Context, expr: ast.AST, depth: int) -> tuple[list[ModuleRef], bool]:
    """Return the modules whose parameters an optimizer receives, and whether the list is unfiltered.

    Understands `m.parameters()`, `list(...)`, `[p for p in m.parameters()]`, `itertools.chain(...)`,
    `a + b`, parameter-group dicts and variables holding any of these.
    """
    if depth > 10:
        return [], False
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr in PARAMETER_ITERATORS:
        module = _module_ref(ctx, expr.func.value)
        if module is None or not ctx.kinds.is_module(expr.func.value):
            return [], False
        return [module], True
    if isinstance(expr, ast.Call):
        qualname = ctx.model.call_qualname(expr) or (expr.func.id if isinstance(expr.func, ast.Name) else "")
        if qualname in ("list", "tuple", "itertools.chain") and expr.args and not expr.keywords:
            return _combine(ctx, expr.args, depth)
        return [], False
    if isinstance(expr, (ast.ListComp, ast.GeneratorExp)):
        generator = expr.generators[0]
        if len(expr.generators) != 1 or generator.ifs or not isinstance(expr.elt, ast.Name):
            return [], False
        return _parameter_sources(ctx, generator.iter, depth + 1)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _combine(ctx, [expr.left, expr.right], depth)
    if isinstance(expr, (ast.List, ast.Tuple)):
        parts: list[ast.AST] = []
        for element in expr.elts:
            if isinstance(element, ast.Starred):
                parts.append(element.value)
            elif isinstance(element, ast.Dict):
                group = dict(zip([k.value if isinstance(k, ast.Constant) else None for k in element.keys], element.values))
                if "params" not in group:
                    return [], False
                parts.append(group["params"])
            else:
                return [], False
        return _combine(ctx, parts, depth)
    if isinstance(expr, ast.Name):
        bindings = ctx.model.lookup(expr.id, expr)
        if len(bindings) == 1 and bindings[0].kind == "assign" and bindings[0].value is not None and not bindings[0].index:
            return _parameter_sources(ctx, bindings[0].value, depth + 1)
    return [], False


def _combine(ctx: Context, parts: list[ast.AST], depth: int) -> tuple[list[ModuleRef], bool]:
    modules: list[ModuleRef] = []
    for part in parts:
        found, plain = _parameter_sources(ctx, part, depth + 1)
        if not plain:
            return [], False
        modules.extend(found)
    return modules, bool(modules)


# GS206


def _report_module_attribute(ctx: Context, node: ast.Assign, owner: ast.expr, requires_grad: bool | None) -> None:
    name = ctx.text(owner)
    if requires_grad is None:
        flag = ctx.text(node.value)
    else:
        flag = str(requires_grad)
    effect = "unfreezes" if requires_grad else "freezes"
    ctx.report(
        "GS206",
        node,
        f"`{name}` is an nn.Module, so `{name}.requires_grad = {flag}` only sets a plain attribute and {effect} "
        f"nothing: its parameters keep their requires_grad flags; write `{name}.requires_grad_({flag})`",
    )
    if requires_grad:
        _facts(ctx).attribute_unfreezes.append((node, _module_ref(ctx, owner)))


# GS201


@after_walk
def check_frozen_parameters(ctx: Context) -> None:
    facts = _facts(ctx)
    freezes = [event for event in facts.freezes if not event.requires_grad]
    unfreezes = [event for event in facts.freezes if event.requires_grad]
    for event in freezes:
        optimizer = _optimizer_left_untrained(ctx, event, freezes, unfreezes, facts.optimizers)
        if optimizer is None:
            _report_freeze(ctx, event)
        else:
            _report_freeze_warning(ctx, event, optimizer, facts.attribute_unfreezes)


def _optimizer_left_untrained(
    ctx: Context,
    event: FreezeEvent,
    freezes: list[FreezeEvent],
    unfreezes: list[FreezeEvent],
    optimizers: list[OptimizerParams],
) -> OptimizerParams | None:
    """Return an optimizer that this freeze leaves with frozen parameters for good, if there is one."""
    if event.module is None:
        return None
    # An unfreeze we cannot place might undo this freeze: stay quiet, as false alarms cost more than misses.
    if any(other.module is None or other.module.overlaps(event.module) for other in unfreezes):
        return None
    for optimizer in optimizers:
        if not optimizer.plain or not optimizer.modules:
            continue
        if not any(event.module.overlaps(module) for module in optimizer.modules):
            continue
        if _comes_after(ctx, event.node, optimizer.call):
            return optimizer
        covered = all(
            any(other.whole_module and other.module is not None and other.module.contains(module) for other in freezes)
            for module in optimizer.modules
        )
        if covered and event.whole_module:
            return optimizer
    return None


def _comes_after(ctx: Context, node: ast.AST, optimizer: ast.Call) -> bool:
    """Tell whether `node` runs after the optimizer is built, in the same function or module body."""
    if ctx.model.enclosing_function(node) is not ctx.model.enclosing_function(optimizer):
        return False
    return (node.lineno, node.col_offset) > (optimizer.lineno, optimizer.col_offset)  # type: ignore[attr-defined]


def _report_freeze(ctx: Context, event: FreezeEvent) -> None:
    what = f"parameters of `{event.module.text()}`" if event.module is not None else "these parameters"
    scope = "" if event.whole_module else "some "
    ctx.report(
        "GS201",
        event.node,
        f"{scope}{what} are frozen (requires_grad=False): they get no gradient and are not trained",
        severity=Severity.INFORMATION,
    )


def _report_freeze_warning(
    ctx: Context,
    event: FreezeEvent,
    optimizer: OptimizerParams,
    attribute_unfreezes: list[tuple[ast.AST, ModuleRef | None]],
) -> None:
    assert event.module is not None
    module = event.module.text()
    optimizer_line = optimizer.call.lineno
    if _comes_after(ctx, event.node, optimizer.call):
        message = (
            f"parameters of `{module}` are frozen after the optimizer (line {optimizer_line}) was built over them and are "
            "never unfrozen: they stop training, and with momentum or weight decay the optimizer may still change them; "
            "freeze before building the optimizer and pass it only the trainable parameters"
        )
    else:
        message = (
            f"every parameter that the optimizer (line {optimizer_line}) receives is frozen here and never unfrozen: "
            f"nothing trains and the loss will not move; unfreeze the layers that should learn (for example "
            f"`head.requires_grad_(True)`) and pass only trainable parameters to the optimizer"
        )
    related = [ctx.related(optimizer.call, "the optimizer receives the frozen parameters here")]
    for node, target in attribute_unfreezes:
        if target is not None and target.overlaps(event.module):
            related.append(ctx.related(node, "this sets a plain attribute on a module and does not unfreeze it (GS206)"))
    ctx.report("GS201", event.node, message, severity=Severity.WARNING, related=tuple(related))
