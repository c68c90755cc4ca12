"""GS1: optimizer and learning-rate schedule.

GS101 lr-too-small and GS102 lr-too-large check the learning rate an optimizer is built with,
after resolving it through constants, argparse defaults, function defaults and config dicts.
Both stay quiet when something else sets the learning rate later: a scheduler that sets it on
its own terms (OneCycleLR, CyclicLR, LambdaLR, MultiplicativeLR) or code that writes
`param_group["lr"]`, as warmup loops do.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradsight.static import torch_api
from gradsight.static.registry import after_walk, on
from gradsight.static.values import Resolved

if TYPE_CHECKING:
    from gradsight.static.context import Context

LR_MIN = 1e-6
SGD_LR_MAX = 1.0
ADAM_LR_MAX = 0.1
_STATE = "GS1"


@dataclass
class _OptimizerCall:
    call: ast.Call
    qualname: str
    target: str | None


@dataclass
class _Facts:
    optimizers: list[_OptimizerCall]
    # Optimizer variables handed to a scheduler that sets the lr itself; None stands for "unknown variable".
    overridden: set[str | None]
    writes_param_group_lr: bool


def _facts(ctx: Context) -> _Facts:
    if _STATE not in ctx.state:
        ctx.state[_STATE] = _Facts([], set(), False)
    return ctx.state[_STATE]


def format_number(value: float) -> str:
    return f"{value:g}"


@on(ast.Call)
def collect_calls(ctx: Context, call: ast.Call) -> None:
    qualname = ctx.model.call_qualname(call)
    facts = _facts(ctx)
    if qualname in torch_api.OPTIMIZERS:
        facts.optimizers.append(_OptimizerCall(call, qualname, _assigned_name(ctx, call)))
    elif qualname in torch_api.LR_OVERRIDING_SCHEDULERS:
        optimizer = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "optimizer"), None)
        facts.overridden.add(optimizer.id if isinstance(optimizer, ast.Name) else None)


@on(ast.Assign)
def collect_lr_writes(ctx: Context, node: ast.Assign) -> None:
    # `group["lr"] = ...` (warmup, manual decay, LR finders): the optimizer's initial lr is not final.
    for target in node.targets:
        if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) and target.slice.value in ("lr", "initial_lr"):
            _facts(ctx).writes_param_group_lr = True


@on(ast.Call)
def collect_group_updates(ctx: Context, call: ast.Call) -> None:
    # `group.update(lr=...)` on a parameter group.
    if isinstance(call.func, ast.Attribute) and call.func.attr == "update" and any(k.arg == "lr" for k in call.keywords):
        _facts(ctx).writes_param_group_lr = True


@after_walk
def check_learning_rates(ctx: Context) -> None:
    facts = _facts(ctx)
    if facts.writes_param_group_lr or None in facts.overridden:
        return
    for optimizer in facts.optimizers:
        if optimizer.target is not None and optimizer.target in facts.overridden:
            continue
        for node, resolved, group in _learning_rates(ctx, optimizer.call):
            _check_learning_rate(ctx, optimizer, node, resolved, group)


def _assigned_name(ctx: Context, call: ast.Call) -> str | None:
    parent = ctx.model.parent(call)
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
        return parent.targets[0].id
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Attribute):
        return parent.targets[0].attr
    return None


def _learning_rates(ctx: Context, call: ast.Call) -> list[tuple[ast.AST, Resolved, int | None]]:
    """Return each learning rate of an optimizer call: the `lr` argument and any per-group `"lr"`.

    Each item is the node to report at, its resolved value, and the parameter group index
    (None for the optimizer-wide lr).
    """
    found: list[tuple[ast.AST, Resolved, int | None]] = []
    lr_keyword = next((k for k in call.keywords if k.arg == "lr"), None)
    # Every torch.optim optimizer takes (params, lr, ...) positionally.
    lr_node: ast.AST | None = lr_keyword if lr_keyword is not None else (call.args[1] if len(call.args) > 1 else None)
    if lr_node is not None:
        resolved = ctx.values.number(lr_keyword.value if lr_keyword is not None else lr_node)
        if resolved is not None:
            found.append((lr_node, resolved, None))

    params = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "params"), None)
    if isinstance(params, (ast.List, ast.Tuple)):
        for index, group in enumerate(params.elts):
            if not isinstance(group, ast.Dict):
                continue
            for key, value in zip(group.keys, group.values):
                if isinstance(key, ast.Constant) and key.value == "lr":
                    resolved = ctx.values.number(value)
                    if resolved is not None:
                        found.append((value, resolved, index))
    return found


def _check_learning_rate(ctx: Context, optimizer: _OptimizerCall, node: ast.AST, resolved: Resolved, group: int | None) -> None:
    name = optimizer.qualname.rsplit(".", 1)[-1]
    value = float(resolved.value)  # type: ignore[arg-type]
    details = []
    if group is not None:
        details.append(f"parameter group {group}")
    if resolved.via:
        details.append(resolved.via if ctx.line_of(resolved.origin) == ctx.line_of(node) else f"{resolved.via}, line {ctx.line_of(resolved.origin)}")
    where = f" ({'; '.join(details)})" if details else ""
    related = ()
    if resolved.origin is not node and ctx.line_of(resolved.origin) != ctx.line_of(node):
        related = (ctx.related(resolved.origin, f"learning rate {format_number(value)} is set here"),)

    if value <= LR_MIN:
        if value <= 0:
            effect = f"{name} never changes the weights and the loss cannot improve"
        else:
            effect = f"{name} barely changes the weights and the loss will hardly move"
        ctx.report(
            "GS101",
            node,
            f"learning rate {format_number(value)}{where} is so small that {effect}; "
            f"{_typical_range(optimizer.qualname)}",
            related=related,
        )
        return

    limit = SGD_LR_MAX if optimizer.qualname in torch_api.SGD_FAMILY else ADAM_LR_MAX if optimizer.qualname in torch_api.ADAM_FAMILY else None
    if limit is not None and value > limit:
        ctx.report(
            "GS102",
            node,
            f"learning rate {format_number(value)}{where} is too large for {name} "
            f"(above {format_number(limit)}): updates overshoot, the loss diverges or turns NaN; "
            f"{_typical_range(optimizer.qualname)}",
            related=related,
        )


def _typical_range(qualname: str) -> str:
    name = qualname.rsplit(".", 1)[-1]
    if qualname in torch_api.SGD_FAMILY:
        return f"typical values for {name} are 1e-3 to 1e-1"
    if qualname in torch_api.ADAM_FAMILY:
        return f"typical values for {name} are 1e-5 to 1e-3"
    return "typical values are 1e-5 to 1e-1 depending on the optimizer"
