"""Runtime findings that need many training steps, not one snapshot: GS911, GS912 and GS913.

- GS911 dead-units: an activation layer (ReLU and others whose output 0 has gradient 0) whose
  units output 0 for every input seen, for (nearly) all of its units.
- GS912 skipped-steps: a `GradScaler` that skips most optimizer steps because it finds inf or
  NaN in the gradients.
- GS913 always-clipped: `clip_grad_norm_` cutting the gradient norm by a large factor on
  (nearly) every step.

The trackers here record on the tensors' device, with no device sync per call; the findings
read them once, when the report is built. `gradsight run` feeds all three from its hooks, and
`gradsight.watch` feeds the dead-unit tracker from forward hooks on the model's activations.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from gradsight.runtime.check import finding_entry

# GS911 dead-units.

# Activation modules whose output is exactly 0, with gradient 0, over a whole range of inputs
# (ReLU and ReLU6 for x <= 0, Hardsigmoid and Hardswish for x <= -3). LeakyReLU, GELU, SiLU and
# ELU keep a gradient for negative inputs, so an output of 0 means nothing there. Functional
# calls such as `F.relu(x)` or `torch.relu(x)` run no module, so no module hook is called for them.
DEAD_UNIT_ACTIVATIONS = ("ReLU", "ReLU6", "Hardsigmoid", "Hardswish")

# Of those, the ones with negative outputs too (Hardswish, for -3 < x < 0). For the others the
# max over the batch is 0 exactly when every output is 0, which costs one reduction.
SIGNED_ACTIVATIONS = ("Hardswish",)

# A layer is reported when at least this fraction of its units output 0 for every input seen.
# Some dead units are normal in a ReLU network; only a layer that is (nearly) all dead is a bug.
DEAD_UNITS_FRACTION = 0.9

# Inputs (rows of the batch dimension) the layer must have seen first. A healthy unit outputs 0
# for about half of its inputs, so it looks dead on 8 inputs with a probability near 0.5**8.
DEAD_UNITS_MIN_INPUTS = 8

# GS912 skipped-steps.

# Reported when more than this fraction of the scaler's steps were skipped, over at least
# SKIPPED_STEPS_MIN_STEPS steps. The scaler halves its scale on every overflow until the
# gradients fit, which takes a few steps at the start of AMP training. So the skipped steps
# before the first step that ran are left out, unless no step ran at all.
SKIPPED_STEPS_FRACTION = 0.5
SKIPPED_STEPS_MIN_STEPS = 5

# `gradsight run` stops the script after this many skipped steps (or `--steps`, if larger),
# because skipped steps do not count as optimizer steps. 16 halvings take the default scale
# 2**16 down to 1, so a scaler that still skips then has gradients that are not finite at all.
SKIPPED_STEPS_STOP = 16

# The default `init_scale` of torch.amp.GradScaler.
DEFAULT_INIT_SCALE = 2.0**16

# GS913 always-clipped.

# Reported when the total norm was above CLIP_FACTOR * max_norm (the gradient was cut to a
# tenth or less) on at least CLIP_FRACTION of at least CLIP_MIN_CALLS calls with a finite norm.
# Clipping now and then, or by a small factor, is what clipping is for.
CLIP_FACTOR = 10.0
CLIP_FRACTION = 0.9
CLIP_MIN_CALLS = 5


@dataclass
class CallSite:
    """The place in the user's code that called a wrapped torch function."""

    source: str
    line: int


def call_site(frame: Any) -> CallSite | None:
    """Return the first frame from `frame` outwards that is not in torch, gradsight or site-packages.

    So a call that goes through a library (Accelerate, Lightning) is placed at the user's line.
    """
    import torch

    import gradsight

    library_dirs = tuple(os.path.dirname(package.__file__) + os.sep for package in (torch, gradsight))
    while frame is not None:
        path = frame.f_code.co_filename
        in_library = path.startswith(library_dirs) or f"{os.sep}site-packages{os.sep}" in path or f"{os.sep}dist-packages{os.sep}" in path
        if not in_library and not path.startswith("<"):
            return CallSite(os.path.abspath(path), frame.f_lineno)
        frame = frame.f_back
    return None


# GS911: dead units.


def activation_types() -> tuple[type, ...]:
    """Return the activation module classes whose dead units are tracked."""
    import torch

    return tuple(getattr(torch.nn, name) for name in DEAD_UNIT_ACTIVATIONS)


@dataclass
class DeadUnits:
    """How many of an activation's output units were 0 for every input seen, out of how many."""

    type_name: str
    dead: int
    units: int
    inputs: int

    @property
    def reported(self) -> bool:
        return self.inputs >= DEAD_UNITS_MIN_INPUTS and self.units > 0 and self.dead >= DEAD_UNITS_FRACTION * self.units


