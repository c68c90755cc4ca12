"""Classify the layers of a probe snapshot: which ones learn, which ones do not, and why.

Input is the snapshot payload of `gradsight.runtime.probe` (a dict, see docs/runtime-protocol.md)
and optionally the previous snapshot of the same debug session. Output is a status per layer
(module path that owns parameters directly) and findings with codes GS901 to GS920.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from gradsight.runtime.codes import RUNTIME_RULES

# Statuses, worst first. A layer shows the worst status of its parameters and of its own checks.
STATUSES = (
    "non-finite",
    "not-in-optimizer",
    "no-grad",
    "zero-lr",
    "unchanged",
    "zero-grad",
    "exploding",
    "vanishing",
    "tiny-update",
    "frozen-but-changing",
    "frozen",
    "ok",
)
STATUS_RANK = {status: rank for rank, status in enumerate(STATUSES)}

# Each layer status's finding code and default severity, from the table that `gradsight rule` prints.
CODES = {rule.name: rule.code for rule in RUNTIME_RULES.values() if rule.name in STATUS_RANK}
UNREGISTERED_LEAF = "GS914"

SEVERITIES: dict[str, str | None] = {status: RUNTIME_RULES[code].severity for status, code in CODES.items()}
SEVERITIES["ok"] = None

# An expected update-to-weight ratio below this is too small to train, and in float32 (machine
# epsilon 1.2e-7) most weights do not change at all. Healthy training is near 1e-3.
TINY_UPDATE_RATIO = 1e-7

# Vanishing: |grad| / |w| below this and below VANISHING_RELATIVE times the median over layers.
VANISHING_RATIO = 1e-5
VANISHING_RELATIVE = 1e-3

# Exploding: |grad| / |w| above this, or the gradient norm grew by more than EXPLODING_GROWTH
# since the previous check while already above the weight norm.
EXPLODING_RATIO = 1e2
EXPLODING_GROWTH = 1e2

# The ratio test for exploding gradients is skipped for a layer whose weights have a root mean
# square below this: a parameter initialized to zero (a ViT class token, a LoRA B matrix) has a
# huge |grad| / |w| in its first steps, which is no sign of a problem with the gradient. Default
# initializations have a root mean square of 1 / sqrt(fan_in), above 1e-3 up to a fan-in of 1e6.
RATIO_MIN_WEIGHT_RMS = 1e-3

# Front ends that show a report, each with its own wording of the notes: the debug session's
# paused frame, `gradsight run`, and the Python API (`gradsight.inspect` and `gradsight.watch`).
FRONT_ENDS = ("debugger", "run", "api")

ADAM_FAMILY = {"Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "RMSprop", "Adadelta", "SparseAdam", "Adafactor"}
NORMALIZATION_TYPES = {
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d", "LazyBatchNorm2d",
    "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GroupNorm", "LayerNorm",
}


@dataclass
class RuntimeFinding:
    code: str
    severity: str
    message: str
    layer: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, "layer": self.layer}


@dataclass
class LayerReport:
    name: str
    type: str
    registered: bool
    status: str = "ok"
    reason: str = ""
    grad_norm: float | None = None
    weight_norm: float | None = None
    mean_abs_grad: float | None = None
    max_abs_grad: float | None = None
    update_ratio: float | None = None
    lr: float | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def severity(self) -> str | None:
        return SEVERITIES[self.status]

    def raise_status(self, status: str, reason: str) -> None:
        """Keep the worse of the current status and `status`."""
        if STATUS_RANK[status] < STATUS_RANK[self.status]:
            self.status = status
            self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "severity": self.severity,
            "gradNorm": self.grad_norm,
            "weightNorm": self.weight_norm,
            "meanAbsGrad": self.mean_abs_grad,
            "maxAbsGrad": self.max_abs_grad,
            "updateRatio": self.update_ratio,
            "lr": self.lr,
            "tooltip": self.tooltip(),
            "parameters": self.parameters,
        }

    @property
    def display_name(self) -> str:
        """The layer name for messages: the root module's own parameters have the empty name."""
        return self.name or f"the model's own parameters ({self.type})"

    def tooltip(self) -> str:
        title = f"{self.name} ({self.type})" if self.name else self.display_name
        lines = [f"{title}: {self.status}"]
        if self.reason:
            lines.append(self.reason)
        if self.grad_norm is not None:
            lines.append(f"gradient norm {_format(self.grad_norm)}, weight norm {_format(self.weight_norm)}")
        if self.update_ratio is not None:
            lines.append(f"expected update-to-weight ratio per step {_format(self.update_ratio)} (healthy: near 1e-3)")
        if self.lr is not None:
            lines.append(f"learning rate {_format(self.lr)}")
        return "\n".join(lines)


