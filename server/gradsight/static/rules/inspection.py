"""GS7: inspecting training.

GS701 snapshot-by-reference reports a "before" or "best" copy of the weights that is only a
reference to them: `model.state_dict()`, `list(model.parameters())` and `p.data` return the
live tensors, which the optimizer updates in place. A snapshot kept this way, then compared
with the weights or restored after more training, always equals the current weights.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from gradsight.findings import Edit, Fix, Span
from gradsight.static.flow import flow_of, walk_scope
from gradsight.static.kinds import PARAMETER_ITERATORS
from gradsight.static.registry import after_walk, on

if TYPE_CHECKING:
    from gradsight.static.context import Context

# Calls that compare two tensors (or collections of them).
_COMPARISONS = frozenset({"torch.equal", "torch.allclose", "torch.isclose", "torch.eq", "torch.ne", "torch.dist", "torch.sub", "torch.norm"})
_COMPARING_METHODS = frozenset({"equal", "allclose", "isclose", "eq", "ne", "sub", "dist"})
_RESTORING_METHODS = frozenset({"load_state_dict", "copy_", "set_"})
# Calls that take a list of parameters to differentiate or run the model with. A list given to them
# is the live parameters on purpose (MAML-style inner loops), not a snapshot.
_LIVE_PARAMETER_CALLS = frozenset({"torch.autograd.grad", "torch.func.functional_call", "torch.nn.utils.stateless.functional_call"})
_TRAINING_PREFIXES = ("train", "fit")


@on(ast.Assign)
def collect_snapshots(ctx: Context, node: ast.Assign) -> None:
    if len(node.targets) != 1 or not isinstance(node.targets[0], (ast.Name, ast.Attribute)):
        return
    target = node.targets[0]
    if isinstance(target, ast.Attribute) and not (isinstance(target.value, ast.Name) and target.value.id == "self"):
        return
    description = _live_reference(ctx, node.value)
    if description is not None:
        ctx.state.setdefault("GS701 snapshots", []).append((node, target, description))


@on(ast.Call)
def collect_training_calls(ctx: Context, call: ast.Call) -> None:
    func = call.func
    name = ""
    if isinstance(func, ast.Attribute):
        name = func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    if name in ("step", "backward") or name.startswith(_TRAINING_PREFIXES):
        ctx.state.setdefault("GS701 training", []).append(call)


def _live_reference(ctx: Context, value: ast.expr) -> str | None:
    """Describe how `value` refers to live weights (`state_dict()`, `list(parameters())`, `p.data`), or None for a copy."""
    if isinstance(value, ast.Call):
        func = value.func
        if isinstance(func, ast.Attribute) and func.attr == "state_dict" and not value.args:
            return "returns references to the live parameter and buffer tensors"
        if isinstance(func, ast.Name) and func.id in ("list", "dict", "tuple") and not ctx.model.lookup(func.id, func) and len(value.args) == 1:
            inner = value.args[0]
            if _is_parameter_iterator(inner):
                return "holds the live parameter tensors themselves"
            if isinstance(inner, (ast.ListComp, ast.GeneratorExp)):
                return _live_reference(ctx, inner)
        return None
    if isinstance(value, (ast.ListComp, ast.GeneratorExp, ast.DictComp)):
        generator = value.generators[0]
        element = value.value if isinstance(value, ast.DictComp) else value.elt
        iterates = _is_parameter_iterator(generator.iter) or _is_state_dict_items(generator.iter)
        if len(value.generators) == 1 and iterates and _is_loop_variable_view(element, generator.target):
            return "holds the live parameter tensors themselves"
        return None
    if isinstance(value, ast.Attribute) and value.attr == "data":
        return "is a view of the live tensor that shares its memory"
    kind = ctx.kinds.kind(value)
    if kind is not None and kind.category == "parameter" and isinstance(value, ast.Attribute):
        return "is the live parameter itself"
    return None


def _is_parameter_iterator(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PARAMETER_ITERATORS


def _is_state_dict_items(node: ast.AST) -> bool:
    """Tell whether `node` is `x.state_dict().items()` or `.values()`."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("items", "values")
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Attribute)
        and node.func.value.func.attr == "state_dict"
    )


def _is_loop_variable_view(element: ast.AST, target: ast.AST) -> bool:
    """Tell whether `element` is the loop variable itself, or its `.data` or `.detach()` (which share memory)."""
    names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    node = element
    while True:
        if isinstance(node, ast.Attribute) and node.attr == "data":
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "detach" and not node.args:
            node = node.func.value
        else:
            break
    return isinstance(node, ast.Name) and node.id in names


