"""Conversion of check results into LSP diagnostics.

Findings count columns in Unicode code points. LSP counts them in the position encoding agreed
at initialization, which is UTF-16 unless the client offers UTF-8 or UTF-32.
"""

from __future__ import annotations


from lsprotocol import types

from gradsight.findings import CheckResult, Finding, RelatedLocation, Severity, SourceError, Span, source_lines
from gradsight.static import RULES, rule_doc_path

DIAGNOSTIC_SOURCE = "gradsight"

# Python's tokenizer and LSP both end a line at "\r\n", "\r" or "\n". str.splitlines() also breaks
# at form feeds and Unicode line separators, which would shift the line numbers after them.

_SEVERITIES = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFORMATION: types.DiagnosticSeverity.Information,
    Severity.HINT: types.DiagnosticSeverity.Hint,
}


class LineIndex:
    """The lines of one document snapshot, for converting code-point columns to LSP positions."""

    def __init__(self, source: str, encoding: str = types.PositionEncodingKind.Utf16) -> None:
        self._lines = source_lines(source)
        self._encoding = encoding

    def position(self, line: int, column: int) -> types.Position:
        """Convert a 1-based line and a 1-based code-point column into an LSP position.

        A line past the end of the document maps to the end of its last line, and a column past
        the end of a line maps to the end of that line, as LSP clients do for such positions.
        """
        if line > len(self._lines):
            last = len(self._lines) - 1
            return types.Position(line=last, character=self._count_units(self._lines[last]))

        line_index = max(line - 1, 0)
        prefix = self._lines[line_index][: max(column - 1, 0)]
        return types.Position(line=line_index, character=self._count_units(prefix))

    def range(self, span: Span) -> types.Range:
        return types.Range(
            start=self.position(span.line, span.column),
            end=self.position(span.end_line, span.end_column),
        )

    def _count_units(self, text: str) -> int:
        # "surrogatepass" keeps a lone surrogate, which JSON input can contain, countable.
        if self._encoding == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8", "surrogatepass"))
        if self._encoding == types.PositionEncodingKind.Utf32:
            return len(text)
        return len(text.encode("utf-16-le", "surrogatepass")) // 2


def check_result_to_diagnostics(result: CheckResult, uri: str, lines: LineIndex) -> list[types.Diagnostic]:
    """Convert a check result into the diagnostics of document `uri`.

    A file whose analysis stopped with an error, such as a syntax error, gets exactly one
    diagnostic for that error, even when the result also carries findings.
    """
    if result.error is not None:
        return [source_error_to_diagnostic(result.error, lines)]

    return [finding_to_diagnostic(finding, uri, lines) for finding in result.findings]


def finding_to_diagnostic(finding: Finding, uri: str, lines: LineIndex) -> types.Diagnostic:
    related = [related_to_information(item, uri, lines) for item in finding.related]
    return types.Diagnostic(
        range=lines.range(finding.span),
        message=finding.message,
        severity=_diagnostic_severity(finding),
        code=finding.code,
        code_description=types.CodeDescription(href=rule_doc_path(finding.code).as_uri()),
        source=DIAGNOSTIC_SOURCE,
        related_information=related or None,
        data={"rule": finding.rule},
    )


def related_to_information(
    item: RelatedLocation, uri: str, lines: LineIndex
) -> types.DiagnosticRelatedInformation:
    return types.DiagnosticRelatedInformation(
        location=types.Location(uri=uri, range=lines.range(item.span)),
        message=item.message,
    )


def source_error_to_diagnostic(error: SourceError, lines: LineIndex) -> types.Diagnostic:
    """Convert the error that stopped the analysis of a file into one diagnostic without a code.

    A syntax error becomes an Error. Any other kind, such as a file nested too deeply for the
    checker, is no fault of the code, so it becomes Information. The range covers the one
    character at the error location, or is empty at the end of a line.
    """
    if error.kind == "syntax":
        message = error.message.removeprefix("SyntaxError: ")
        message = f"SyntaxError: {message} (gradsight resumes checking when the file parses)"
        severity = types.DiagnosticSeverity.Error
    else:
        message = f"gradsight could not analyse this file: {error.message}"
        severity = types.DiagnosticSeverity.Information

    return types.Diagnostic(
        range=types.Range(
            start=lines.position(error.line, error.column),
            end=lines.position(error.line, error.column + 1),
        ),
        message=message,
        severity=severity,
        source=DIAGNOSTIC_SOURCE,
    )


def _diagnostic_severity(finding: Finding) -> types.DiagnosticSeverity:
    rule = RULES.get(finding.code)
    if finding.severity == Severity.INFORMATION and rule is not None and rule.information_as_hint:
        return types.DiagnosticSeverity.Hint

    return _SEVERITIES[finding.severity]