@dataclass
class Report:
    layers: list[LayerReport]
    findings: list[RuntimeFinding]
    notes: list[str]


def classify(
    snapshot: dict[str, Any],
    previous: dict[str, Any] | None = None,
    optimizer_steps: int | None = None,
    checked_after_step: bool = False,
    front_end: str = "debugger",
) -> Report:
    """Classify every layer of `snapshot`, comparing with `previous` where one is given.

    `optimizer_steps` is the number of optimizer steps that the caller counted between
    `previous` and `snapshot` (None when it did not count them). `checked_after_step` means that
    `snapshot` was taken right after a step of the first optimizer in it, as `gradsight.watch`
    does. `front_end` is one of FRONT_ENDS and sets the wording of the notes.
    """
    if front_end not in FRONT_ENDS:
        raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
    optimizers = snapshot.get("optimizers") or []
    groups = {(opt["index"], group["index"]): (opt, group) for opt in optimizers for group in opt["groups"]}
    layer_types = {layer["name"]: layer for layer in snapshot.get("layers", [])}
    previous_parameters = {p["name"]: p for p in (previous or {}).get("parameters", [])}
    stepped = _optimizer_steps_between(previous, snapshot)
    notes = list(snapshot.get("notes") or [])
    findings: list[RuntimeFinding] = []

    parameters = snapshot.get("parameters", [])
    any_grad = any(p.get("hasGrad") for p in parameters if p.get("requiresGrad"))
    previous_non_finite = any(_count(p, "gradNan") + _count(p, "gradInf") for p in (previous or {}).get("parameters", []))
    layers_with_gradient = {
        p["layer"] for p in parameters if not p["name"].endswith("bias") and (_number(p.get("gradNorm")) or 0) > 0
    }
    shift_invariant_biases: list[str] = []
    layers: dict[str, LayerReport] = {}
    for parameter in parameters:
        layer_info = layer_types.get(parameter["layer"], {})
        layer = layers.get(parameter["layer"])
        if layer is None:
            layer = LayerReport(parameter["layer"], layer_info.get("type", "?"), parameter.get("registered", True))
            layers[parameter["layer"]] = layer
        context = _ParameterContext(
            parameter=parameter,
            group=groups.get(tuple(parameter["group"])) if parameter.get("group") else None,
            has_optimizer=bool(optimizers),
            previous=previous_parameters.get(parameter["name"]),
            stepped=stepped,
            any_grad=any_grad,
            before_normalization=_is_bias_before_normalization(parameter, layer_info),
            optimizer_steps=optimizer_steps,
            checked_after_step=checked_after_step,
            previous_non_finite=previous_non_finite,
            layer_has_gradient=parameter["layer"] in layers_with_gradient,
        )
        status, reason = _classify_parameter(context)
        if status == "ok" and _is_shift_invariant_bias(context):
            shift_invariant_biases.append(parameter["name"])
        layer.parameters.append(_parameter_json(parameter, status, context))
        layer.raise_status(status, reason)

    reports = list(layers.values())
    for layer in reports:
        _summarize_layer(layer, groups, layer_types.get(layer.name, {}))
    _classify_ratios(reports, layer_types)
    _classify_growth(reports, previous)

    model = snapshot.get("model") or {}
    if model.get("training") is False:
        notes.append(_eval_mode_note(model))
    if parameters and not any_grad and not checked_after_step and any(p.get("requiresGrad") for p in parameters):
        notes.append(_no_gradient_note(model, front_end))
    if shift_invariant_biases:
        notes.append(_shift_invariant_note(model, shift_invariant_biases))

    for layer in reports:
        finding = _layer_finding(layer)
        if finding is not None:
            findings.append(finding)
    order = {layer.name: position for position, layer in enumerate(reports)}
    findings.sort(key=lambda finding: (STATUS_RANK.get(_status_of(finding.code), 99), order[finding.layer]))
    return Report(reports, findings, notes)


