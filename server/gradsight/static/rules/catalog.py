"""The rule catalog: code, name and default severity of every static rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradsight.findings import Severity

DOCS_DIR = Path(__file__).parent / "docs"


@dataclass(frozen=True)
class RuleInfo:
    code: str
    name: str
    severity: Severity
    summary: str
    # Information findings of this rule are shown as hints in the editor (faded, no squiggle).
    information_as_hint: bool = False


RULES: dict[str, RuleInfo] = {
    info.code: info
    for info in (
        RuleInfo("GS101", "lr-too-small", Severity.WARNING, "Learning rate so small that the weights barely change."),
        RuleInfo("GS102", "lr-too-large", Severity.WARNING, "Learning rate so large that training diverges."),
        RuleInfo("GS103", "params-consumed", Severity.ERROR, "The optimizer receives a parameter generator that was already used up, or an empty list."),
        RuleInfo("GS104", "stale-optimizer", Severity.WARNING, "The model is replaced by a new object after the optimizer was built over its parameters."),
        RuleInfo("GS105", "bad-hyperparameter", Severity.WARNING, "Momentum or a beta outside [0, 1), or a weight decay large enough to erase the weights."),
        RuleInfo("GS106", "lr-schedule-zero", Severity.WARNING, "A learning-rate scheduler sets the learning rate to exactly 0."),
        RuleInfo("GS107", "tiny-grad-clip", Severity.WARNING, "Gradient clipping with a maximum so small that updates almost vanish."),
        RuleInfo("GS108", "optimizer-in-loop", Severity.WARNING, "The optimizer is rebuilt inside the training loop, resetting its state each iteration."),
        RuleInfo("GS201", "frozen-parameters", Severity.INFORMATION, "Parameters frozen with requires_grad=False.", information_as_hint=True),
        RuleInfo("GS202", "no-grad-training", Severity.ERROR, "The forward pass of the backpropagated loss runs under no_grad."),
        RuleInfo("GS203", "detached-loss", Severity.ERROR, "The value passed to backward() is rebuilt from a number or a detached tensor."),
        RuleInfo("GS204", "non-differentiable-op", Severity.WARNING, "argmax, rounding, a comparison or an integer cast on the way into a loss term."),
        RuleInfo("GS205", "non-leaf-parameter", Severity.WARNING, "A tensor that requires grad is moved or cast, so the copy kept is not a leaf."),
        RuleInfo("GS206", "module-requires-grad-attribute", Severity.WARNING, "requires_grad set as a plain attribute of an nn.Module."),
        RuleInfo("GS207", "detach-in-forward", Severity.WARNING, "A layer reaches the output of forward only through .detach() or .data."),
        RuleInfo("GS208", "no-grad-in-forward", Severity.WARNING, "A layer reaches the output of forward only through a no_grad block."),
        RuleInfo("GS301", "unregistered-submodules", Severity.WARNING, "Modules kept in a plain list, tuple or dict attribute are not registered."),
        RuleInfo("GS302", "unregistered-tensor", Severity.WARNING, "A tensor attribute of a module that is neither a parameter nor a buffer."),
        RuleInfo("GS303", "layer-in-forward", Severity.WARNING, "A layer or parameter built inside forward gets new weights on every call."),
        RuleInfo("GS401", "grads-never-cleared", Severity.WARNING, "A training loop never clears gradients, so they add up across iterations."),
        RuleInfo("GS402", "missing-backward", Severity.ERROR, "A loop steps an optimizer but never calls backward()."),
        RuleInfo("GS403", "missing-step", Severity.ERROR, "A loop calls backward() but no optimizer ever steps."),
        RuleInfo("GS404", "grads-cleared-before-step", Severity.ERROR, "Gradients are cleared between backward() and step(), so every step applies zeros."),
        RuleInfo("GS405", "step-before-backward", Severity.WARNING, "The optimizer steps before backward() in each iteration."),
        RuleInfo("GS406", "scheduler-before-optimizer", Severity.WARNING, "scheduler.step() runs before optimizer.step() in the same iteration."),
        RuleInfo("GS407", "eval-mode-never-undone", Severity.INFORMATION, "model.eval() in the training loop is never followed by model.train()."),
        RuleInfo("GS501", "double-activation", Severity.WARNING, "A softmax or sigmoid output passed to a loss that applies it again."),
        RuleInfo("GS502", "normalize-stats", Severity.WARNING, "Normalize with a std that is zero, tiny, or on the wrong scale."),
        RuleInfo("GS503", "loss-tensor-accumulated", Severity.WARNING, "A loss tensor added to a running total keeps every iteration's graph alive."),
        RuleInfo("GS601", "scaler-misuse", Severity.ERROR, "The optimizer steps on GradScaler-scaled gradients, or scaler.update() is never called."),
        RuleInfo("GS602", "clip-before-unscale", Severity.WARNING, "Gradients are clipped while still multiplied by the GradScaler's loss scale."),
        RuleInfo("GS701", "snapshot-by-reference", Severity.WARNING, "A snapshot of the weights that is a reference, not a copy."),
    )
}


def rule_doc_path(code: str) -> Path:
    """Return the path of the Markdown page that documents rule `code`."""
    return DOCS_DIR / f"{code}.md"
