"""GS5: loss and data.

GS502 normalize-stats checks the mean and std given to torchvision's `Normalize` (and the
functional `normalize`). A zero std divides by zero; a std of 0.1 or less multiplies the inputs
by ten or more, which saturates activations and blows up the first layers' gradients; stats on the
0-255 scale after `ToTensor()` (which scales images to [0, 1]) shift every input to about -2.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from gradsight.findings import Severity
from gradsight.static import torch_api
from gradsight.static.registry import on
from gradsight.static.rules.optimizer import format_number

if TYPE_CHECKING:
    from gradsight.static.context import Context

STD_FLOOR = 0.1


@on(ast.Call)
def check_normalize(ctx: Context, call: ast.Call) -> None:
    qualname = ctx.model.call_qualname(call)
    if qualname in torch_api.NORMALIZE:
        mean_node, std_node = _argument(call, 0, "mean"), _argument(call, 1, "std")
    elif qualname in torch_api.NORMALIZE_FUNCTIONS:
        mean_node, std_node = _argument(call, 1, "mean"), _argument(call, 2, "std")
    else:
        return
    mean = _numbers(ctx, mean_node)
    std = _numbers(ctx, std_node)
    if std is None:
        return
    std_values, std_origin = std
    related = ()
    if std_node is not None and std_origin is not std_node and ctx.line_of(std_origin) != ctx.line_of(std_node):
        related = (ctx.related(std_origin, "std is set here"),)
    std_text = _format_values(std_values)

    if any(value == 0 for value in std_values):
        ctx.report(
            "GS502",
            std_node or call,
            f"Normalize std {std_text} has a zero: dividing by it turns every input into inf or NaN, "
            "so the loss is NaN and no parameter learns; use the dataset's per-channel std",
            severity=Severity.ERROR,
            related=related,
        )
        return

    if mean is not None and len(mean[0]) > 1 and len(std_values) > 1 and len(mean[0]) != len(std_values):
        ctx.report(
            "GS502",
            call,
            f"Normalize mean has {len(mean[0])} values but std has {len(std_values)}: they must have one value per "
            "channel (or a single value), otherwise the transform fails at run time",
            severity=Severity.ERROR,
        )
        return

    large = [value for value in [*(mean[0] if mean else ()), *std_values] if abs(value) > 1.0]
    if large and _follows_unit_scaling(ctx, call):
        mean_text = _format_values(mean[0]) if mean else "?"
        ctx.report(
            "GS502",
            call,
            f"Normalize mean {mean_text} and std {std_text} are on the 0-255 scale, but ToTensor() already scaled "
            "the images to [0, 1]: every input lands near -2 with a tiny spread; divide the stats by 255 "
            "(for CIFAR-10: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616))",
            related=related,
        )
        return

    tiny = [value for value in std_values if 0 < abs(value) <= STD_FLOOR]
    if tiny:
        factor = 1 / min(abs(value) for value in tiny)
        ctx.report(
            "GS502",
            std_node or call,
            f"Normalize std {std_text} multiplies the inputs by {factor:.0f}: activations saturate and the first layers' "
            "gradients explode, so training stalls or diverges; use the dataset's per-channel std "
            "(ImageNet: (0.229, 0.224, 0.225), CIFAR-10: (0.2470, 0.2435, 0.2616))",
            related=related,
        )


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if position < len(call.args) and not any(isinstance(arg, ast.Starred) for arg in call.args[: position + 1]):
        return call.args[position]
    return None


def _numbers(ctx: Context, node: ast.expr | None) -> tuple[list[float], ast.AST] | None:
    resolved = ctx.values.resolve(node)
    if resolved is None:
        return None
    value = resolved.value
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in items):
        return None
    return [float(item) for item in items], resolved.origin


def _format_values(values: list[float]) -> str:
    if len(values) == 1:
        return format_number(values[0])
    return "(" + ", ".join(format_number(value) for value in values) + ")"


def _follows_unit_scaling(ctx: Context, call: ast.Call) -> bool:
    """Tell whether an earlier transform of the same Compose scales images to [0, 1]."""
    sequence = ctx.model.parent(call)
    if not isinstance(sequence, (ast.List, ast.Tuple)):
        return False
    compose = ctx.model.parent(sequence)
    if isinstance(compose, ast.Call) and ctx.model.call_qualname(compose) not in torch_api.COMPOSE:
        return False
    if not isinstance(compose, ast.Call):
        return False
    for element in sequence.elts:
        if element is call:
            return False
        if isinstance(element, ast.Call) and _scales_to_unit(ctx, element):
            return True
    return False


def _scales_to_unit(ctx: Context, call: ast.Call) -> bool:
    qualname = ctx.model.call_qualname(call)
    if qualname in torch_api.SCALE_TO_UNIT:
        return True
    if qualname in torch_api.TO_DTYPE:
        scale = next((k.value for k in call.keywords if k.arg == "scale"), None)
        return isinstance(scale, ast.Constant) and scale.value is True
    return False