@dataclass
class _ActivationRecord:
    type_name: str
    # One boolean per unit, on the output's device: True where some input gave a non-zero output.
    alive: Any = None
    inputs: int = 0
    untracked: bool = False


class DeadUnitTracker:
    """Count, per activation module, the output units that were 0 for every input seen.

    A unit is one position of the output without its batch dimension (dimension 0): a feature
    of a linear layer's output, one channel at one pixel of a convolution's output. When a later
    call has another size in some dimension (images or sequences of other sizes, or one module
    used at several places), those dimensions are folded, so that a unit is then a whole channel
    or feature. `observe` runs only device operations; `read` syncs once per device.
    """

    def __init__(self) -> None:
        self.records: dict[Any, _ActivationRecord] = {}

    def observe(self, key: Any, module: Any, output: Any) -> None:
        """Add one forward call of the activation `module`, stored under `key`."""
        import torch

        record = self.records.get(key)
        if record is None:
            record = self.records[key] = _ActivationRecord(type(module).__name__)
        if record.untracked or not _is_dense_tensor(torch, output) or output.dim() == 0:
            return
        batch = output.detach() if output.dim() > 1 else output.detach().unsqueeze(0)  # An unbatched call is one input.
        if batch.shape[0] == 0:
            return
        try:
            record.alive = _merge_alive(record.alive, batch, record.type_name in SIGNED_ACTIVATIONS)
        except (RuntimeError, _DimensionsChanged):
            # NOTE: outputs whose number of dimensions changes between calls (or whose dtype
            # amax rejects) are not tracked at all, rather than guessed at.
            record.untracked, record.alive = True, None
            return
        record.inputs += batch.shape[0]

    def read(self) -> dict[Any, DeadUnits]:
        """Return the dead-unit counts of every tracked activation, reading each device once."""
        import torch

        by_device: dict[Any, list[tuple[Any, _ActivationRecord]]] = {}
        for key, record in self.records.items():
            if record.alive is not None:
                by_device.setdefault(record.alive.device, []).append((key, record))
        result = {}
        for items in by_device.values():
            dead_counts = torch.stack([(~record.alive).sum() for _, record in items]).tolist()
            for (key, record), dead in zip(items, dead_counts):
                result[key] = DeadUnits(record.type_name, int(dead), record.alive.numel(), record.inputs)
        return result

    def clear(self) -> None:
        self.records.clear()


class _DimensionsChanged(Exception):
    pass