@dataclass
class _ParameterContext:
    parameter: dict[str, Any]
    group: tuple[dict[str, Any], dict[str, Any]] | None
    has_optimizer: bool
    previous: dict[str, Any] | None
    stepped: dict[tuple[int, int], bool]
    any_grad: bool
    before_normalization: bool
    optimizer_steps: int | None = None
    checked_after_step: bool = False
    # Whether the previous check saw a NaN or Inf gradient: a GradScaler skips that step.
    previous_non_finite: bool = False
    # Whether a parameter of the same layer other than a bias has a non-zero gradient.
    layer_has_gradient: bool = False


def _model_label(model: dict[str, Any]) -> str:
    names = model.get("names") or []
    return f"`{names[0]}` ({model.get('type')})" if names else f"the model ({model.get('type')})"


def _eval_mode_note(model: dict[str, Any]) -> str:
    names = model.get("names") or []
    call = f"{names[0]}.train()" if names else "model.train()"
    return (
        f"{_model_label(model)} is in eval mode: dropout is off and BatchNorm uses its running statistics. "
        f"Unless that is on purpose (a frozen backbone, a target network), call {call} before the training steps."
    )


def _no_gradient_note(model: dict[str, Any], front_end: str) -> str:
    start = f"No trainable parameter of {_model_label(model)} has a gradient"
    if front_end == "run":
        return (
            f"{start}: no backward pass had reached it when it was checked. Either the script uses it "
            "without gradients (a target network), or the run stopped before a loss reached it."
        )
    if front_end == "api":
        return (
            f"{start}: backward() has not run since the gradients were last cleared (zero_grad). "
            "Call gradsight.inspect after loss.backward() and before zero_grad() to see the gradients."
        )
    return (
        f"{start}: either backward() has not run yet in this iteration, or the gradients were "
        "cleared (zero_grad) after it. Pause on the line after loss.backward() to see the gradients."
    )


def _shift_invariant_note(model: dict[str, Any], names: list[str]) -> str:
    listed = ", ".join(f"`{name}`" for name in names)
    verb = "has" if len(names) == 1 else "have"
    return (
        f"{listed} of {_model_label(model)} {verb} a gradient of exactly 0 while the weight of the same "
        "layer has a non-zero gradient: the loss does not depend on this bias. A ranking, distance or "
        "Wasserstein loss does not change when the layer's output shifts by a constant, so the bias "
        "keeps its initial value, which is harmless."
    )


def _is_shift_invariant_bias(context: _ParameterContext) -> bool:
    """Return whether the parameter is a bias with a gradient of exactly 0 in a layer whose weight has one.

    A dead unit or a masked output zeroes the weight's gradient as well. So a zero bias gradient
    beside a non-zero weight gradient means that the layer's output gradient sums to 0 over the
    batch for every unit, and the loss does not change when the output shifts by a constant.
    """
    p = context.parameter
    return (
        p["name"].endswith("bias")
        and bool(p.get("requiresGrad"))
        and bool(p.get("hasGrad"))
        and _number(p.get("gradNorm")) == 0
        and context.layer_has_gradient
        and not context.before_normalization
    )


