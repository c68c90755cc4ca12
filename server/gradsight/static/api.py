"""Entry points of the static analysis: check a source string, a file, or a tree of files."""

from __future__ import annotations

import ast
import dataclasses
import io
import logging
import os
import re
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

from gradsight.config import DEFAULT_SETTINGS, Settings
from gradsight.findings import CheckResult, Finding, SourceError
from gradsight.static import incremental
from gradsight.static import rules  # noqa: F401  (importing the package registers every rule)
from gradsight.static.context import Context
from gradsight.static.registry import FILE_HANDLERS, NODE_HANDLERS
from gradsight.static.rules.catalog import RULES

logger = logging.getLogger(__name__)

_NOQA = re.compile(r"#\s*noqa\s*:\s*([A-Za-z]+[0-9]+(?:[\s,]+[A-Za-z]+[0-9]+)*)", re.IGNORECASE)

# Folders skipped while walking a directory, as ruff and flake8 skip them by default.
EXCLUDED_DIRECTORIES = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", "node_modules", "site-packages", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build", "dist"}
)


def check_source(
    source: str,
    *,
    settings: Settings | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> CheckResult:
    """Analyse Python source text and return its findings, sorted by position.

    `select` and `ignore` take rule codes or code prefixes (`GS1` means every GS1xx rule), as
    ruff does, and replace those of `settings` when given. A finding is dropped when its first
    line carries `# noqa: CODE` naming its code. A source that does not parse returns a
    CheckResult whose `error` gives the reason.
    """
    settings = settings or DEFAULT_SETTINGS
    if select is not None:
        settings = dataclasses.replace(settings, select=tuple(select))
    if ignore is not None:
        settings = dataclasses.replace(settings, ignore=tuple(ignore))
    try:
        tree = incremental.parse(source)
    except SyntaxError as error:
        return CheckResult(error=_syntax_error(error))
    except ValueError as error:  # NUL bytes in the source
        return CheckResult(error=SourceError(f"cannot parse: {error}", kind="syntax"))
    except (RecursionError, MemoryError):
        return CheckResult(error=SourceError("cannot parse: an expression is nested too deeply for Python's parser", kind="syntax"))

    try:
        findings = _run_rules(source, tree, settings)
    except RecursionError:
        return CheckResult(error=SourceError("the file is nested too deeply to analyse", kind="internal"))

    suppressed = noqa_codes(source)
    selected = [
        _with_severity(finding, settings)
        for finding in findings
        if is_selected(finding.code, settings.select, settings.ignore) and not _is_suppressed(finding, suppressed)
    ]
    selected.sort(key=lambda f: (f.span.line, f.span.column, f.code, f.message))
    return CheckResult(findings=tuple(_unique(selected)))


def check_file(path: Path, **options) -> CheckResult:
    """Read a file (honouring its PEP 263 encoding declaration) and analyse it."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return CheckResult(error=SourceError(f"cannot read file: {error.strerror or error}", kind="read"))
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        return CheckResult(error=SourceError("not a Python source file: it contains NUL bytes (binary data)", line=line, kind="read"))
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        source = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as error:
        message = f"cannot decode file: {error}; save it as UTF-8 or declare its encoding (# -*- coding: latin-1 -*-)"
        return CheckResult(error=SourceError(message, kind="read"))
    if source.startswith("\ufeff"):
        source = source[1:]
    return check_source(source, **options)


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield the files named in `paths` and the `.py` files under the folders named there, sorted."""
    for path in paths:
        if path.is_dir():
            for root, directories, files in os.walk(path):
                directories[:] = sorted(d for d in directories if d not in EXCLUDED_DIRECTORIES and not d.endswith(".egg-info"))
                for name in sorted(files):
                    if name.endswith(".py"):
                        yield Path(root) / name
        else:
            yield path


def is_selected(code: str, select: Iterable[str] | None, ignore: Iterable[str] | None) -> bool:
    select = list(select) if select is not None else None
    if select is not None and not any(code.startswith(prefix) for prefix in select):
        return False
    return not any(code.startswith(prefix) for prefix in ignore or ())


def unknown_codes(prefixes: Iterable[str]) -> list[str]:
    """Return the entries of `prefixes` that match no rule code."""
    return [prefix for prefix in prefixes if not any(code.startswith(prefix) for code in RULES)]


def noqa_codes(source: str) -> dict[int, set[str]]:
    """Return, per 1-based line, the codes named by a `# noqa: CODE, CODE` comment on it.

    A bare `# noqa` names no code, so it leaves gradsight's findings alone, as ruff does for
    codes a bare noqa was not written for.
    """
    if "noqa" not in source:
        return {}
    found: dict[int, set[str]] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        if "noqa" not in line:
            continue
        for match in _NOQA.finditer(line):
            codes = {code.upper() for code in re.split(r"[,\s]+", match.group(1)) if code}
            found.setdefault(number, set()).update(codes)
    return found


def _is_suppressed(finding: Finding, suppressed: dict[int, set[str]]) -> bool:
    codes = suppressed.get(finding.span.line)
    return bool(codes) and any(finding.code.startswith(code) for code in codes)


def _with_severity(finding: Finding, settings: Settings) -> Finding:
    # The longest configured prefix wins: GS201 = "warning" beats GS2 = "hint".
    matches = [code for code in settings.severity if finding.code.startswith(code)]
    if not matches:
        return finding
    return dataclasses.replace(finding, severity=settings.severity[max(matches, key=len)])


def _run_rules(source: str, tree: ast.Module, settings: Settings) -> list[Finding]:
    ctx = Context(source, tree, settings)
    handled = frozenset(NODE_HANDLERS)
    nodes = ctx.model.nodes_of_types(handled)
    if type(tree) in handled:
        nodes.insert(0, tree)
    for node in nodes:
        # _call_safely inlined: this loop calls a handler for thousands of nodes.
        for handler in NODE_HANDLERS[type(node)]:
            try:
                handler(ctx, node)
            except RecursionError:
                raise
            except Exception:
                _log_failure(handler, node)
    for file_handler in FILE_HANDLERS:
        _call_safely(file_handler, ctx)
    return ctx.findings


def _call_safely(handler, *arguments) -> None:
    # One rule failing on unusual code must not hide the findings of the others.
    try:
        handler(*arguments)
    except RecursionError:
        raise
    except Exception:
        _log_failure(handler, arguments[1] if len(arguments) > 1 else None)


def _log_failure(handler, node: ast.AST | None) -> None:
    line = getattr(node, "lineno", "?")
    logger.exception("rule handler %s failed near line %s", getattr(handler, "__qualname__", handler), line)


def _syntax_error(error: SyntaxError) -> SourceError:
    message = error.msg or "invalid syntax"
    line = error.lineno or 1
    column = error.offset or 1
    return SourceError(f"SyntaxError: {message}", line=line, column=max(column, 1), kind="syntax")


def _unique(findings: list[Finding]) -> Iterator[Finding]:
    seen = set()
    for finding in findings:
        key = (finding.code, finding.span, finding.message)
        if key not in seen:
            seen.add(key)
            yield finding
