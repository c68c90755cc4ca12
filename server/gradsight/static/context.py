"""What rules see of a file, and how they report findings."""

from __future__ import annotations

import ast
from typing import Any

from gradsight.findings import Finding, RelatedLocation, Severity, Span
from gradsight.static.kinds import KindInference
from gradsight.static.rules.catalog import RULES
from gradsight.static.semantic import SemanticModel
from gradsight.static.values import ValueResolver


class Context:
    def __init__(self, source: str, tree: ast.Module) -> None:
        self.source = source
        self.lines = source.splitlines()
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
            )
        )

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
        text = ast.get_source_segment(self.source, node) or ast.unparse(node)
        text = " ".join(text.split())
        return text if len(text) <= 60 else text[:57] + "..."

    def _character_column(self, line: int, byte_offset: int) -> int:
        # ast reports columns as UTF-8 byte offsets; findings count code points.
        if not 1 <= line <= len(self.lines):
            return byte_offset
        return len(self.lines[line - 1].encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))
