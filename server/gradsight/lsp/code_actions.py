"""Code actions: the quick fixes that findings carry, and `# noqa` suppression for a line."""

from __future__ import annotations

import re

from lsprotocol import types

from gradsight.findings import CheckResult, Finding, source_lines
from gradsight.lsp.convert import DIAGNOSTIC_SOURCE, LineIndex

_NOQA_COMMENT = re.compile(r"#\s*noqa\s*:\s*[A-Za-z]+[0-9]+(?:[\s,]+[A-Za-z]+[0-9]+)*", re.IGNORECASE)


def code_actions(
    result: CheckResult,
    uri: str,
    source: str,
    lines: LineIndex,
    params: types.CodeActionParams,
) -> list[types.CodeAction]:
    """Return the fixes and suppressions for the findings that overlap the requested range."""
    actions: list[types.CodeAction] = []
    only = params.context.only
    wants_quickfix = not only or any(str(kind).startswith(types.CodeActionKind.QuickFix) for kind in only)
    if not wants_quickfix:
        return actions

    for finding in result.findings:
        finding_range = lines.range(finding.span)
        diagnostics = _matching_diagnostics(finding, finding_range, params.context.diagnostics)
        # Editors send the cursor's range and the diagnostics under it: either one selects a finding.
        if not diagnostics and not _overlaps(finding_range, params.range):
            continue
        if finding.fix is not None:
            edits = [types.TextEdit(range=lines.range(edit.span), new_text=edit.new_text) for edit in finding.fix.edits]
            actions.append(
                types.CodeAction(
                    title=f"{finding.fix.title} ({finding.code})",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=diagnostics or None,
                    edit=types.WorkspaceEdit(changes={uri: edits}),
                    is_preferred=finding.fix.safe,
                )
            )
        actions.append(_noqa_action(finding, uri, source, lines, diagnostics))
    return actions


def _noqa_action(
    finding: Finding, uri: str, source: str, lines: LineIndex, diagnostics: list[types.Diagnostic]
) -> types.CodeAction:
    line_text = source_lines(source)[finding.span.line - 1] if source else ""
    existing = _NOQA_COMMENT.search(line_text)
    if existing:
        # Add the code to the noqa comment that is already there.
        column = existing.end() + 1
        new_text = f", {finding.code}"
    else:
        column = len(line_text.rstrip()) + 1
        new_text = f"  # noqa: {finding.code}"
    position = lines.position(finding.span.line, column)
    return types.CodeAction(
        title=f"Disable {finding.code} for this line",
        kind=types.CodeActionKind.QuickFix,
        diagnostics=diagnostics or None,
        edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=types.Range(start=position, end=position), new_text=new_text)]}),
    )


def _matching_diagnostics(finding: Finding, finding_range: types.Range, diagnostics: list[types.Diagnostic]) -> list[types.Diagnostic]:
    return [d for d in diagnostics if d.source == DIAGNOSTIC_SOURCE and d.code == finding.code and d.range == finding_range]


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(position: types.Position) -> tuple[int, int]:
        return (position.line, position.character)

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)