def _classify_parameter(context: _ParameterContext) -> tuple[str, str]:
    """Return the status of one parameter and the reason, in words."""
    p = context.parameter
    name = p["name"]
    non_finite = _count(p, "weightNan") + _count(p, "weightInf") + _count(p, "gradNan") + _count(p, "gradInf")
    if non_finite:
        return "non-finite", _non_finite_reason(p)

    if not p.get("requiresGrad"):
        changed = context.previous is not None and _changed(context.previous.get("checksum"), p.get("checksum"))
        if changed and context.group is not None:
            return "frozen-but-changing", (
                f"{name} has requires_grad=False but its value changed since the previous check, and it "
                "is in a parameter group of the optimizer"
            )
        if changed:
            # The user's own code updates it under torch.no_grad(): an EMA or target-network copy.
            return "frozen", (
                f"{name} has requires_grad=False and is in no optimizer, but its value changed since the "
                "previous check, as an EMA or target-network update does"
            )
        return "frozen", f"{name} has requires_grad=False"

    if context.has_optimizer and context.group is None:
        return "not-in-optimizer", f"{name} requires grad but is in no parameter group of the optimizer"

    if not p.get("hasGrad"):
        if context.any_grad or not p.get("registered", True):
            return "no-grad", f"{name}.grad is None although backward ran: the loss does not reach it"
        if _stepped_without_gradient(context):
            return "unchanged", (
                f"{name} did not change over the {context.optimizer_steps} optimizer steps since the previous "
                "check, and right after optimizer.step() no trainable parameter had a gradient, so the "
                "gradients are cleared before step() or backward() never runs"
            )
        return "ok", ""

    if context.group is not None and _number(context.group[1].get("lr")) == 0:
        return "zero-lr", f"{name} is in a parameter group with learning rate 0"

    if _is_unchanged(context):
        return "unchanged", (
            f"{name} did not change since the previous check although it had a non-zero gradient "
            "after backward() and the optimizer stepped in between, so the gradient is likely cleared "
            "before step() or never reaches it"
        )

    if _number(p.get("gradNorm")) == 0 and not context.before_normalization:
        if _is_shift_invariant_bias(context):
            return "ok", ""  # Explained by a note: the loss does not depend on this bias.
        return "zero-grad", f"the gradient of {name} is exactly zero"

    return "ok", ""


def _is_unchanged(context: _ParameterContext) -> bool:
    previous = context.previous
    if previous is None or context.group is None:
        return False
    if _changed(previous.get("checksum"), context.parameter.get("checksum")):
        return False
    if not previous.get("hasGrad") or not _number(previous.get("gradNorm")):
        return False
    if _number(context.group[1].get("lr")) in (None, 0):
        return False

    # An update below float32 resolution leaves the weights as they are: that is tiny-update.
    ratio = _expected_update_ratio(previous, context.group)
    if ratio is not None and ratio < TINY_UPDATE_RATIO:
        return False
    if context.optimizer_steps == 0 or context.previous_non_finite:
        return False
    key = (context.group[0]["index"], context.group[1]["index"])
    if context.stepped.get(key) is not None:
        return context.stepped[key]
    # The optimizer state cannot tell: SGD without momentum keeps none, and an optimizer whose
    # step() finds .grad set to None skips the parameter and creates none. So look at the
    # gradient. One that was set to None and computed again (a new .grad object) means the loop
    # went through zero_grad() and backward() since the previous check, and a training loop
    # calls step() in between. Gradients accumulated in place prove nothing.
    current = context.parameter
    return current.get("gradNew") is True and _changed(previous.get("gradChecksum"), current.get("gradChecksum"))


