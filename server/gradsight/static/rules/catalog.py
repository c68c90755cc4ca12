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
        RuleInfo("GS201", "frozen-parameters", Severity.INFORMATION, "Parameters frozen with requires_grad=False.", information_as_hint=True),
        RuleInfo("GS206", "module-requires-grad-attribute", Severity.WARNING, "requires_grad set as a plain attribute of an nn.Module."),
        RuleInfo("GS502", "normalize-stats", Severity.WARNING, "Normalize with a std that is zero, tiny, or on the wrong scale."),
    )
}


def rule_doc_path(code: str) -> Path:
    """Return the path of the Markdown page that documents rule `code`."""
    return DOCS_DIR / f"{code}.md"
