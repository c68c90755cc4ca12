"""Output formats of `gradsight check`: text, JSON, SARIF 2.1.0 and GitHub workflow commands."""

from __future__ import annotations

import json
from urllib.parse import quote
from collections import Counter
from pathlib import Path
from typing import TextIO

from gradsight import __version__
from gradsight.findings import CheckResult, Finding, Severity
from gradsight.static.rules.catalog import RULES

Results = list[tuple[Path, CheckResult]]

_SARIF_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFORMATION: "note", Severity.HINT: "note"}
_GITHUB_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFORMATION: "notice", Severity.HINT: "notice"}
_SUMMARY_LABELS = {
    "file not checked": ("file not checked", "files not checked"),
    "error": ("error", "errors"),
    "warning": ("warning", "warnings"),
    "information": ("information", "information"),
    "hint": ("hint", "hints"),
}


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def write_text(results: Results, stream: TextIO, fixed: int = 0) -> None:
    counts: Counter[str] = Counter()
    for path, result in results:
        if result.error is not None:
            print(f"{path}:{result.error.line}:{result.error.column}: {result.error.message} (file not checked)", file=stream)
            counts["file not checked"] += 1
        for finding in result.findings:
            # `CODE severity: message`, as `gradsight run` prints runtime findings: information-level
            # findings (deliberate freezes) must not read like the warnings around them.
            print(f"{path}:{finding.span.line}:{finding.span.column}: {finding.code} {finding.severity.label}: {finding.message}", file=stream)
            counts[finding.severity.label] += 1

    files = _plural(len(results), "file", "files")
    if fixed:
        print(f"Fixed {_plural(fixed, 'problem', 'problems')}.", file=stream)
    total = sum(counts.values())
    if total == 0:
        print(f"All checks passed ({files} checked).", file=stream)
        return
    detail = ", ".join(_plural(counts[key], *labels) for key, labels in _SUMMARY_LABELS.items() if counts[key])
    affected = sum(1 for _, result in results if result.error is not None or result.findings)
    where = files if affected == len(results) else f"{affected} of {files}"
    print(f"Found {_plural(total, 'problem', 'problems')} ({detail}) in {where}.", file=stream)


def write_json(results: Results, stream: TextIO) -> None:
    items = []
    for path, result in results:
        if result.error is not None:
            items.append(
                {
                    "path": str(path),
                    "line": result.error.line,
                    "column": result.error.column,
                    "end_line": result.error.line,
                    "end_column": result.error.column,
                    "code": None,
                    "rule": f"{result.error.kind}-error",
                    "severity": "error",
                    "message": result.error.message,
                    "related": [],
                    "fix": None,
                }
            )
        items.extend(finding.to_dict(str(path)) for finding in result.findings)
    json.dump(items, stream, indent=2)
    stream.write("\n")


def write_sarif(results: Results, stream: TextIO) -> None:
    """Write a SARIF 2.1.0 log, the format that code-scanning services read."""
    used_codes = sorted({finding.code for _, result in results for finding in result.findings})
    rule_index = {code: index for index, code in enumerate(used_codes)}
    sarif_results = [_sarif_result(path, finding, rule_index) for path, result in results for finding in result.findings]
    notifications = [
        {
            "level": "error",
            "message": {"text": f"{result.error.message} (file not checked)"},
            "locations": [_sarif_location(path, result.error.line, result.error.column, result.error.line, result.error.column)],
        }
        for path, result in results
        if result.error is not None
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "gradsight",
                        "version": __version__,
                        "rules": [_sarif_rule(code) for code in used_codes],
                    }
                },
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "results": sarif_results,
            }
        ],
    }
    json.dump(log, stream, indent=2)
    stream.write("\n")


def _sarif_rule(code: str) -> dict:
    info = RULES[code]
    return {
        "id": code,
        "name": info.name,
        "shortDescription": {"text": info.summary},
        "help": {"text": f"Run `gradsight rule {code}` for the full documentation."},
        "defaultConfiguration": {"level": _SARIF_LEVELS[info.severity]},
    }


def _sarif_location(path: Path, line: int, column: int, end_line: int, end_column: int) -> dict:
    return {
        "physicalLocation": {
            # SARIF wants a URI reference: spaces, commas and % in file names are percent-encoded.
            "artifactLocation": {"uri": quote(path.as_posix())},
            "region": {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column},
        }
    }


def _sarif_result(path: Path, finding: Finding, rule_index: dict[str, int]) -> dict:
    span = finding.span
    result = {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": _SARIF_LEVELS[finding.severity],
        "message": {"text": finding.message},
        "locations": [_sarif_location(path, span.line, span.column, span.end_line, span.end_column)],
    }
    if finding.related:
        result["relatedLocations"] = [
            {
                "id": index,
                "message": {"text": item.message},
                **_sarif_location(path, item.span.line, item.span.column, item.span.end_line, item.span.end_column),
            }
            for index, item in enumerate(finding.related)
        ]
    return result


def write_github(results: Results, stream: TextIO) -> None:
    """Write GitHub Actions workflow commands, which show as annotations on the pull request."""
    for path, result in results:
        if result.error is not None:
            properties = _github_properties(file=path.as_posix(), line=result.error.line, col=result.error.column, title="gradsight")
            print(f"::error {properties}::{_github_data(result.error.message + ' (file not checked)')}", file=stream)
        for finding in result.findings:
            span = finding.span
            properties = _github_properties(
                file=path.as_posix(),
                line=span.line,
                col=span.column,
                endLine=span.end_line,
                endColumn=span.end_column,
                title=f"{finding.code} {finding.rule}",
            )
            print(f"::{_GITHUB_LEVELS[finding.severity]} {properties}::{_github_data(finding.message)}", file=stream)


def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_properties(**values: object) -> str:
    def escape(value: object) -> str:
        return _github_data(str(value)).replace(":", "%3A").replace(",", "%2C")

    return ",".join(f"{key}={escape(value)}" for key, value in values.items())


WRITERS = {"text": write_text, "json": write_json, "sarif": write_sarif, "github": write_github}
