"""GS5: loss and data.

GS501 double-activation reports a softmax or sigmoid output given to a loss that applies the
activation itself (`CrossEntropyLoss`, `NLLLoss` expects log-probabilities, `BCEWithLogitsLoss`),
following the value through the model's `forward` and the last layer of an `nn.Sequential`.

GS502 normalize-stats checks the mean and std given to torchvision's `Normalize` (and the
functional `normalize`). A zero std divides by zero; a std of 0.1 or less (the default floor)
multiplies the inputs by ten or more, which saturates activations and blows up the first layers' gradients; stats on the
0-255 scale after `ToTensor()` (which scales images to [0, 1]) shift every input to about -2.

GS503 loss-tensor-accumulated reports `total += loss` across loop iterations where `loss` still
carries its autograd graph and the total is never backpropagated: every graph stays in memory.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from gradsight.findings import Edit, Fix, Severity, Span
from gradsight.static import flow as value_flow
from gradsight.static import torch_api
from gradsight.static.flow import flow_of
from gradsight.static.registry import after_walk, on
from gradsight.static.rules.optimizer import format_number

if TYPE_CHECKING:
    from gradsight.static.context import Context


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

    means = mean[0] if mean else []
    # Statistics of 0-255 pixels: every mean within [0, 255], every std within (0, 255], and some above 1.
    # Negative means (CT scans in Hounsfield units) or stds above 255 are some other unit, not pixels.
    on_pixel_scale = (
        all(0 <= value <= 255 for value in means)
        and all(0 < value <= 255 for value in std_values)
        and any(value > 1.0 for value in [*means, *std_values])
    )
    if on_pixel_scale and _follows_unit_scaling(ctx, call):
        mean_text = _format_values(means) if means else "(none)"
        scaled_mean = _format_values([round(value / 255, 4) for value in means]) if means else "(none)"
        scaled_std = _format_values([round(value / 255, 4) for value in std_values])
        # After ToTensor() the inputs lie in [0, 1], so (x - mean) / std stays close to -mean / std.
        center = -(means[0] if means else 0.0) / std_values[0]
        ctx.report(
            "GS502",
            call,
            f"Normalize mean {mean_text} and std {std_text} are on the 0-255 scale, but an earlier transform already "
            f"scaled the images to [0, 1]: every input lands near {center:.2g} with a spread of about "
            f"{1 / std_values[0]:.2g}, so the network sees almost constant images; divide the stats by 255: "
            f"mean {scaled_mean}, std {scaled_std}",
            related=related,
        )
        return

    tiny = [value for value in std_values if 0 < abs(value) <= ctx.thresholds.std_floor]
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
    parent = ctx.model.parent(call)
    if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
        # `norm = T.Normalize(...)` used later as an element of a Compose list.
        return any(_follows_unit_scaling(ctx, use) for use in _list_uses(ctx, parent.targets[0].id, parent))  # type: ignore[arg-type]
    sequence = parent
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


def _list_uses(ctx: Context, name: str, assignment: ast.Assign) -> list[ast.Name]:
    """Return the places where the variable bound by `assignment` is an element of a list or tuple."""
    uses = []
    for node in ctx.model.nodes_of(ast.Name):
        if node.id != name or not isinstance(ctx.model.parent(node), (ast.List, ast.Tuple)):  # type: ignore[attr-defined]
            continue
        bindings = ctx.model.lookup(name, node)
        if len(bindings) == 1 and bindings[0].node is assignment:
            uses.append(node)  # type: ignore[arg-type]
    return uses


def _scales_to_unit(ctx: Context, call: ast.Call) -> bool:
    qualname = ctx.model.call_qualname(call)
    if qualname in torch_api.SCALE_TO_UNIT:
        return True
    if qualname in torch_api.TO_DTYPE:
        scale = next((k.value for k in call.keywords if k.arg == "scale"), None)
        return isinstance(scale, ast.Constant) and scale.value is True
    return False


# GS501

# Per loss, the activations that must not come before it, with the severity of the finding.
# Log-softmax before cross-entropy changes nothing (log_softmax is idempotent), hence information.
_SEVERITY_AFTER = {
    "cross_entropy": {"softmax": Severity.WARNING, "log_softmax": Severity.INFORMATION},
    "nll_loss": {"softmax": Severity.WARNING},
    "bce_with_logits": {"sigmoid": Severity.WARNING},
}


_APPLIES = {
    "cross_entropy": "applies log_softmax to its input itself",
    "nll_loss": "expects log-probabilities",
    "bce_with_logits": "applies a sigmoid to its input itself",
}


@on(ast.Call)
def check_double_activation(ctx: Context, call: ast.Call) -> None:
    loss = _loss_kind(ctx, call)
    if loss is None:
        return
    argument = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "input"), None)
    if argument is None:
        return
    activation = flow_of(ctx).activation(argument)
    if activation is None:
        return
    severity = _SEVERITY_AFTER[loss].get(activation.kind)
    if severity is None:
        return

    where = "" if ctx.line_of(activation.node) == ctx.line_of(call) else f" on line {ctx.line_of(activation.node)}"
    origin = "the model ends with" if activation.inside_model else "made by"
    ctx.report(
        "GS501",
        call,
        f"`{ctx.text(call.func)}` {_APPLIES[loss]}, but `{ctx.text(argument)}` is already a "
        f"{activation.kind} output, {origin} `{ctx.text(activation.node)}`{where}: "
        f"{_double_activation_effect(loss, activation.kind)}",
        severity=severity,
        related=(ctx.related(activation.node, f"the {activation.kind} is applied here"),),
        fix=_activation_fix(ctx, activation),
    )


def _double_activation_effect(loss: str, activation: str) -> str:
    """Describe what the extra activation does to training, and what to write instead."""
    if loss == "cross_entropy" and activation == "softmax":
        return (
            "the loss is computed on probabilities squeezed into [0, 1], so it can barely decrease and the gradients "
            "shrink toward zero; pass the logits (the values before the softmax)"
        )
    if loss == "cross_entropy":
        return (
            "applying log_softmax twice gives the same values, so training is not affected, but the extra call hides "
            "the intent; pass the logits, or use `F.nll_loss` on the log-probabilities"
        )
    if loss == "nll_loss":
        return (
            "with probabilities the loss becomes -p instead of -log p, and its gradients vanish as predictions improve; "
            "use `log_softmax` instead of `softmax`, or pass the logits to `cross_entropy`"
        )
    return (
        "the sigmoid runs twice, squeezing every prediction into (0.5, 0.73), so the loss cannot reach its minimum "
        "and the gradients are tiny; pass the logits, or use `BCELoss` on the probabilities"
    )


def _loss_kind(ctx: Context, call: ast.Call) -> str | None:
    qualname = ctx.model.call_qualname(call)
    if qualname is None:
        qualname = _loss_module_class(ctx, call.func)
    if qualname in torch_api.CROSS_ENTROPY:
        return "cross_entropy"
    if qualname in torch_api.NLL_LOSS:
        return "nll_loss"
    if qualname in torch_api.BCE_WITH_LOGITS:
        return "bce_with_logits"
    return None


def _loss_module_class(ctx: Context, func: ast.expr) -> str | None:
    """Return the class of the loss module called as `func` (`criterion`, `self.loss_fn`, `nn.CrossEntropyLoss()`)."""
    if isinstance(func, ast.Call):
        return ctx.model.call_qualname(func)
    if isinstance(func, ast.Name):
        bindings = ctx.model.lookup(func.id, func)
        if len(bindings) != 1 or bindings[0].kind != "assign" or not isinstance(bindings[0].value, ast.Call):
            return None
        return ctx.model.call_qualname(bindings[0].value)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        constructor = flow_of(ctx).constructor_of(func)
        return ctx.model.call_qualname(constructor) if constructor is not None else None
    return None


def _activation_fix(ctx: Context, activation: value_flow.Activation) -> Fix | None:
    """Remove the activation: at the loss call or its single-use variable (safe), or as the model's last layer (unsafe)."""
    node = activation.node
    if not isinstance(node, ast.Call):
        return None
    flow = flow_of(ctx)
    if activation.inside_model:
        return _drop_last_layer(ctx, node, activation.kind)
    own = flow.activation(node)
    if own is None or own.kind != activation.kind or own.node is not node:
        return None  # `torch.log(F.softmax(x))`: removing the softmax alone would change the meaning
    if ctx.model.call_qualname(node) is not None:
        inner = node.args[0] if node.args else None  # F.softmax(x, dim=1)
    else:
        inner = node.func.value if isinstance(node.func, ast.Attribute) else None  # x.softmax(dim=1)
    if inner is None:
        return None
    for name in activation.names:
        scope = ctx.model.scope_of(name).node
        if len(flow.loads(scope).get(name.id, [])) != 1 or len(flow.definitions(name) or []) != 1:
            return None  # the activation's output is used elsewhere too (printing probabilities, metrics)
    inner_text = ctx.segment(inner)
    if not inner_text:
        return None
    return Fix(f"Remove the {activation.kind}: pass `{ctx.text(inner)}` to the loss", (ctx.replace(node, inner_text),))


