"""Build the runtime report of one snapshot: classified layers, findings and source locations.

Plain Python with no LSP in it; `gradsight.lsp.runtime_requests` turns the spans into LSP ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradsight.runtime.classify import classify
from gradsight.runtime.locate import SourceSpan, locator_for


@dataclass
class RuntimeReport:
    """The JSON-ready report, with a `SourceSpan` (or None) where a location belongs."""

    model: dict[str, Any]
    layers: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    notes: list[str]


def build_report(
    snapshot: dict[str, Any],
    previous: dict[str, Any] | None,
    sources: dict[str, str],
    check_number: int = 1,
    model_expression: str | None = None,
    optimizer_steps: int | None = None,
    checked_after_step: bool = False,
    front_end: str = "debugger",
) -> RuntimeReport:
    """Classify `snapshot` against `previous` and locate its layers in `sources` (key: text).

    `optimizer_steps`, `checked_after_step` and `front_end` are passed on to `classify`.
    """
    result = classify(snapshot, previous, optimizer_steps, checked_after_step, front_end)
    model = dict(snapshot.get("model") or {})
    names = list(model.get("names") or [])
    if model_expression:
        names.insert(0, model_expression)

    locator = locator_for(sources)
    spans = locator.locate(model.get("type", ""), names, [layer.name for layer in result.layers])
    for layer in result.layers:
        if not layer.name:
            # The root module's own parameters: where `self.<name> = nn.Parameter(...)` is, with
            # the parameter that sets the layer's status first.
            own = sorted(layer.parameters, key=lambda p: p["status"] != layer.status)
            spans[""] = locator.locate_own_parameters(model.get("type", ""), names, [p["name"] for p in own])

    layers = []
    for layer in result.layers:
        entry = layer.to_json()
        entry["location"] = spans.get(layer.name)
        layers.append(entry)

    findings = []
    for finding in result.findings:
        entry = finding.to_json()
        entry["location"] = spans.get(finding.layer)
        findings.append(entry)

    summary = {
        "type": model.get("type"),
        "parameterCount": model.get("parameterCount"),
        "trainableCount": model.get("trainableCount"),
        "tensorCount": model.get("tensorCount"),
        "devices": model.get("devices"),
        "training": model.get("training"),
        "optimizers": snapshot.get("optimizers") or [],
        "distributed": snapshot.get("distributed"),
        "check": check_number,
        "probeMs": snapshot.get("elapsedMs"),
    }
    return RuntimeReport(model=summary, layers=layers, findings=findings, notes=result.notes)


__all__ = ["RuntimeReport", "SourceSpan", "build_report"]