def _optimizer_steps_between(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[tuple[int, int], bool | None]:
    """Return, per (optimizer, group), whether its state shows a step since the previous check.

    None when the state cannot tell: SGD without momentum keeps none, and an optimizer that was
    not in the previous check has nothing to compare with.
    """
    if previous is None:
        return {}
    before = {
        (opt["index"], group["index"]): (opt["type"], group)
        for opt in previous.get("optimizers") or []
        for group in opt["groups"]
    }
    result: dict[tuple[int, int], bool | None] = {}
    for opt in current.get("optimizers") or []:
        for group in opt["groups"]:
            key = (opt["index"], group["index"])
            old = before.get(key)
            if old is None or old[0] != opt["type"]:
                result[key] = None
                continue
            old_group = old[1]
            if group.get("step") is not None and old_group.get("step") is not None:
                result[key] = group["step"] > old_group["step"]
            elif group.get("stateNorm") is not None and old_group.get("stateNorm") is not None:
                result[key] = group["stateNorm"] != old_group["stateNorm"]
            elif group.get("stateNorm") is not None:
                result[key] = True
            else:
                # No state at either check: the optimizer never stepped, or its step() skipped
                # these parameters because their .grad was None (zero_grad() before step()).
                result[key] = None
    return result


def _stepped_without_gradient(context: _ParameterContext) -> bool:
    """Return whether the parameter stayed the same over optimizer steps that ran with no gradient.

    Only for a snapshot taken right after a step of optimizer 0 (`gradsight.watch`): a training
    loop has its gradients in place right after step(), unless it clears them before.
    """
    previous = context.previous
    if not context.checked_after_step or not context.optimizer_steps or previous is None or context.group is None:
        return False
    if context.group[0]["index"] != 0 or not _number(context.group[1].get("lr")):
        return False
    return previous.get("hasGrad") is False and not _changed(previous.get("checksum"), context.parameter.get("checksum"))


def _expected_update_ratio(parameter: dict[str, Any], group: tuple[dict[str, Any], dict[str, Any]] | None) -> float | None:
    """Estimate |Δw| / |w| of one optimizer step for a parameter."""
    step = _expected_step(parameter, group)
    weight_norm = _number(parameter.get("weightNorm"))
    if step is None or not weight_norm:
        return None
    return step / weight_norm


def _expected_step(parameter: dict[str, Any], group: tuple[dict[str, Any], dict[str, Any]] | None) -> float | None:
    """Estimate the norm |Δw| of one optimizer step for a parameter."""
    if group is None:
        return None
    optimizer, values = group
    lr = _number(values.get("lr"))
    grad_norm = _number(parameter.get("gradNorm"))
    if lr is None or grad_norm is None:
        return None
    if optimizer["type"] in ADAM_FAMILY:
        # Adam's step is about lr per element, whatever the gradient's scale.
        return lr * math.sqrt(parameter.get("numel") or 1) if grad_norm else 0.0
    momentum = _number(values.get("momentum")) or 0.0
    effective_lr = lr / (1 - momentum) if 0 <= momentum < 1 else lr
    return effective_lr * grad_norm


def _summarize_layer(layer: LayerReport, groups: dict, layer_info: dict[str, Any]) -> None:
    """Set the layer's norms and expected update ratio from its trainable parameters with gradients."""
    measured = [p for p in layer.parameters if p["gradNorm"] is not None and not p["exemptFromRatios"]]
    weights = [p for p in layer.parameters if p["weightNorm"] is not None]
    if weights:
        layer.weight_norm = _combine(p["weightNorm"] for p in weights)
    if measured:
        layer.grad_norm = _combine(p["gradNorm"] for p in measured)
        numel = sum(p["numel"] for p in measured) or 1
        layer.mean_abs_grad = layer.grad_norm / math.sqrt(numel) if layer.grad_norm is not None else None
        maxima = [p["maxAbsGrad"] for p in measured if isinstance(p["maxAbsGrad"], (int, float))]
        layer.max_abs_grad = max(maxima) if maxima else None

    if layer.status == "frozen" and any(p["requiresGrad"] for p in layer.parameters):
        # GS920 is for a layer whose parameters are all frozen; a partly frozen one is fine.
        layer.status, layer.reason = "ok", ""

    learning_rates = [p["lr"] for p in layer.parameters if p["lr"] is not None]
    layer.lr = max(learning_rates) if learning_rates else None
    # Per-parameter ratios mislead for a near-zero bias, so combine the expected steps first.
    steps = [p["expectedStep"] for p in measured if p["expectedStep"] is not None]
    if steps and layer.weight_norm:
        layer.update_ratio = math.sqrt(sum(step * step for step in steps)) / layer.weight_norm


def _classify_ratios(layers: list[LayerReport], layer_types: dict) -> None:
    """Mark layers whose gradients are tiny or huge for their weights, or whose update is tiny."""
    ratios = {}
    for layer in layers:
        if layer.status != "ok" or layer.grad_norm is None or not layer.weight_norm:
            continue
        ratios[layer.name] = layer.grad_norm / layer.weight_norm
    median = statistics.median(ratios.values()) if ratios else None

    for layer in layers:
        ratio = ratios.get(layer.name)
        if ratio is None:
            continue
        if ratio > EXPLODING_RATIO and _weight_rms(layer) >= RATIO_MIN_WEIGHT_RMS:
            layer.raise_status("exploding", (
                f"the gradient norm {_format(layer.grad_norm)} is {_format(ratio)} times the weight "
                f"norm {_format(layer.weight_norm)}"
            ))
        elif ratio < VANISHING_RATIO and median is not None and ratio < VANISHING_RELATIVE * median:
            layer.raise_status("vanishing", (
                f"the gradient norm {_format(layer.grad_norm)} is {_format(ratio)} of the weight norm, "
                f"while the median layer has {_format(median)}"
            ))
        elif layer.update_ratio is not None and layer.update_ratio < TINY_UPDATE_RATIO:
            layer.raise_status("tiny-update", (
                f"one optimizer step changes the weights by about {_format(layer.update_ratio)} of their "
                f"norm (learning rate {_format(layer.lr)}); healthy training is near 1e-3"
            ))


def _weight_rms(layer: LayerReport) -> float:
    numel = sum(p["numel"] for p in layer.parameters if p["weightNorm"] is not None) or 1
    return (layer.weight_norm or 0.0) / math.sqrt(numel)


def _classify_growth(layers: list[LayerReport], previous: dict[str, Any] | None) -> None:
    if previous is None:
        return
    before: dict[str, list[float]] = {}
    for p in previous.get("parameters", []):
        value = _number(p.get("gradNorm"))
        if value is not None:
            before.setdefault(p["layer"], []).append(value)
    for layer in layers:
        old_values = before.get(layer.name)
        if not old_values or layer.grad_norm is None or not layer.weight_norm:
            continue
        old = math.sqrt(sum(value * value for value in old_values))
        if old > 0 and layer.grad_norm > EXPLODING_GROWTH * old and layer.grad_norm > layer.weight_norm:
            layer.raise_status("exploding", (
                f"the gradient norm grew from {_format(old)} to {_format(layer.grad_norm)} since the "
                "previous check"
            ))


def _layer_finding(layer: LayerReport) -> RuntimeFinding | None:
    if layer.status == "ok":
        return None
    code = CODES[layer.status]
    has_grad = any(p["hasGrad"] for p in layer.parameters)
    if not layer.registered and layer.status == "not-in-optimizer" and has_grad:
        code = UNREGISTERED_LEAF
    return RuntimeFinding(code, SEVERITIES[layer.status], _message(layer, code), layer.name)


def _message(layer: LayerReport, code: str) -> str:
    advice = {
        "GS901": "add it to the optimizer, e.g. build the optimizer from model.parameters() after creating every layer",
        "GS914": "it is kept in a plain list, dict or attribute, so model.parameters() misses it and the "
        "optimizer never updates it; use nn.ModuleList, nn.ModuleDict or nn.Parameter",
        "GS902": "check that the layer's output reaches the loss without .detach(), .data, torch.no_grad() or "
        "a non-differentiable operation",
        "GS903": "no signal reaches the layer: look for dead ReLUs, a zero multiplier or a masked output",
        "GS904": "the layer learns much slower than the others; consider normalization layers, residual "
        "connections or a different initialization",
        "GS905": "lower the learning rate or clip the gradient norm (torch.nn.utils.clip_grad_norm_)",
        "GS906": "training has diverged; lower the learning rate, check the inputs and the loss for NaN, or "
        "use gradient clipping",
        "GS907": "set a learning rate above 0 for this parameter group, or check the scheduler",
        "GS908": "look for zero_grad() between backward() and step(), a gradient set to None or replaced "
        "before the step, or an optimizer built over other tensors",
        "GS909": "raise the learning rate; typical values are 1e-4 to 1e-1",
        "GS910": "a stale gradient, momentum or weight decay in the optimizer still moves it; set its .grad "
        "to None or leave it out of the optimizer",
        "GS920": "this is expected for a frozen backbone or a target network; otherwise set requires_grad=True",
    }[code]
    return f"{layer.display_name}: {layer.reason}; {advice}."


def _parameter_json(p: dict[str, Any], status: str, context: _ParameterContext) -> dict[str, Any]:
    group = context.group
    lr = _number(group[1].get("lr")) if group is not None else None
    exempt = context.before_normalization or not p.get("requiresGrad")
    return {
        "name": p["name"],
        "shape": p.get("shape"),
        "dtype": p.get("dtype"),
        "device": p.get("device"),
        "numel": p.get("numel") or 0,
        "requiresGrad": p.get("requiresGrad"),
        "hasGrad": p.get("hasGrad"),
        "gradNorm": _number(p.get("gradNorm")) if p.get("hasGrad") else None,
        "maxAbsGrad": _number(p.get("gradMaxAbs")),
        "weightNorm": _number(p.get("weightNorm")),
        "lr": lr,
        "updateRatio": _expected_update_ratio(p, group) if p.get("hasGrad") else None,
        "expectedStep": _expected_step(p, group) if p.get("hasGrad") else None,
        "status": status,
        "group": p.get("group"),
        "local": p.get("local", False),
        "registered": p.get("registered", True),
        "exemptFromRatios": exempt,
    }


def _is_bias_before_normalization(parameter: dict[str, Any], layer_info: dict[str, Any]) -> bool:
    """Return whether the parameter is a bias directly followed by a normalization layer.

    Such a bias has a near-zero gradient by design, because the normalization removes any
    constant shift of its input.
    """
    return parameter["name"].endswith("bias") and layer_info.get("next") in NORMALIZATION_TYPES


def _non_finite_reason(p: dict[str, Any]) -> str:
    parts = []
    for kind, label in (("weight", "weight"), ("grad", "gradient")):
        nan, inf = _count(p, kind + "Nan"), _count(p, kind + "Inf")
        if nan or inf:
            parts.append(f"its {label} has {nan} NaN and {inf} Inf values")
    return f"{p['name']}: " + " and ".join(parts)


def _combine(values) -> float | None:
    numbers = [_number(value) for value in values]
    if any(number is None for number in numbers):
        return None
    return math.sqrt(sum(number * number for number in numbers))


def _count(p: dict[str, Any], key: str) -> int:
    return int(p.get(key) or 0)


def _number(value: Any) -> float | None:
    """Return a float for a JSON number or the probe's "nan"/"inf" strings, None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _changed(before: Any, after: Any) -> bool:
    return before is not None and after is not None and before != after


def _status_of(code: str) -> str:
    for status, status_code in CODES.items():
        if status_code == code:
            return status
    return "not-in-optimizer" if code == UNREGISTERED_LEAF else "ok"


def _format(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}"
