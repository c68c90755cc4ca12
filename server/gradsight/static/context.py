"""The per-file context that rules read and report findings through."""

from __future__ import annotations

import ast
from typing import Any

from gradsight.config import DEFAULT_SETTINGS, Settings
from gradsight.findings import Edit, Finding, Fix, RelatedLocation, Severity, Span, source_lines
from gradsight.static.kinds import KindInference
from gradsight.static.rules.catalog import RULES
from gradsight.static.semantic import SemanticModel
from gradsight.static.values import ValueResolver


class Context:
    def __init__(self, source: str, tree: ast.Module, settings: Settings = DEFAULT_SETTINGS) -> None:
        self.source = source
        self.settings = settings
        self.thresholds = settings.thresholds
        self.lines = source_lines(source)
        self.tree = tree
        self.model = SemanticModel(tree)
        self.values = ValueResolver(self.model)
        self.kinds = KindInference(self.model)
        self.findings: list[Finding] = []
        # Facts that a rule gathers during the walk and combines afterwards, keyed by the rule's code.
        self.state: dict[str, Any] = {}

    def report(
        self,
        code: str,
        node: ast.AST,
        message: str,
        *,
        severity: Severity | None = None,
        related: tuple[RelatedLocation, ...] = (),
        fix: Fix | None = None,
    ) -> None:
        info = RULES[code]
        self.findings.append(
            Finding(
                code=code,
                rule=info.name,
                severity=severity if severity is not None else info.severity,
                message=message,
                span=self.span(node),
                related=related,
                fix=fix,
            )
        )

    # Building fixes

    def replace(self, node: ast.AST, new_text: str) -> Edit:
        """Return an edit that replaces the source of `node` with `new_text`."""
        return Edit(self.span(node), new_text)

    def insert_before(self, node: ast.AST, new_text: str) -> Edit:
        span = self.span(node)
        return Edit(Span(span.line, span.column, span.line, span.column), new_text)

    def insert_after(self, node: ast.AST, new_text: str) -> Edit:
        span = self.span(node)
        return Edit(Span(span.end_line, span.end_column, span.end_line, span.end_column), new_text)

    def delete_lines(self, node: ast.AST) -> Edit:
        """Return an edit that deletes the whole lines of a statement, line break included."""
        span = self.span(node)
        return Edit(Span(span.line, 1, span.end_line + 1, 1), "")

    def indentation(self, node: ast.AST) -> str:
        """Return the leading whitespace of the line where `node` starts."""
        line = self.lines[getattr(node, "lineno", 1) - 1] if self.lines else ""
        return line[: len(line) - len(line.lstrip())]

    def related(self, node: ast.AST, message: str) -> RelatedLocation:
        return RelatedLocation(self.span(node), message)

    def span(self, node: ast.AST) -> Span:
        line = getattr(node, "lineno", 1)
        end_line = getattr(node, "end_lineno", None) or line
        column = self._character_column(line, getattr(node, "col_offset", 0))
        end_column = self._character_column(end_line, getattr(node, "end_col_offset", None) or 0)
        return Span(line, column + 1, end_line, end_column + 1)

    def line_of(self, node: ast.AST) -> int:
        return getattr(node, "lineno", 1)

    def text(self, node: ast.AST) -> str:
        """Return the source text of a node, shortened for messages."""
        text = self.segment(node) or ast.unparse(node)
        text = " ".join(text.split())
        return text if len(text) <= 60 else text[:57] + "..."

    def segment(self, node: ast.AST) -> str | None:
        """Return the exact source text of a node (like ast.get_source_segment, without re-splitting the file)."""
        try:
            first, last = node.lineno, node.end_lineno  # type: ignore[attr-defined]
            start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        except AttributeError:
            return None
        if first is None or last is None or end is None or not 1 <= first <= last <= len(self.lines):
            return None
        encoded = [line.encode("utf-8") for line in self.lines[first - 1 : last]]
        if len(encoded) == 1:
            return encoded[0][start:end].decode("utf-8", errors="replace")
        parts = [encoded[0][start:], *encoded[1:-1], encoded[-1][:end]]
        return "\n".join(part.decode("utf-8", errors="replace") for part in parts)

    def _character_column(self, line: int, byte_offset: int) -> int:
        # ast reports columns as UTF-8 byte offsets; findings count code points.
        if not 1 <= line <= len(self.lines):
            return byte_offset
        return len(self.lines[line - 1].encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))
