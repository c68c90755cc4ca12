"""GS2: the autograd graph.

GS201 frozen-parameters reports `requires_grad = False` and `requires_grad_(False)` on
parameters. Freezing is often deliberate (a pretrained backbone), so each freeze is only
information. It becomes a warning in two cases: every parameter the optimizer receives is
frozen and never unfrozen, or the freeze comes after the optimizer was built and is never undone.

GS202 no-grad-training, GS203 detached-loss and GS204 non-differentiable-op follow the value
given to `backward()` back to the model outputs it comes from (static/flow.py). They report what
stops its gradient on the way: a forward pass under `torch.no_grad()`, a loss rebuilt from a
Python number or a detached tensor, or an `argmax`/comparison/integer cast on a loss term.

GS205 non-leaf-parameter reports a tensor created with `requires_grad=True` (or an
`nn.Parameter`) and then moved or cast: what is kept is a copy, not the leaf that gets `.grad`.

GS206 module-requires-grad-attribute reports `module.requires_grad = False` on an nn.Module.
Modules have no such attribute: the assignment creates a plain Python attribute and the
module's parameters keep their flags. `module.requires_grad_(False)` is what freezes them.

GS207 detach-in-forward and GS208 no-grad-in-forward report layers of a module that reach the
output of its `forward` only through `.detach()`/`.data` or a `no_grad` block.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradsight.findings import Fix, Severity
from gradsight.static import flow as value_flow
from gradsight.static import torch_api
from gradsight.static.flow import flow_of
from gradsight.static.kinds import PARAMETER_ITERATORS
from gradsight.static.registry import after_walk, on
from gradsight.static.semantic import walk

if TYPE_CHECKING:
    from gradsight.static.context import Context
    from gradsight.static.semantic import Scope

_STATE = "GS2"
_UNFREEZING_NAME = re.compile(r"unfreeze|trainable|thaw", re.IGNORECASE)


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
        if isinstance(target, ast.Attribute) and target.attr == "requires_grad":
            _record_requires_grad_write(ctx, node, target.value, node.value)


@on(ast.Call)
def collect_requires_grad_setattr(ctx: Context, call: ast.Call) -> None:
    # `setattr(p, "requires_grad", False)` sets the attribute like `p.requires_grad = False`.
    func = call.func
    if not (isinstance(func, ast.Name) and func.id == "setattr" and len(call.args) == 3 and not call.keywords):
        return
    if ctx.model.lookup("setattr", call):
        return  # a function of this file named setattr, not the builtin
    attribute = ctx.values.resolve(call.args[1])
    if attribute is not None and attribute.value == "requires_grad":
        _record_requires_grad_write(ctx, call, call.args[0], call.args[2])


def _record_requires_grad_write(ctx: Context, node: ast.Assign | ast.Call, owner: ast.expr, value: ast.expr) -> None:
    """Record `owner.requires_grad = value`, or report it (GS206) when `owner` is a module."""
    flag = ctx.values.resolve(value)
    requires_grad = flag.value if flag is not None and isinstance(flag.value, bool) else None
    if isinstance(owner, ast.Name) and owner.id == "self":
        return  # A module class keeping a flag of its own under that name, read by its forward().
    if ctx.kinds.is_module(owner):
        _report_module_attribute(ctx, node, owner, value, requires_grad)
        return
    recorded = requires_grad is not None and _record_parameter_flag(ctx, node, owner, requires_grad)
    if not recorded and requires_grad is not False:
        _record_unplaced_unfreeze(ctx, node)


@on(ast.Call)
def collect_requires_grad_calls(ctx: Context, call: ast.Call) -> None:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "requires_grad_":
        requires_grad = _requires_grad_argument(ctx, call)
        if requires_grad is None:
            _record_unplaced_unfreeze(ctx, call)
            return
        if ctx.kinds.is_module(func.value):
            module = _module_ref(ctx, func.value)
            _facts(ctx).freezes.append(FreezeEvent(call, module, requires_grad, whole_module=not _is_conditional(ctx, call, None)))
        elif not _record_parameter_flag(ctx, call, func.value, requires_grad) and requires_grad:
            _record_unplaced_unfreeze(ctx, call)
        return
    name = ""
    if isinstance(func, ast.Attribute):
        name = func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    if _UNFREEZING_NAME.search(name):
        # Helpers such as unfreeze(), set_trainable() or peft's mark_only_lora_as_trainable() may unfreeze anything.
        _record_unplaced_unfreeze(ctx, call)
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


def _record_unplaced_unfreeze(ctx: Context, node: ast.AST) -> None:
    """Record a statement that may set requires_grad=True on parameters the checker cannot name."""
    _facts(ctx).freezes.append(FreezeEvent(node, None, True, whole_module=False))


def _record_parameter_flag(ctx: Context, node: ast.AST, parameter: ast.expr, requires_grad: bool) -> bool:
    """Record `p.requires_grad = flag` where `p` is a parameter: a loop variable over `m.parameters()` or `m.weight`.

    Returns False when `parameter` is not recognised as a parameter.
    """
    if isinstance(parameter, ast.Name):
        loop = _parameter_loop(ctx, parameter)
        if loop is None:
            return False
        loop_node, module_expr = loop
        module = _module_ref(ctx, module_expr)
        whole = not _is_conditional(ctx, node, loop_node)
        _facts(ctx).freezes.append(FreezeEvent(node, module, requires_grad, whole_module=whole))
        return True
    kind = ctx.kinds.kind(parameter)
    if kind is not None and kind.category == "parameter" and isinstance(parameter, ast.Attribute):
        module = _module_ref(ctx, parameter.value)
        _facts(ctx).freezes.append(FreezeEvent(node, module, requires_grad, whole_module=False))
        return True
    return False


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
    # Only nn.Module has parameters()/named_parameters() among common objects, so the receiver's kind may be unknown.
    kind = ctx.kinds.kind(iterable.func.value)
    if kind is not None and not kind.is_module:
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
    if any(binding.kind in ("for", "other") for binding in bindings):
        return None  # A loop variable stands for several modules in turn.
    if node.id == "self" and bindings[0].kind == "param":
        # `self.model` means the same module in every method of the class.
        owner = ctx.model.enclosing_class(node)
        if owner is not None and owner in ctx.model.scopes:
            scope = ctx.model.scopes[owner]
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
        kind = ctx.kinds.kind(expr.func.value)
        if module is None or (kind is not None and not kind.is_module):
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


def _report_module_attribute(ctx: Context, node: ast.Assign | ast.Call, owner: ast.expr, value: ast.expr, requires_grad: bool | None) -> None:
    name = ctx.text(owner)
    if requires_grad is None:
        flag = ctx.text(value)
    else:
        flag = str(requires_grad)
    written = f"{name}.requires_grad = {flag}" if isinstance(node, ast.Assign) else ctx.text(node)
    effect = "unfreezes" if requires_grad else "freezes"
    ctx.report(
        "GS206",
        node,
        f"`{name}` is an nn.Module, so `{written}` only sets a plain attribute and {effect} "
        f"nothing: its parameters keep their requires_grad flags; write `{name}.requires_grad_({flag})`",
        fix=_requires_grad_call_fix(ctx, node, owner, value),
    )
    if requires_grad:
        _facts(ctx).attribute_unfreezes.append((node, _module_ref(ctx, owner)))


def _requires_grad_call_fix(ctx: Context, node: ast.Assign | ast.Call, owner: ast.expr, value: ast.expr) -> Fix | None:
    """Rewrite `module.requires_grad = flag` (or the `setattr` call) as `module.requires_grad_(flag)`."""
    if isinstance(node, ast.Assign) and len(node.targets) != 1:
        return None
    owner_text = ctx.segment(owner)
    value_text = ctx.segment(value)
    if not owner_text or not value_text or "\n" in owner_text:
        return None
    # Code that reads the attribute back (`if model.requires_grad:`) would fail once it is gone.
    safe = ast.unparse(owner) not in _requires_grad_reads(ctx)
    return Fix(
        f"Replace with `{owner_text}.requires_grad_({value_text})`",
        (ctx.replace(node, f"{owner_text}.requires_grad_({value_text})"),),
        safe=safe,
    )


def _requires_grad_reads(ctx: Context) -> set[str]:
    """Return the objects whose `.requires_grad` the file reads, as source text."""
    if "GS206 reads" not in ctx.state:
        ctx.state["GS206 reads"] = {
            ast.unparse(node.value)
            for node in walk(ctx.tree)
            if isinstance(node, ast.Attribute) and node.attr == "requires_grad" and isinstance(node.ctx, ast.Load)
        }
    return ctx.state["GS206 reads"]


# GS201


@after_walk
def check_frozen_parameters(ctx: Context) -> None:
    facts = _facts(ctx)
    events = [mapped for event in facts.freezes for mapped in _at_call_sites(ctx, event)]
    freezes = [event for event in events if not event.requires_grad]
    unfreezes = [event for event in events if event.requires_grad]
    for event in freezes:
        optimizer = _optimizer_left_untrained(ctx, event, freezes, unfreezes, facts.optimizers)
        if optimizer is None:
            _report_freeze(ctx, event)
        else:
            _report_freeze_warning(ctx, event, optimizer, facts.attribute_unfreezes)


def _at_call_sites(ctx: Context, event: FreezeEvent) -> list[FreezeEvent]:
    """Move a freeze inside a helper (`def freeze(m): ...`) to each call of that helper in this file.

    `freeze(model)` then freezes `model` where it is called. Events on other modules stay as they are.
    """
    module = event.module
    if module is None or module.scope is None:
        return [event]
    function = module.scope.node
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [event]
    params = [arg.arg for arg in [*function.args.posonlyargs, *function.args.args]]
    if module.root not in params or module.root == "self":
        return [event]
    position = params.index(module.root)
    mapped = []
    for call in ctx.model.calls_named(function.name):
        if not isinstance(call.func, ast.Name):
            continue
        argument = next((k.value for k in call.keywords if k.arg == module.root), None)
        if argument is None and position < len(call.args) and not any(isinstance(a, ast.Starred) for a in call.args):
            argument = call.args[position]
        outer = _module_ref(ctx, argument) if argument is not None else None
        if outer is None:
            # A call the checker cannot follow: an unfreeze there might touch anything.
            if event.requires_grad:
                mapped.append(FreezeEvent(call, None, True, whole_module=False))
            continue
        whole = event.whole_module and not _is_conditional(ctx, call, None)
        mapped.append(FreezeEvent(call, ModuleRef(outer.scope, outer.root, outer.path + module.path), event.requires_grad, whole))
    return mapped or [event]


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
    # An unfreeze that clearly runs earlier (a submodule assigned before the freeze) does not undo it.
    if any(
        (other.module is None or other.module.overlaps(event.module)) and not _comes_before(ctx, other.node, event.node)
        for other in unfreezes
    ):
        return None
    for optimizer in optimizers:
        if not optimizer.plain or not optimizer.modules:
            continue
        if not any(event.module.overlaps(module) for module in optimizer.modules):
            continue
        if _comes_after(ctx, event.node, optimizer.call) and _backward_between(ctx, optimizer.call, event.node):
            # Frozen after training started: momentum and weight decay state exist. A freeze right after
            # building the optimizer, before any backward(), leaves the gradients None, which optimizers skip.
            return optimizer
        covered = all(
            any(other.whole_module and other.module is not None and other.module.contains(module) for other in freezes)
            for module in optimizer.modules
        )
        if covered and event.whole_module:
            return optimizer
    return None


def _backward_between(ctx: Context, start: ast.AST, end: ast.AST) -> bool:
    """Tell whether a backward() call sits between two nodes of the same function, or in a loop around `end`."""
    function = ctx.model.enclosing_function(end)
    loops = [a for a in ctx.model.ancestors(end) if isinstance(a, (ast.For, ast.While, ast.AsyncFor))]
    for call in ctx.model.calls_named("backward"):
        if ctx.model.enclosing_function(call) is not function:
            continue
        if (start.lineno, start.col_offset) < (call.lineno, call.col_offset) < (end.lineno, end.col_offset):  # type: ignore[attr-defined]
            return True
        if any(call in set(ast.walk(loop)) for loop in loops):
            return True
    return False


def _comes_before(ctx: Context, node: ast.AST, other: ast.AST) -> bool:
    """Tell whether `node` runs before `other`: the same function or module body, earlier in the text, no loop around both."""
    if ctx.model.enclosing_function(node) is not ctx.model.enclosing_function(other):
        return False
    if any(isinstance(ancestor, (ast.For, ast.While, ast.AsyncFor)) for ancestor in ctx.model.ancestors(node)):
        return False
    return (node.lineno, node.col_offset) < (other.lineno, other.col_offset)  # type: ignore[attr-defined]


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


# GS202, GS203, GS204: what stops the gradient between the model and backward()


@on(ast.Call)
def collect_backward_calls(ctx: Context, call: ast.Call) -> None:
    if not (isinstance(call.func, ast.Attribute) and call.func.attr in ("backward", "manual_backward")):
        return
    value = flow_of(ctx).backward_value(call)
    if value is not None:
        ctx.state.setdefault("backward calls", []).append((call, value))


@after_walk
def check_backward_paths(ctx: Context) -> None:
    flow = flow_of(ctx)
    reported: set[ast.AST] = set()
    for call, value in ctx.state.get("backward calls", []):
        trace = flow.trace(value)
        if not trace.complete:
            continue
        _check_non_differentiable_terms(ctx, call, value, trace, reported)
        if any(source.live for source in trace.sources):
            continue
        graph = [source for source in trace.sources if source.kind in (value_flow.MODEL, value_flow.PARAMETER, value_flow.UNKNOWN)]
        detached = [source for source in graph if source.cuts and source.cuts[0].reason != value_flow.NO_GRAD]
        if detached:
            # Name the model output in the message when one is among the detached sources.
            detached.sort(key=lambda source: (source.kind != value_flow.MODEL, -len(source.cuts)))
            _report_detached_loss(ctx, call, value, detached[0], reported)
            continue
        without_grad = [
            source
            for source in graph
            if source.kind == value_flow.MODEL and any(cut.reason == value_flow.NO_GRAD for cut in source.cuts)
        ]
        if without_grad:
            _report_no_grad_forward(ctx, call, value, without_grad[0], reported, trace)


def _check_non_differentiable_terms(ctx: Context, call: ast.Call, value: ast.expr, trace: value_flow.Trace, reported: set[ast.AST]) -> None:
    """Report argmax, comparisons and integer casts that leave a loss term (or the whole loss) without a gradient."""
    flow = flow_of(ctx)
    terms = [(value, trace)] + [(argument, flow.trace(argument)) for _, argument in trace.losses]
    for term, term_trace in terms:
        if not term_trace.complete or any(source.live for source in term_trace.sources):
            continue
        for source in term_trace.sources:
            if source.kind != value_flow.MODEL or source.cuts or source.role != value_flow.VALUE or source.non_differentiable is None:
                continue
            operation = source.non_differentiable
            if operation in reported:
                continue
            reported.add(operation)
            where = ctx.text(term)
            ctx.report(
                "GS204",
                operation,
                f"`{ctx.text(operation)}` has no gradient (argmax, rounding, comparisons and integer casts are not "
                f"differentiable), and it is applied to the model output `{ctx.text(source.node)}` on its way into "
                f"`{where}`: that term gives the model no gradient and cannot train it; use a differentiable form "
                "(the logits or probabilities themselves, a softmax instead of argmax, a sigmoid instead of a threshold)",
                related=(ctx.related(call, "backward() runs here"),),
            )
            break


_CUT_DESCRIPTIONS = {
    value_flow.DETACH: "returns a tensor cut off from the autograd graph",
    value_flow.NUMBER: "turns the tensor into a Python number, which has no autograd history",
    value_flow.REBUILD: "builds a new tensor from the values alone, without their autograd history",
}


def _report_detached_loss(ctx: Context, call: ast.Call, value: ast.expr, source: value_flow.Source, reported: set[ast.AST]) -> None:
    cut = source.cuts[0]
    if cut.node in reported:
        return
    reported.add(cut.node)
    related = [ctx.related(other.node, f"`{ctx.text(other.node)}` {_CUT_DESCRIPTIONS.get(other.reason, 'stops the gradient')}") for other in source.cuts[1:2]]
    related.append(ctx.related(call, "backward() runs here"))
    ctx.report(
        "GS203",
        cut.node,
        f"`{ctx.text(cut.node)}` {_CUT_DESCRIPTIONS[cut.reason]}, and `{ctx.text(value)}` passed to backward() is built "
        f"from it: no gradient reaches `{ctx.text(source.node)}` or the model, so its parameters never change; "
        f"call backward() on the loss tensor itself and use `.item()` or `.detach()` only for logging",
        related=tuple(related),
    )


def _report_no_grad_forward(
    ctx: Context, call: ast.Call, value: ast.expr, source: value_flow.Source, reported: set[ast.AST], trace: value_flow.Trace
) -> None:
    block = next(cut.node for cut in source.cuts if cut.reason == value_flow.NO_GRAD)
    site = next((site for site, helper in trace.no_grad_helpers if helper is block), None)
    if site is not None:
        _report_no_grad_helper(ctx, call, value, source, site, block, reported)  # type: ignore[arg-type]
        return
    if source.node in reported:
        return
    reported.add(source.node)
    if isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef)):
        context = f"in `{block.name}()`, which is decorated to run without gradients"
        block_node: ast.AST = block.decorator_list[0] if block.decorator_list else block
    else:
        context = f"under `{ctx.text(block.items[0].context_expr)}`"  # type: ignore[attr-defined]
        block_node = block.items[0].context_expr  # type: ignore[attr-defined]
    ctx.report(
        "GS202",
        source.node,
        f"the forward pass `{ctx.text(source.node)}` runs {context}, so it records no autograd graph, and "
        f"`{ctx.text(value)}` is computed from it: backward() cannot reach the model's parameters (it raises "
        "\"element 0 of tensors does not require grad\" or updates nothing); run the forward pass outside the block "
        "and keep no_grad for targets and evaluation",
        related=(ctx.related(block_node, "gradient recording is turned off here"), ctx.related(call, "backward() runs here")),
    )


def _report_no_grad_helper(
    ctx: Context,
    call: ast.Call,
    value: ast.expr,
    source: value_flow.Source,
    site: ast.Call,
    helper: ast.FunctionDef | ast.AsyncFunctionDef,
    reported: set[ast.AST],
) -> None:
    """Report the call of a `@torch.no_grad()` function whose forward pass feeds backward()."""
    if site in reported:
        return
    reported.add(site)
    decorator = flow_of(ctx).grad_mode.disabling_decorator(helper) or helper
    ctx.report(
        "GS202",
        site,
        f"`{ctx.text(site)}` runs the forward pass `{ctx.text(source.node)}` in `{helper.name}()`, which is decorated "
        f"to run without gradients, so it records no autograd graph, and `{ctx.text(value)}` is computed from it: "
        "backward() cannot reach the model's parameters (it raises \"element 0 of tensors does not require grad\" or "
        f"updates nothing); call the model directly for training and keep `{helper.name}()` for evaluation",
        related=(
            ctx.related(source.node, "the forward pass runs here, without gradients"),
            ctx.related(decorator, "gradient recording is turned off here"),
            ctx.related(call, "backward() runs here"),
        ),
    )


# GS205


@on(ast.Call)
def check_moved_leaf(ctx: Context, call: ast.Call) -> None:
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr in torch_api.MOVE_METHODS):
        return
    if not _makes_copy(ctx, call):
        return

    receiver = func.value
    leaf = _trainable_leaf(ctx, receiver)
    name = None
    if leaf is None and isinstance(receiver, ast.Name):
        # `w = torch.zeros(3, requires_grad=True)` then `w = w.to(device)`: the name now refers to the copy.
        parent = ctx.model.parent(call)
        if isinstance(parent, ast.Assign) and any(isinstance(t, ast.Name) and t.id == receiver.id for t in parent.targets):
            definitions = flow_of(ctx).definitions(receiver)
            if definitions and len(definitions) == 1 and definitions[0].kind == "assign" and definitions[0].value is not None and not definitions[0].index:
                leaf = _trainable_leaf(ctx, definitions[0].value)
                name = receiver.id
    if leaf is None:
        return

    holder = _assigned_to(ctx, call)
    what = "the result"
    if name or holder:
        what = f"`{name or holder}`"
    where = "it on the device directly, for example `torch.randn(..., device=device, requires_grad=True)`"
    if ctx.model.call_qualname(leaf) == "torch.nn.Parameter":
        where = "the tensor on the device first and wrap it last: `nn.Parameter(torch.randn(..., device=device))`"
    ctx.report(
        "GS205",
        call,
        f"`.{func.attr}()` returns a copy of `{ctx.text(leaf)}`, which requires grad: {what} is not a leaf, so its "
        "`.grad` stays None, an optimizer given it cannot update it, and in a module it is not registered as a "
        f"parameter (the gradient goes to the original tensor, which nothing keeps); create {where}",
    )


def _makes_copy(ctx: Context, call: ast.Call) -> bool:
    """Tell whether a move or cast call returns a new tensor (`.float()` on a float32 tensor returns itself)."""
    method = call.func.attr  # type: ignore[attr-defined]
    arguments = [*call.args, *(k.value for k in call.keywords)]
    if method == "float":
        return False
    if method in ("to", "type"):
        if not arguments:
            return False
        qualnames = [ctx.model.qualname(argument) for argument in arguments]
        return not all(q in ("torch.float32", "torch.float") for q in qualnames if q is not None) or any(q is None for q in qualnames)
    return True


def _trainable_leaf(ctx: Context, expr: ast.AST) -> ast.Call | None:
    """Return the call that creates `expr` as a leaf tensor requiring grad, or None."""
    if not isinstance(expr, ast.Call):
        return None
    qualname = ctx.model.call_qualname(expr)
    if qualname == "torch.nn.Parameter":
        return expr
    if qualname in torch_api.TENSOR_FACTORIES and not qualname.endswith("_like"):
        flag = next((k.value for k in expr.keywords if k.arg == "requires_grad"), None)
        resolved = ctx.values.resolve(flag) if flag is not None else None
        return expr if resolved is not None and resolved.value is True else None
    func = expr.func
    if isinstance(func, ast.Attribute) and func.attr == "requires_grad_" and isinstance(func.value, ast.Call):
        flag = _requires_grad_argument(ctx, expr)
        if flag and ctx.model.call_qualname(func.value) in torch_api.TENSOR_FACTORIES:
            return expr
    return None


def _assigned_to(ctx: Context, call: ast.Call) -> str | None:
    parent = ctx.model.parent(call)
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and parent.value is call:
        return ctx.text(parent.targets[0])
    return None


# GS207, GS208: layers cut off inside forward

# Words in attribute names that mark a submodule kept out of training on purpose (a teacher, a target or
# EMA copy, a frozen encoder): computing them under no_grad or detaching them is the intent.
_INTENT_WORDS = frozenset({"teacher", "target", "ema", "momentum", "frozen", "shadow", "avg", "average", "old", "prior", "reference", "ref", "key"})


@after_walk
def check_forward_cuts(ctx: Context) -> None:
    flow = flow_of(ctx)
    for classes in ctx.model.classes.values():
        for owner in classes:
            if not ctx.kinds.is_module_class(owner):
                continue
            forward = value_flow.method(owner, "forward")
            if forward is None:
                continue
            own = _own_layers(ctx, owner)
            if not own:
                continue
            paths = value_flow.LayerPaths(flow, own).run(forward)
            reported: set[ast.AST] = set()
            for attribute, path in sorted(paths.items()):
                if path.live or path.cut is None or path.cut.reason not in (value_flow.DETACH, value_flow.NO_GRAD):
                    continue
                if path.cut.node in reported or _kept_out_on_purpose(ctx, owner, attribute):
                    continue
                reported.add(path.cut.node)
                _report_forward_cut(ctx, owner, attribute, path.cut)


def _own_layers(ctx: Context, owner: ast.ClassDef) -> set[str]:
    """Return the attributes of a module class that hold layers with parameters, or parameters."""
    own = set()
    for attribute, values in flow_of(ctx).class_attributes(owner).items():
        for value in values:
            kind = ctx.kinds.kind(value)
            if kind is None:
                continue
            if kind.category == "parameter" or (kind.is_module and _has_parameters(ctx, kind.qualname, value)):
                own.add(attribute)
    return own


def _has_parameters(ctx: Context, qualname: str | None, value: ast.AST) -> bool:
    if qualname is None:
        return True
    if qualname in torch_api.PARAMETER_FREE_MODULES or (qualname.startswith("torch.nn.") and qualname.endswith("Loss")):
        return False
    return True


def _kept_out_on_purpose(ctx: Context, owner: ast.ClassDef, attribute: str) -> bool:
    """Tell whether the class shows that `self.<attribute>` is not meant to train through this path."""
    words = set(attribute.lower().strip("_").split("_"))
    if words & _INTENT_WORDS:
        return True
    for value in flow_of(ctx).class_attributes(owner).get(attribute, []):
        if isinstance(value, ast.Call) and ctx.model.call_qualname(value) == "copy.deepcopy":
            return True
    return attribute in _managed_attributes(ctx, owner)


def _managed_attributes(ctx: Context, owner: ast.ClassDef) -> set[str]:
    """Return the attributes the class freezes, puts in eval mode, or updates by hand through their parameters."""
    cache = ctx.state.setdefault("GS207 managed", {})
    if owner in cache:
        return cache[owner]
    managed = set()
    for node in ctx.model.subtree(owner):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        if method in ("requires_grad_", "eval", "parameters", "named_parameters", "state_dict", "load_state_dict", "buffers"):
            target = node.func.value
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                forward = ctx.model.enclosing_function(node)
                if method in ("requires_grad_", "eval") or forward is None or forward.name != "forward" or ctx.state["flow"].grad_mode.disabled_by(node):
                    managed.add(target.attr)
    for event in _facts(ctx).freezes:
        if not event.requires_grad and event.module is not None and event.module.path.startswith("."):
            first = event.module.path[1:].split(".")[0].split("[")[0]
            if event.module.root == "self" and ctx.model.enclosing_class(event.node) is owner:
                managed.add(first)
            elif event.module.root != "self":
                managed.add(first)  # `model.backbone.requires_grad_(False)` outside the class
    cache[owner] = managed
    return managed


def _report_forward_cut(ctx: Context, owner: ast.ClassDef, attribute: str, cut: value_flow.Cut) -> None:
    if cut.reason == value_flow.DETACH:
        ctx.report(
            "GS207",
            cut.node,
            f"`self.{attribute}` reaches the output of `{owner.name}.forward` only through `{ctx.text(cut.node)}`, which "
            f"cuts the autograd graph: its parameters never get a gradient and never train; remove the detach, or if "
            f"`self.{attribute}` is frozen on purpose, freeze it with `self.{attribute}.requires_grad_(False)`",
        )
        return
    block = cut.node
    context = block.items[0].context_expr if isinstance(block, (ast.With, ast.AsyncWith)) else block  # type: ignore[attr-defined]
    outside = "outside the block"
    decorated = ctx.model.parent(context)
    if isinstance(decorated, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(d is context for d in decorated.decorator_list):
        outside = f"outside `{decorated.name}()`, which this decorator runs without gradients"
    ctx.report(
        "GS208",
        context,
        f"`self.{attribute}` reaches the output of `{owner.name}.forward` only through values computed under "
        f"`{ctx.text(context)}`, which records no autograd graph: its parameters never get a gradient and never train; "
        f"compute them {outside}, or if `self.{attribute}` is frozen on purpose, freeze it with "
        f"`self.{attribute}.requires_grad_(False)`",
    )
