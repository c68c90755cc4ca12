"""Findings shared by every front end: the CLI, the language server and the Python API.

Positions are 1-based lines and 1-based columns counted in Unicode code points, as ruff and
flake8 print them. End positions are exclusive. The language server converts columns to UTF-16.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

# Line breaks as Python's tokenizer ends lines, so line numbers agree with `ast`. str.splitlines()
# would also break at form feeds and other separators, which Python does not count as line ends.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def source_lines(source: str) -> list[str]:
    """Split source text into lines, without their line breaks, numbered as `ast` numbers them."""
    return LINE_BREAK.split(source)


class Severity(enum.IntEnum):
    """Severity of a finding, ordered so that a larger value is worse."""

    HINT = 1
    INFORMATION = 2
    WARNING = 3
    ERROR = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(member.label for member in cls)
            raise ValueError(f"invalid severity {text!r}; expected one of: {choices}") from None


@dataclass(frozen=True)
class Span:
    """A source range: 1-based line and column of the start, exclusive end."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class RelatedLocation:
    """Another place in the same file that explains a finding, such as where a value is set."""

    span: Span
    message: str


@dataclass(frozen=True)
class Edit:
    """Replace the text in `span` with `new_text` (an empty span inserts, an empty text deletes)."""

    span: Span
    new_text: str


@dataclass(frozen=True)
class Fix:
    """A change that resolves a finding: the editor offers it as a quick fix and `check --fix` applies it.

    `safe` is False when the edit may change behaviour beyond the bug (ruff's "unsafe fix");
    only safe fixes are applied by `check --fix`.
    """

    title: str
    edits: tuple[Edit, ...]
    safe: bool = True


@dataclass(frozen=True)
class Finding:
    """One problem found in a file."""

    code: str
    rule: str
    severity: Severity
    message: str
    span: Span
    related: tuple[RelatedLocation, ...] = field(default_factory=tuple)
    fix: Fix | None = None

    def to_dict(self, path: str) -> dict:
        return {
            "path": path,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "code": self.code,
            "rule": self.rule,
            "severity": self.severity.label,
            "message": self.message,
            "related": [
                {
                    "line": item.span.line,
                    "column": item.span.column,
                    "end_line": item.span.end_line,
                    "end_column": item.span.end_column,
                    "message": item.message,
                }
                for item in self.related
            ],
            "fix": None
            if self.fix is None
            else {
                "title": self.fix.title,
                "safe": self.fix.safe,
                "edits": [
                    {
                        "line": edit.span.line,
                        "column": edit.span.column,
                        "end_line": edit.span.end_line,
                        "end_column": edit.span.end_column,
                        "new_text": edit.new_text,
                    }
                    for edit in self.fix.edits
                ],
            },
        }


@dataclass(frozen=True)
class SourceError:
    """A file that could not be analysed: a syntax error, undecodable bytes or a read failure."""

    message: str
    line: int = 1
    column: int = 1
    # "syntax" (the source does not parse), "read" (unreadable or not text) or "internal" (a gradsight bug).
    kind: str = "syntax"


@dataclass(frozen=True)
class CheckResult:
    """Findings of one file, or the error that stopped its analysis."""

    findings: tuple[Finding, ...] = ()
    error: SourceError | None = None