@after_walk
def check_snapshots(ctx: Context) -> None:
    for node, target, description in ctx.state.get("GS701 snapshots", []):
        if _used_as_live_parameters(ctx, node, target):
            continue
        use = _comparison_or_restore(ctx, node, target)
        if use is None:
            continue
        use_node, action = use
        if not _trained_between(ctx, node, use_node):
            continue
        name = ctx.text(target)
        ctx.report(
            "GS701",
            node.value,
            f"`{ctx.text(node.value)}` {description}, not a copy: the optimizer updates those tensors in place, so "
            f"`{name}` always equals the current weights and {action} (line {ctx.line_of(use_node)}); "
            f"take a copy: `copy.deepcopy({ctx.text(node.value)})`",
            related=(ctx.related(use_node, f"`{name}` is used here as if it held the earlier weights"),),
            fix=_deepcopy_fix(ctx, node.value),
        )


def _used_as_live_parameters(ctx: Context, node: ast.Assign, target: ast.expr) -> bool:
    """Tell whether the "snapshot" is a working list of live parameters rather than saved weights.

    That is the case when it is given to `torch.autograd.grad` or `functional_call`, or rebound from
    a value that reads it (`params = [p - lr * g for p, g in zip(params, grads)]`), as MAML-style
    inner loops do.
    """
    uses = _uses(ctx, node, target)
    for use in uses:
        for ancestor in ctx.model.ancestors(use):
            if isinstance(ancestor, ast.Call) and ctx.model.call_qualname(ancestor) in _LIVE_PARAMETER_CALLS:
                return True
            if isinstance(ancestor, (ast.stmt, ast.Lambda)):
                break
    for use in uses:
        statement = next((a for a in ctx.model.ancestors(use) if isinstance(a, ast.stmt)), None)
        if isinstance(statement, (ast.Assign, ast.AugAssign)) and statement is not node and _assigns(statement, target):
            return True
    return False


def _assigns(statement: ast.Assign | ast.AugAssign, target: ast.expr) -> bool:
    """Tell whether `statement` binds the same name or `self` attribute as `target`."""
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    text = ast.unparse(target)
    return any(ast.unparse(candidate) == text for candidate in targets)


def _comparison_or_restore(ctx: Context, node: ast.Assign, target: ast.expr) -> tuple[ast.AST, str] | None:
    """Return the first place that compares the snapshot with weights or restores it, and a phrase saying which."""
    for use in _uses(ctx, node, target):
        if (use.lineno, use.col_offset) <= (node.lineno, node.col_offset) and not _in_loop_with(ctx, node, use):
            continue
        found = _use_kind(ctx, use)
        if found is not None:
            return found
        # `for before, after in zip(snapshot, model.parameters())`: follow the loop variables one level.
        loop = _iterated_by(ctx, use)
        if loop is not None:
            target, body = loop
            names = {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
            for inner in ast.walk(body):
                if isinstance(inner, ast.Name) and inner.id in names and isinstance(inner.ctx, ast.Load):
                    found = _use_kind(ctx, inner)
                    if found is not None:
                        return found
    return None


def _uses(ctx: Context, node: ast.Assign, target: ast.expr) -> list[ast.expr]:
    if isinstance(target, ast.Name):
        function = ctx.model.enclosing_function(node)
        return list(flow_of(ctx).loads(function if function is not None else ctx.tree).get(target.id, []))
    owner = ctx.model.enclosing_class(node)
    if owner is None:
        return []
    return [
        candidate
        for candidate in ast.walk(owner)
        if isinstance(candidate, ast.Attribute)
        and candidate.attr == target.attr  # type: ignore[attr-defined]
        and isinstance(candidate.ctx, ast.Load)
        and isinstance(candidate.value, ast.Name)
        and candidate.value.id == "self"
    ]


def _use_kind(ctx: Context, use: ast.AST) -> tuple[ast.AST, str] | None:
    child = use
    for parent in ctx.model.ancestors(use):
        if isinstance(parent, ast.Call):
            qualname = ctx.model.call_qualname(parent)
            method = parent.func.attr if isinstance(parent.func, ast.Attribute) else None
            if child is not parent.func and method in _RESTORING_METHODS:
                return parent, "restoring it gives back the latest weights, not the saved ones"
            if qualname in _COMPARISONS or (method in _COMPARING_METHODS and qualname is None):
                return parent, "comparing it with the weights always finds no change"
        elif isinstance(parent, ast.Attribute) and parent.attr != "data" and not _is_method(ctx, parent):
            return None  # `p.grad` and `p.shape` are other values than the weights.
        elif isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Sub) and _is_scaled_step(parent.right if child is parent.left else parent.left):
            return None  # `p - lr * g` is an update step, not a comparison.
        elif isinstance(parent, ast.Compare) or (isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Sub)):
            return parent, "comparing it with the weights always finds no change"
        elif isinstance(parent, ast.Assign) and isinstance(child, ast.expr) and parent.value is child:
            if any(isinstance(t, ast.Attribute) and t.attr == "data" for t in parent.targets):
                return parent, "restoring it gives back the latest weights, not the saved ones"
        if isinstance(parent, (ast.stmt, ast.comprehension)):
            return None
        child = parent
    return None