def _drop_last_layer(ctx: Context, layer: ast.Call, kind: str) -> Fix | None:
    sequential = ctx.model.parent(layer)
    if not (isinstance(sequential, ast.Call) and sequential.args and sequential.args[-1] is layer and len(sequential.args) > 1):
        return None
    previous = ctx.span(sequential.args[-2])
    end = ctx.span(layer)
    # Dropping the last element changes what the model returns everywhere (also at inference), hence unsafe.
    return Fix(
        f"Remove the final {kind} layer from the nn.Sequential",
        (Edit(Span(previous.end_line, previous.end_column, end.end_line, end.end_column), ""),),
        safe=False,
    )


# GS503


@on(ast.AugAssign)
def collect_running_totals(ctx: Context, node: ast.AugAssign) -> None:
    if isinstance(node.op, ast.Add) and _is_total(node.target):
        ctx.state.setdefault("GS503 totals", []).append((node, node.target, node.value))


@on(ast.Assign)
def collect_running_total_assignments(ctx: Context, node: ast.Assign) -> None:
    # `total = total + loss`, `stats["loss"] = stats["loss"] + loss`
    value = node.value
    if (
        len(node.targets) == 1
        and _is_total(node.targets[0])
        and isinstance(value, ast.BinOp)
        and isinstance(value.op, ast.Add)
        and _is_total(value.left)
        and ast.unparse(value.left) == ast.unparse(node.targets[0])
    ):
        ctx.state.setdefault("GS503 totals", []).append((node, value.left, value.right))


