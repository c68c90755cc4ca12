"""The runtime finding codes (GS9xx): name, default severity and meaning, for `gradsight rule`.

The classifier takes each layer status's code and severity from this table. The history and
distributed modules set theirs in their own code, and `tests/test_run_command.py` checks that
they agree with it. There is no torch import, so `gradsight rule` runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT_THRESHOLDS = "documented in docs/runtime-protocol.md, section Findings, and set by constants in gradsight/runtime/classify.py"
HISTORY_THRESHOLDS = "documented in docs/runtime-protocol.md, section Findings, and set by constants in gradsight/runtime/history.py"
EVERYWHERE = "`gradsight run`, `gradsight.inspect`, `gradsight.watch` and Check Gradients in the VS Code debugger"


@dataclass(frozen=True)
class RuntimeRule:
    """One runtime finding code; `name` is also the layer status that the code reports, where it has one."""

    code: str
    name: str
    severity: str
    meaning: str
    found_by: str
    thresholds: str | None = None


RUNTIME_RULES: dict[str, RuntimeRule] = {rule.code: rule for rule in (
    RuntimeRule("GS901", "not-in-optimizer", "error",
                "A trainable parameter (of the model, or reached by the loss) is in no optimizer parameter group, "
                "so no step ever changes it.", EVERYWHERE),
    RuntimeRule("GS902", "no-grad", "warning",
                "A trainable parameter in an optimizer has `grad is None` after backward(), while other parameters "
                "have gradients: the loss does not reach it.", EVERYWHERE),
    RuntimeRule("GS903", "zero-grad", "warning", "The gradient of a parameter is exactly zero everywhere.", EVERYWHERE),
    RuntimeRule("GS904", "vanishing", "warning",
                "The gradient norm is tiny relative to the weight norm and to the other layers. A bias right before "
                "a normalization layer is left out, because its gradient is near zero by design.",
                EVERYWHERE, SNAPSHOT_THRESHOLDS),
    RuntimeRule("GS905", "exploding", "warning",
                "The gradient norm is huge relative to the weight norm, or grew fast since the previous check.",
                EVERYWHERE, SNAPSHOT_THRESHOLDS),
    RuntimeRule("GS906", "non-finite", "error", "A gradient or a weight contains NaN or Inf.", EVERYWHERE),
    RuntimeRule("GS907", "zero-lr", "error", "The parameter's group has learning rate 0.", EVERYWHERE),
    RuntimeRule("GS908", "unchanged", "error",
                "Across optimizer steps the value did not change although its gradient was non-zero. Needs two "
                "checks with an optimizer step in between.", EVERYWHERE, SNAPSHOT_THRESHOLDS),
    RuntimeRule("GS909", "tiny-update", "warning",
                "One optimizer step changes the weights by less than 1e-7 of their norm (the expected "
                "update-to-weight ratio); healthy training is near 1e-3.", EVERYWHERE, SNAPSHOT_THRESHOLDS),
    RuntimeRule("GS910", "frozen-but-changing", "warning",
                "A parameter has requires_grad=False but its value changed between two checks (stale gradients "
                "with momentum or weight decay).", EVERYWHERE),
    RuntimeRule("GS911", "dead-units", "warning",
                "An activation layer (ReLU, ReLU6, Hardsigmoid, Hardswish) outputs zero for (nearly) every input, "
                "so the layers before it get no gradient through those units.",
                "`gradsight run` and `gradsight.watch`", HISTORY_THRESHOLDS),
    RuntimeRule("GS912", "skipped-steps", "warning",
                "A GradScaler skips most optimizer steps because it finds inf or NaN in the scaled gradients.",
                "`gradsight run`", HISTORY_THRESHOLDS),
    RuntimeRule("GS913", "always-clipped", "warning",
                "Gradient clipping (clip_grad_norm_) cuts the norm by a large factor on (nearly) every step.",
                "`gradsight run`", HISTORY_THRESHOLDS),
    RuntimeRule("GS914", "unregistered-leaf", "error",
                "A leaf tensor that requires grad receives gradients but is not a registered parameter of the model "
                "and is in no optimizer, so it never changes.", EVERYWHERE),
    RuntimeRule("GS915", "replicas-diverged", "error",
                "Under torch.distributed, a parameter's values differ between data-parallel replicas after a step.",
                "`gradsight run`, `gradsight.inspect` and `gradsight.watch` under torch.distributed"),
    RuntimeRule("GS920", "frozen", "information", "All parameters of the layer have requires_grad=False.", EVERYWHERE),
)}


def runtime_rule_text(rule: RuntimeRule) -> str:
    """Return the Markdown page that `gradsight rule` prints for a runtime code."""
    lines = [
        f"# {rule.name} ({rule.code})",
        "",
        f"Runtime finding on a live model, reported by {rule.found_by}; `gradsight check` does not report it.",
        "",
        f"Default severity: {rule.severity}.",
        "",
        rule.meaning,
    ]
    if rule.thresholds:
        lines.extend(["", f"Thresholds: {rule.thresholds}."])
    return "\n".join(lines) + "\n"
