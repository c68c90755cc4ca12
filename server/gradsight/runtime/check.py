"""Check live models in this process: snapshot them with the probe, classify the layers, locate
them in the source and render the result as a table or as JSON.

`gradsight run` and the Python API (`gradsight.inspect`, `gradsight.watch`) both build their
reports here; the debugger front end goes through the language server instead.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradsight.runtime import probe
from gradsight.runtime.locate import SourceSpan, locator_for
from gradsight.runtime.report import RuntimeReport, build_report

SEVERITY_ORDER = {"error": 0, "warning": 1, "information": 2}
PROBLEM_SEVERITIES = ("error", "warning")


def take_snapshot(model: Any, optimizers: list[Any], namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Snapshot `model` with the probe; `namespace` is searched only for the model's names."""
    return probe.snapshot(model, list(optimizers), namespace or {})


@dataclass
class ModelCheck:
    """The classified layers of one model, from one snapshot or from two compared snapshots."""

    report: RuntimeReport
    names: list[str]
    steps: list[int]
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def locate(self, module_names: list[str]) -> dict[str, SourceSpan | None]:
        """Return where each named submodule is built, also one without parameters (an activation)."""
        locator = locator_for(self.sources)
        return locator.locate(self.report.model.get("type") or "", self.names, module_names)

    def to_dict(self) -> dict[str, Any]:
        layers = []
        for layer in self.report.layers:
            entry = {key: value for key, value in layer.items() if key != "location"}
            entry.update(_path_and_line(layer.get("location")))
            layers.append(entry)
        return {**self.report.model, "names": self.names, "steps": self.steps, "layers": layers}

    def findings(self) -> list[dict[str, Any]]:
        return [finding_entry(f["code"], f["severity"], f["message"], f["layer"], f.get("location")) for f in self.report.findings]


@dataclass
class CheckReport:
    """What a check found in one or more models: per-layer statuses, findings and notes.

    `str(report)` is a table for a person to read; `report.to_dict()` is the JSON form.
    """

    models: list[ModelCheck]
    extra_findings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run: dict[str, Any] | None = None

    @property
    def findings(self) -> list[dict[str, Any]]:
        """All findings, worst severity first, each with `code`, `severity`, `message`, `layer`, `path`, `line`."""
        found = [finding for model in self.models for finding in model.findings()] + list(self.extra_findings)
        return sorted(found, key=lambda finding: SEVERITY_ORDER.get(finding["severity"], 3))

    @property
    def has_problems(self) -> bool:
        """Whether any finding is a warning or an error."""
        return any(finding["severity"] in PROBLEM_SEVERITIES for finding in self.findings)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "findings": self.findings,
            "models": [model.to_dict() for model in self.models],
            "notes": self.all_notes(),
        }
        if self.run is not None:
            result["run"] = self.run
        return _json_safe(result)

    def all_notes(self) -> list[str]:
        notes = list(self.notes)
        for model in self.models:
            notes.extend(note for note in model.report.notes if note not in notes)
        return notes

    def __str__(self) -> str:
        return render_text(self)


def check_model(
    model: Any,
    snapshot: dict[str, Any],
    previous: dict[str, Any] | None,
    steps: list[int],
    extra_sources: list[str] | None = None,
    check_number: int = 1,
    checked_after_step: bool = False,
    front_end: str = "run",
) -> ModelCheck:
    """Classify `snapshot` against `previous` and locate the layers in the model's source files.

    `steps` contains the optimizer step count at each snapshot: two counts for a comparison, one
    or none otherwise. `checked_after_step` means that `snapshot` was taken right after a step of
    the first optimizer. `front_end` ("run" or "api") sets the wording of the notes.
    """
    paths = list(extra_sources or [])
    paths.extend(path for _, path in snapshot.get("classFiles") or [])
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        paths.append(main_file)
    sources = _read_sources(paths)
    names = list((snapshot.get("model") or {}).get("names") or [])
    optimizer_steps = steps[1] - steps[0] if previous is not None and len(steps) == 2 else None
    report = build_report(
        snapshot,
        previous,
        sources,
        check_number=check_number,
        optimizer_steps=optimizer_steps,
        checked_after_step=checked_after_step,
        front_end=front_end,
    )
    return ModelCheck(report=report, names=names, steps=steps, sources=sources)