def _is_total(target: ast.expr) -> bool:
    """Tell whether `target` can hold a running total: a name, `stats.loss`, `stats["loss"]` or `history[key]`.

    Subscripts with slices or tuples (`out[:, i]`) index tensors, which models fill in place on purpose.
    """
    if isinstance(target, ast.Subscript):
        key = target.slice
        if not (isinstance(key, (ast.Name, ast.Attribute)) or (isinstance(key, ast.Constant) and isinstance(key.value, (str, int)))):
            return False
        target = target.value
    while isinstance(target, ast.Attribute):
        target = target.value
    return isinstance(target, ast.Name)


@after_walk
def check_running_totals(ctx: Context) -> None:
    candidates = ctx.state.get("GS503 totals", [])
    if not candidates:
        return
    flow = flow_of(ctx)
    backpropagated: set[ast.AST] = set()
    for _, value in ctx.state.get("backward calls", []):
        backpropagated |= flow.trace(value).statements
    for statement, total, added in candidates:
        loop = next((a for a in ctx.model.ancestors(statement) if isinstance(a, (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.AsyncFunctionDef))), None)
        if not isinstance(loop, (ast.For, ast.AsyncFor, ast.While)):
            continue
        if statement in backpropagated or flow.grad_mode.disabled_by(statement) is not None:
            continue
        # When the loop calls backward() on each step's loss itself, the total only logs: its graph was
        # already used. Returning it or keeping it in an object passed in is then no sign of a later backward().
        steps_itself = _calls_backward_inside(ctx, loop)
        if not isinstance(total, ast.Name) and (
            _is_backpropagated_container(ctx, total) or (_comes_from_caller(ctx, total) and not steps_itself)
        ):
            continue
        if not _starts_before(flow, total, loop) or (_is_returned(ctx, total) and not steps_itself):
            continue
        trace = flow.trace(added)
        carriers = [s for s in trace.sources if s.live and s.kind in (value_flow.MODEL, value_flow.PARAMETER) and s.role == value_flow.VALUE]
        live = any(source.live and source.role == value_flow.VALUE for source in trace.sources)
        if live and trace.complete and _backpropagated_in(ctx, loop, added):
            # `loss.backward()` in the same loop: `loss` has a graph whatever computed it (`self.model(x)`).
            _report_running_total(ctx, statement, total, added)
            continue
        if not trace.complete or not carriers:
            continue
        # Calls of unknown callables count as model outputs when tracing, which is too weak for this warning:
        # also require a module whose kind is known, a loss function on the way, or a name that says "loss".
        known_model = any(
            isinstance(source.node, ast.Call) and ctx.kinds.is_module(source.node.func) for source in carriers
        )
        total_text = ctx.text(total)
        names = [total_text, *(node.id for node in ast.walk(added) if isinstance(node, ast.Name))]
        if not (known_model or trace.losses or any("loss" in name.lower() for name in names)):
            continue
        _report_running_total(ctx, statement, total, added)