def _is_dense_tensor(torch: Any, value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type != "meta"


def _merge_alive(alive: Any, batch: Any, signed: bool) -> Any:
    """Return `alive` OR the units of `batch` that are non-zero for some input.

    Dimensions whose size differs from the stored one are folded (reduced) on both sides.
    `amax` is used rather than `(batch != 0).any()`, which took 12 times as long on the CPU
    (0.98 ms against 0.08 ms for a 32x16x32x32 float32 batch, one thread, torch 2.13). The
    result is a new tensor, so a first call under `torch.inference_mode()` does not leave an
    inference tensor that a later call would have to change in place.
    """
    if alive is not None and alive.dim() != batch.dim() - 1:
        raise _DimensionsChanged
    folded = ()
    if alive is not None:
        folded = tuple(dim for dim, (old, new) in enumerate(zip(alive.shape, batch.shape[1:])) if old != new)
    dims = (0, *(dim + 1 for dim in folded))
    batch_alive = batch.amax(dim=dims, keepdim=True) != 0
    if signed:
        batch_alive = batch_alive | (batch.amin(dim=dims, keepdim=True) != 0)
    batch_alive = batch_alive.squeeze(0)
    if alive is None:
        return batch_alive
    if folded:
        alive = alive.any(dim=folded, keepdim=True)
    return alive.to(batch_alive.device) | batch_alive


def activation_modules(model: Any) -> list[tuple[str, Any]]:
    """Return the named submodules of `model` whose dead units are tracked."""
    types = activation_types()
    return [(name, module) for name, module in model.named_modules() if isinstance(module, types)]


def dead_unit_findings(model: Any, check: Any, results: list[tuple[str, DeadUnits]]) -> list[dict[str, Any]]:
    """Return a GS911 finding for each reported activation of `model`, named as in `model`.

    `check` is the model's `ModelCheck`, which places each activation at its definition.
    """
    reported = [(name, dead) for name, dead in results if dead.reported]
    if not reported:
        return []
    spans = check.locate([name for name, _ in reported])
    return [
        finding_entry("GS911", "warning", dead_unit_message(name, dead, _preceding_layer(model, name)), name, spans.get(name))
        for name, dead in reported
    ]


def dead_unit_message(name: str, dead: DeadUnits, preceding: str | None) -> str:
    share = f"{dead.dead} of {dead.units} units" if dead.units > 1 else "its output"
    source = f"the layer before it, {preceding}," if preceding else "the layer that feeds it,"
    return (
        f"{name} ({dead.type_name}): {share} output 0 for all {dead.inputs} inputs seen, so no gradient flows "
        f"back through them and the weights that feed them stop learning; the input of the activation is "
        f"below its threshold for every sample: check the bias and initialization of {source} lower the "
        "learning rate, or normalize before the activation; LeakyReLU or GELU keep a gradient for negative inputs."
    )


def _preceding_layer(model: Any, name: str) -> str | None:
    """Return "name (Type)" of the sibling just before `name` in an nn.Sequential, if it has parameters."""
    import torch

    parent_name, _, index = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        return None
    if not isinstance(parent, torch.nn.Sequential) or not index.isdigit() or int(index) == 0:
        return None
    previous = parent[int(index) - 1]
    if not any(True for _ in previous.parameters()):
        return None
    previous_name = f"{parent_name}.{int(index) - 1}" if parent_name else str(int(index) - 1)
    return f"{previous_name} ({type(previous).__name__})"


# GS912: skipped steps.


@dataclass
class _ScalerRecord:
    scaler: Any
    optimizer: Any
    site: CallSite | None
    first_scale: Any
    # Per `scaler.step` call: whether it skipped the optimizer step (a bool, or a 0-dim bool
    # tensor for optimizers that apply the scaler's verdict inside their own step).
    skipped: list[Any] = field(default_factory=list)


class ScalerHistory:
    """The outcome of each `GradScaler.step(optimizer)` call (skipped or not), per scaler and optimizer."""

    def __init__(self) -> None:
        self.records: dict[tuple[int, int], _ScalerRecord] = {}

    def record(self, scaler: Any, optimizer: Any, stepped: bool, site: CallSite | None) -> None:
        """Add one `scaler.step(optimizer)` call; `stepped` is whether `optimizer.step()` ran."""
        key = (id(scaler), id(optimizer))
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = _ScalerRecord(scaler, optimizer, site, _scale_tensor(scaler))
        if stepped and getattr(optimizer, "_step_supports_amp_scaling", False):
            # A fused optimizer gets the scaler's `found_inf` and skips the update itself.
            found_inf = _found_inf(scaler, optimizer)
            record.skipped.append(found_inf if found_inf is not None else False)
        else:
            record.skipped.append(not stepped)

    def findings(self, optimizer_name: Any) -> list[dict[str, Any]]:
        """Return a GS912 finding for each scaler and optimizer that skipped most steps.

        `optimizer_name(optimizer)` returns the name the script gave the optimizer.
        """
        findings = []
        for record in self.records.values():
            skipped = _resolve_flags(record.skipped)
            first_ran = next((index for index, flag in enumerate(skipped) if not flag), None)
            calibration = first_ran or 0
            considered = skipped[calibration:]
            count = sum(considered)
            if len(considered) < SKIPPED_STEPS_MIN_STEPS or count <= SKIPPED_STEPS_FRACTION * len(considered):
                continue
            message = _skipped_steps_message(record, optimizer_name(record.optimizer), count, len(considered), calibration)
            findings.append(finding_entry("GS912", "warning", message, optimizer_name(record.optimizer), record.site))
        return findings


def _scale_tensor(scaler: Any) -> Any:
    """Return a copy of the scaler's current scale tensor (no sync), or None before its first `scale()`."""
    scale = getattr(scaler, "_scale", None)
    return scale.detach().clone() if scale is not None else None


def _found_inf(scaler: Any, optimizer: Any) -> Any:
    """Return a 0-dim bool tensor: whether the scaler found inf or NaN in this step's gradients."""
    states = getattr(scaler, "_per_optimizer_states", None)
    state = states.get(id(optimizer)) if isinstance(states, dict) else None
    found = list((state or {}).get("found_inf_per_device", {}).values())
    if not found:
        return None
    total = found[0]
    for value in found[1:]:
        total = total + value.to(total.device)
    return total > 0


def _resolve_flags(flags: list[Any]) -> list[bool]:
    """Turn the recorded flags into bools, with one device read for all tensor flags."""
    import torch

    tensors = [flag for flag in flags if isinstance(flag, torch.Tensor)]
    if not tensors:
        return [bool(flag) for flag in flags]
    values = iter(torch.stack([flag.to(tensors[0].device) for flag in tensors]).tolist())
    return [bool(next(values)) if isinstance(flag, torch.Tensor) else bool(flag) for flag in flags]


def _skipped_steps_message(record: _ScalerRecord, name: str, count: int, steps: int, calibration: int) -> str:
    first = float(record.first_scale) if record.first_scale is not None else None
    last = record.scaler.get_scale()
    skipped_text = f"{count} of {steps} optimizer steps"
    if calibration:
        skipped_text += f" after the first {calibration} (skipped while the scale calibrated)"
    change = f"its scale went from {first:g} to {last:g}" if first is not None else f"its scale is now {last:g}"
    if not math.isfinite(last) or last > DEFAULT_INIT_SCALE:
        advice = (
            f"the scale is still above the default init_scale {DEFAULT_INIT_SCALE:g}: lower init_scale "
            "(an init_scale of inf never comes down)"
        )
    else:
        advice = (
            "a smaller scale did not help, so the gradients are not finite in themselves: look for log(0), sqrt(0) "
            "or a division by zero in the loss or the model, or a float16 overflow in the forward pass, and run "
            "one step without autocast and the scaler to see the loss and gradients"
        )
    return (
        f"{name} ({type(record.optimizer).__name__}): the GradScaler skipped {skipped_text} because the gradients contained "
        f"inf or NaN, so the weights did not change on those steps; {change}; {advice}."
    )


# GS913: always clipped.


@dataclass
class _ClipRecord:
    site: CallSite | None
    max_norm: Any
    calls: int = 0
    # Device tensors: calls with a finite total norm, of those the calls above CLIP_FACTOR *
    # max_norm, and the smallest and largest finite total norm.
    finite: Any = None
    heavy: Any = None
    low: Any = None
    high: Any = None


class ClipHistory:
    """The total gradient norms that `clip_grad_norm_` returned, against its `max_norm`, per call site."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int] | None, _ClipRecord] = {}

    def record(self, total_norm: Any, max_norm: Any, site: CallSite | None) -> None:
        """Add one call that returned `total_norm` (a 0-dim tensor) for `max_norm`; no device sync."""
        import torch

        if not isinstance(total_norm, torch.Tensor) or total_norm.numel() != 1:
            return
        key = (site.source, site.line) if site is not None else None
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = _ClipRecord(site, max_norm)
        norm = total_norm.detach().reshape(()).float()
        limit = max_norm.detach().to(norm.device).float() if isinstance(max_norm, torch.Tensor) else float(max_norm)
        finite = torch.isfinite(norm)
        heavy = finite & (norm > CLIP_FACTOR * limit)
        low = torch.where(finite, norm, math.inf)
        high = torch.where(finite, norm, -math.inf)
        if record.finite is None:
            record.finite, record.heavy, record.low, record.high = finite.long(), heavy.long(), low, high
        else:
            record.finite = record.finite + finite.long().to(record.finite.device)
            record.heavy = record.heavy + heavy.long().to(record.heavy.device)
            record.low = torch.minimum(record.low, low.to(record.low.device))
            record.high = torch.maximum(record.high, high.to(record.high.device))
        record.max_norm = max_norm
        record.calls += 1

    def findings(self, scaler_used: bool) -> list[dict[str, Any]]:
        """Return a GS913 finding for each call site that clipped (nearly) every step by a large factor."""
        import torch

        findings = []
        for record in self.records.values():
            if record.finite is None:
                continue
            finite, heavy, low, high = torch.stack([record.finite.double(), record.heavy.double(), record.low.double(), record.high.double()]).tolist()
            if finite < CLIP_MIN_CALLS or heavy < CLIP_FRACTION * finite:
                continue
            max_norm = float(record.max_norm)
            message = _always_clipped_message(max_norm, int(heavy), int(finite), low, high, scaler_used)
            findings.append(finding_entry("GS913", "warning", message, "", record.site))
        return findings


def _always_clipped_message(max_norm: float, heavy: int, finite: int, low: float, high: float, scaler_used: bool) -> str:
    message = (
        f"clip_grad_norm_(max_norm={_format(max_norm)}) cut the gradient to a tenth or less on {heavy} of {finite} "
        f"steps: the total norm was {_format(low)} to {_format(high)}, at least {_format(low / max_norm)} times "
        "max_norm, so every step has the same length whatever the gradient, as if the learning rate were much "
        f"smaller; set max_norm near the usual gradient norm (here about {_format(low)}) so that only outliers "
        "are clipped"
    )
    if scaler_used:
        message += ", and call scaler.unscale_(optimizer) before clipping, or the norm is the scaled one"
    return message + "."


def _format(value: float) -> str:
    return f"{value:.3g}"