def locate_findings(check: ModelCheck, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `findings` (dicts with `code`, `severity`, `message`, `layer`) in the output form,
    placed at their layer's definition in `check`."""
    locations = {layer["name"]: layer.get("location") for layer in check.report.layers}
    return [finding_entry(f["code"], f["severity"], f["message"], f["layer"], locations.get(f["layer"])) for f in findings]


def finding_entry(code: str, severity: str, message: str, layer: str, location: Any = None) -> dict[str, Any]:
    """Return a finding in the output form, with `path` and `line` where the location is known."""
    return {"code": code, "severity": severity, "message": message, "layer": layer, **_path_and_line(location)}


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinite floats by the strings "nan", "inf" and "-inf", as the probe does: JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _path_and_line(location: Any) -> dict[str, Any]:
    if location is None:
        return {"path": None, "line": None}
    return {"path": location.source, "line": location.line}


def _read_sources(paths: list[str]) -> dict[str, str]:
    sources = {}
    for path in paths:
        key = os.path.abspath(path)
        if key in sources or not key.endswith(".py"):
            continue
        try:
            sources[key] = Path(key).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return sources


# Text rendering.

COLUMNS = ("layer", "type", "status", "grad norm", "update ratio", "lr")


def render_text(report: CheckReport) -> str:
    """Render the report as one table per model, then the findings and notes."""
    lines: list[str] = []
    for model in report.models:
        lines.append(_model_heading(model))
        lines.extend(_layer_table(model))
        lines.append("")

    if not report.models:
        lines.append("No model was found: no module was called and no optimizer holds parameters.")
        lines.append("")

    for finding in report.findings:
        lines.append(_finding_line(finding))
    for note in report.all_notes():
        lines.append(f"note: {note}")
    raised = (report.run or {}).get("endedBy") == "exception"
    lines.append(_summary_line(report.findings, "No problems found before the exception" if raised else "No problems found"))
    return "\n".join(lines)


def _model_heading(model: ModelCheck) -> str:
    summary = model.report.model
    name = f"`{model.names[0]}` " if model.names else ""
    counts = f"{summary.get('parameterCount') or 0:,} parameters, {summary.get('trainableCount') or 0:,} trainable"
    optimizers = _optimizers_text(summary.get("optimizers") or [])
    if len(model.steps) == 2:
        when = f"compared after {model.steps[0]} and after {model.steps[1]} optimizer steps"
    elif model.steps:
        when = f"checked after {model.steps[0]} optimizer steps"
    elif (summary.get("check") or 1) > 1:
        when = "compared with the previous check of this model"
    else:
        when = "checked once"
    return f"Model {name}({summary.get('type')}, {counts}); {optimizers}; {when}"


def _optimizers_text(optimizers: list[dict[str, Any]]) -> str:
    """Describe the optimizers, each distinct description once, with a count where it stands for several.

    `instances` in an optimizer entry (set by `gradsight run`) counts the optimizers that a
    script built again and again over the same parameters.
    """
    counts: dict[str, int] = {}
    for optimizer in optimizers:
        text = _optimizer_text(optimizer)
        counts[text] = counts.get(text, 0) + int(optimizer.get("instances") or 1)
    if not counts:
        return "no optimizer"
    return ", ".join(text if count == 1 else f"{text} ({count:,} instances)" for text, count in counts.items())


def _optimizer_text(optimizer: dict[str, Any]) -> str:
    rates = sorted({group.get("lr") for group in optimizer.get("groups", []) if group.get("lr") is not None}, key=str)
    text = optimizer.get("type", "?")
    if rates:
        text += " lr " + "/".join(_number(rate) for rate in rates)
    return text


def _layer_table(model: ModelCheck) -> list[str]:
    rows = [COLUMNS]
    for layer in model.report.layers:
        rows.append((
            layer["name"] or "(own parameters)",
            layer["type"],
            layer["status"],
            _number(layer.get("gradNorm")),
            _number(layer.get("updateRatio")),
            _number(layer.get("lr")),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _finding_line(finding: dict[str, Any]) -> str:
    place = ""
    if finding.get("path"):
        place = f"{_display_path(finding['path'])}:{finding['line']}: "
    return f"{place}{finding['code']} {finding['severity']}: {finding['message']}"


def _summary_line(findings: list[dict[str, Any]], clean: str = "No problems found") -> str:
    """Count the findings by severity; `clean` begins the line when none is a problem."""
    counts = {severity: sum(1 for f in findings if f["severity"] == severity) for severity in SEVERITY_ORDER}
    problems = counts["error"] + counts["warning"]
    if not findings:
        return f"{clean}."
    if not problems:
        noun = "finding" if counts["information"] == 1 else "findings"
        return f"{clean} ({counts['information']} information {noun})."
    parts = [f"{counts[severity]} {severity}" + ("s" if counts[severity] != 1 and severity != "information" else "")
             for severity in SEVERITY_ORDER if counts[severity]]
    noun = "problem" if problems == 1 else "problems"
    return f"Found {problems} {noun} ({', '.join(parts)})."


def _display_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # Another drive on Windows.
        return path
    return path if relative.startswith("..") else relative


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    return f"{value:.3g}"