def _report_running_total(ctx: Context, statement: ast.stmt, total: ast.expr, added: ast.expr) -> None:
    total_text = ctx.text(total)
    added_text = ctx.text(added)
    value_text = added_text if isinstance(added, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) else f"({added_text})"
    ctx.report(
        "GS503",
        statement,
        f"`{ctx.text(statement)}` adds the tensor `{added_text}` with its autograd graph, not its value: `{total_text}` "
        "keeps the graph of every iteration alive, so memory grows each step until it runs out; "
        f"write `{total_text} += {value_text}.item()` (or `.detach()`) for a running total",
        fix=_detach_fix(ctx, added),
    )


def _backpropagated_in(ctx: Context, loop: ast.AST, added: ast.expr) -> bool:
    """Tell whether a name in `added` is the value of a `name.backward()` call inside `loop`."""
    names = {node.id for node in ast.walk(added) if isinstance(node, ast.Name)}
    return any(
        isinstance(value, ast.Name) and value.id in names and _inside(loop, call)
        for call, value in ctx.state.get("backward calls", [])
    )


def _container(total: ast.expr) -> ast.expr:
    """Return the object that contains a total kept in an entry or attribute: `stats` for `stats["loss"]` and `stats.loss`."""
    return total.value if isinstance(total, (ast.Subscript, ast.Attribute)) else total


def _root_name(total: ast.expr) -> ast.Name:
    while isinstance(total, (ast.Subscript, ast.Attribute)):
        total = total.value
    return total  # type: ignore[return-value]


def _is_backpropagated_container(ctx: Context, total: ast.expr) -> bool:
    """Tell whether a backward() call uses the total's container: `stats["loss"].backward()`, `sum(losses.values()).backward()`.

    The values that the backward call's trace went through are compared as source text, across the whole file,
    so a total built in one function and backpropagated in another keeps the rule quiet.
    """
    container = ast.unparse(_container(total))
    if container == "self":
        container = ast.unparse(total)  # For `self.total_loss`, match the attribute itself, not every use of `self`.
    flow = flow_of(ctx)
    for _, value in ctx.state.get("backward calls", []):
        expressions: list[ast.AST] = [value]
        for traced in flow.trace(value).statements:
            # Assignments by their value, loop headers by what they iterate (not their bodies).
            if isinstance(traced, (ast.For, ast.AsyncFor, ast.comprehension)):
                expressions.append(traced.iter)
            elif isinstance(getattr(traced, "value", None), ast.AST):
                expressions.append(traced.value)  # type: ignore[attr-defined]
        for expression in expressions:
            for node in ast.walk(expression):
                if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and _refers_to(ast.unparse(node), container):
                    return True
    return False


def _refers_to(text: str, container: str) -> bool:
    return text == container or text.startswith((container + ".", container + "["))


def _comes_from_caller(ctx: Context, total: ast.expr) -> bool:
    """Tell whether the container is a parameter of the enclosing function other than `self`, which the caller may backpropagate."""
    root = _root_name(total)
    if root.id == "self":
        return False
    bindings = ctx.model.lookup(root.id, root)
    return any(binding.kind == "param" for binding in bindings)


def _starts_before(flow: value_flow.ValueFlow, total: ast.expr, loop: ast.AST) -> bool:
    """Tell whether the running total is first set before the loop, so that it carries over between iterations."""
    definitions = flow.definitions(_root_name(total)) or []
    return any(not _inside(loop, binding.node) for binding in definitions)


def _inside(outer: ast.AST, node: ast.AST) -> bool:
    return (outer.lineno, outer.col_offset) <= (getattr(node, "lineno", 0), getattr(node, "col_offset", 0)) and (
        getattr(node, "end_lineno", 0) or 0
    ) <= (outer.end_lineno or 0)


def _calls_backward_inside(ctx: Context, loop: ast.AST) -> bool:
    """Tell whether a backward() call sits in the body of `loop`."""
    return any(_inside(loop, call) for call, _ in ctx.state.get("backward calls", []))


def _is_returned(ctx: Context, total: ast.expr) -> bool:
    function = ctx.model.enclosing_function(total)
    scope_node = function if function is not None else ctx.tree
    return _root_name(total).id in flow_of(ctx).returned_names(scope_node)


def _detach_fix(ctx: Context, added: ast.expr) -> Fix | None:
    text = ctx.segment(added)
    if not text:
        return None
    simple = isinstance(added, (ast.Name, ast.Attribute, ast.Subscript, ast.Call))
    new_text = f"{text}.detach()" if simple else f"({text}).detach()"
    # The total keeps the same values and type; only the graph it held on to is dropped.
    return Fix(f"Add `.detach()`: `{ctx.text(added)}.detach()`", (ctx.replace(added, new_text),))
