"""The `gradsight` command line: `check` for static analysis, `lsp` for the language server, `rule` for docs.

Exit status of `check`: 0 when no finding is a warning or worse, 1 when one is (or a file does
not parse), 2 on a usage error or an internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from gradsight import __version__
from gradsight.findings import CheckResult, Severity

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


class UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return args.handler(args)
    except UsageError as error:
        print(f"gradsight: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # An internal error: report it plainly, not as a traceback wall.
        print(f"gradsight: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradsight",
        description="Find out why PyTorch parameters are not updating.",
    )
    parser.add_argument("--version", action="version", version=f"gradsight {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser("check", help="check training scripts without running them")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders (folders are searched for .py files)")
    check.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    check.add_argument("--select", action="append", default=None, metavar="CODES", help="only report these comma-separated codes or prefixes, e.g. GS1,GS502")
    check.add_argument("--ignore", action="append", default=None, metavar="CODES", help="never report these comma-separated codes or prefixes")
    check.set_defaults(handler=_run_check)

    lsp = commands.add_parser("lsp", help="run the language server over standard input and output")
    lsp.set_defaults(handler=_run_lsp)

    rule = commands.add_parser("rule", help="print the documentation of a rule, e.g. `gradsight rule GS101`")
    rule.add_argument("code", metavar="CODE")
    rule.set_defaults(handler=_run_rule)
    return parser


def _codes(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    from gradsight.static import unknown_codes

    codes = [code.strip().upper() for value in values for code in value.split(",") if code.strip()]
    unknown = unknown_codes(codes)
    if unknown:
        from gradsight.static import RULES

        raise UsageError(f"unknown rule code {', '.join(unknown)}; known codes: {', '.join(sorted(RULES))}")
    return codes


def _run_check(args: argparse.Namespace) -> int:
    from gradsight.static import check_file, iter_python_files

    select, ignore = _codes(args.select), _codes(args.ignore)
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        raise UsageError(f"path not found: {', '.join(missing)}")

    results: list[tuple[Path, CheckResult]] = []
    for path in iter_python_files(args.paths):
        results.append((path, check_file(path, select=select, ignore=ignore)))

    if args.format == "json":
        _print_json(results)
    else:
        _print_text(results)

    if any(result.error is not None and result.error.kind == "internal" for _, result in results):
        return EXIT_ERROR
    failed = any(result.error is not None for _, result in results)
    serious = any(finding.severity >= Severity.WARNING for _, result in results for finding in result.findings)
    return EXIT_FINDINGS if failed or serious else EXIT_CLEAN


def _print_text(results: list[tuple[Path, CheckResult]]) -> None:
    counts: Counter[str] = Counter()
    for path, result in results:
        if result.error is not None:
            print(f"{path}:{result.error.line}:{result.error.column}: {result.error.message} (file not checked)")
            counts["file not checked"] += 1
        for finding in result.findings:
            print(f"{path}:{finding.span.line}:{finding.span.column}: {finding.code} {finding.message}")
            counts[finding.severity.label] += 1
    total = sum(counts.values())
    if total == 0:
        print(f"All checks passed ({len(results)} file{'s' if len(results) != 1 else ''} checked).")
        return
    labels = {
        "file not checked": ("file not checked", "files not checked"),
        "error": ("error", "errors"),
        "warning": ("warning", "warnings"),
        "information": ("information", "information"),
        "hint": ("hint", "hints"),
    }
    detail = ", ".join(
        f"{counts[key]} {singular if counts[key] == 1 else plural}" for key, (singular, plural) in labels.items() if counts[key]
    )
    print(f"Found {total} problem{'s' if total != 1 else ''} ({detail}) in {len(results)} file{'s' if len(results) != 1 else ''}.")


def _print_json(results: list[tuple[Path, CheckResult]]) -> None:
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
                }
            )
        items.extend(finding.to_dict(str(path)) for finding in result.findings)
    json.dump(items, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _run_lsp(args: argparse.Namespace) -> int:
    from gradsight.lsp import run_stdio

    run_stdio()
    return EXIT_CLEAN


def _run_rule(args: argparse.Namespace) -> int:
    from gradsight.static import RULES, rule_doc_path

    code = args.code.strip().upper()
    if code not in RULES:
        raise UsageError(f"unknown rule code {args.code!r}; known codes: {', '.join(sorted(RULES))}")
    print(rule_doc_path(code).read_text(encoding="utf-8"), end="")
    return EXIT_CLEAN


if __name__ == "__main__":
    raise SystemExit(main())