def _is_method(ctx: Context, attribute: ast.Attribute) -> bool:
    call = ctx.model.parent(attribute)
    return isinstance(call, ast.Call) and call.func is attribute


def _is_scaled_step(operand: ast.expr) -> bool:
    """Tell whether an operand is a product or quotient, as the `lr * grad` of an update step is."""
    return isinstance(operand, ast.BinOp) and isinstance(operand.op, (ast.Mult, ast.Div))


def _iterated_by(ctx: Context, use: ast.AST) -> tuple[ast.AST, ast.AST] | None:
    """Return the loop target and the loop (or comprehension) when `use` is what a loop iterates over."""
    child = use
    for parent in ctx.model.ancestors(use):
        if isinstance(parent, ast.For) and parent.iter is child:
            return parent.target, parent
        if isinstance(parent, ast.comprehension) and parent.iter is child:
            return parent.target, ctx.model.parent(parent)  # type: ignore[return-value]
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id in ("zip", "enumerate"):
            child = parent
            continue
        return None
    return None


def _in_loop_with(ctx: Context, first: ast.AST, second: ast.AST) -> bool:
    for ancestor in ctx.model.ancestors(first):
        if isinstance(ancestor, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        if isinstance(ancestor, (ast.For, ast.While)) and _within(ancestor, second):
            return True
    return False


def _within(outer: ast.AST, node: ast.AST) -> bool:
    return (outer.lineno, outer.col_offset) <= (node.lineno, node.col_offset) and (node.end_lineno or 0) <= (outer.end_lineno or 0)  # type: ignore[attr-defined]


def _trained_between(ctx: Context, snapshot: ast.Assign, use: ast.AST) -> bool:
    """Tell whether a training call (step, backward, train...) can run after the snapshot and before its use."""
    start = (snapshot.lineno, snapshot.col_offset)
    end = (use.lineno, use.col_offset)  # type: ignore[attr-defined]
    loops = [a for a in ctx.model.ancestors(snapshot) if isinstance(a, (ast.For, ast.While))]
    for call in ctx.state.get("GS701 training", []):
        position = (call.lineno, call.col_offset)
        if start < position < end:
            return True
        if any(_within(loop, call) for loop in loops):
            return True  # the next iteration trains, then the saved reference shows the new weights
    return False


def _deepcopy_fix(ctx: Context, value: ast.expr) -> Fix | None:
    text = ctx.segment(value)
    if not text:
        return None
    module_names = ctx.model.module_scope.bindings
    copy_bindings = module_names.get("copy", [])
    deepcopy_bindings = module_names.get("deepcopy", [])
    edits = []
    if copy_bindings and all(b.kind == "import" and b.qualname == "copy" for b in copy_bindings):
        function = "copy.deepcopy"
    elif deepcopy_bindings and all(b.kind == "import" and b.qualname == "copy.deepcopy" for b in deepcopy_bindings):
        function = "deepcopy"
    elif not copy_bindings and not ctx.model.lookup("copy", value):
        function = "copy.deepcopy"
        edits.append(_import_copy_edit(ctx))
    else:
        return None  # `copy` names something else here
    edits.insert(0, ctx.replace(value, f"{function}({text})"))
    return Fix(f"Copy with `{function}(...)`", tuple(edits))


def _import_copy_edit(ctx: Context) -> Edit:
    """Return an edit that adds `import copy` before the first import (after `from __future__` imports)."""
    line = 1
    for position, statement in enumerate(ctx.tree.body):
        is_docstring = position == 0 and isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)
        if is_docstring or (isinstance(statement, ast.ImportFrom) and statement.module == "__future__"):
            line = (statement.end_lineno or statement.lineno) + 1
            continue
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            line = statement.lineno
        break
    return Edit(Span(line, 1, line, 1), "import copy\n")
