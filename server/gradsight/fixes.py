"""Applying fixes to source text, as `gradsight check --fix` does and as editors do with code actions."""

from __future__ import annotations

from collections.abc import Iterable

from gradsight.findings import LINE_BREAK, Fix

# Python and LSP end a line at "\r\n", "\r" or "\n" (str.splitlines() also splits at form feeds).


def _line_starts(source: str) -> list[int]:
    starts = [0]
    starts.extend(match.end() for match in LINE_BREAK.finditer(source))
    return starts


def _offset(starts: list[int], source: str, line: int, column: int) -> int:
    """Convert a 1-based line and code-point column into an offset in `source`, clamped to its end."""
    if line > len(starts):
        return len(source)
    start = starts[line - 1]
    end = starts[line] if line < len(starts) else len(source)
    return min(start + column - 1, end)


def apply_fixes(source: str, fixes: Iterable[Fix]) -> tuple[str, int]:
    """Apply fixes whose edits do not overlap an already accepted fix; return the new source and how many applied.

    Fixes are taken in order, so an earlier fix wins over a later one that touches the same text.
    A second run of the checker can then fix what was left.
    """
    starts = _line_starts(source)
    accepted: list[tuple[int, int, str]] = []
    applied = 0
    for fix in fixes:
        ranges = [
            (_offset(starts, source, e.span.line, e.span.column), _offset(starts, source, e.span.end_line, e.span.end_column), e.new_text)
            for e in fix.edits
        ]
        if any(_overlaps(start, end, other_start, other_end) for start, end, _ in ranges for other_start, other_end, _ in accepted):
            continue
        accepted.extend(ranges)
        applied += 1

    text = source
    for start, end, new_text in sorted(accepted, key=lambda item: (item[0], item[1]), reverse=True):
        text = text[:start] + new_text + text[end:]
    return text, applied


def _overlaps(start: int, end: int, other_start: int, other_end: int) -> bool:
    if start == end or other_start == other_end:
        # Two insertions at one point would interleave in an unknown order: treat as a conflict.
        return other_start <= start <= other_end if start == end else start <= other_start <= end
    return start < other_end and other_start < end
