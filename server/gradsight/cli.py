"""The `gradsight` command line: `check` for static analysis, `lsp` for the language server, `rule` for docs,
`run` to run a training script and report which layers learn.

Exit status of `check`: 0 when no finding is a warning or worse, 1 when one is (or a file does
not parse), 2 on a usage error or an internal error.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from gradsight import __version__
from gradsight.findings import CheckResult, Severity, SourceError

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
    except BrokenPipeError:
        # The reader of our output went away (`gradsight check ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FINDINGS
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

    check = commands.add_parser(
        "check",
        help="check training scripts without running them",
        description="Check training scripts without running them. Settings come from [tool.gradsight] in the "
        "nearest pyproject.toml; --select and --ignore replace those.",
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders (folders are searched for .py files)")
    check.add_argument("--format", choices=("text", "json", "sarif", "github"), default="text", help="output format (default: text)")
    check.add_argument("--select", action="append", default=None, metavar="CODES", help="only report these comma-separated codes or prefixes, e.g. GS1,GS502")
    check.add_argument("--ignore", action="append", default=None, metavar="CODES", help="never report these comma-separated codes or prefixes")
    check.add_argument("--fix", action="store_true", help="apply the safe fixes to the files, then report what is left")
    check.add_argument("--no-config", action="store_true", help="ignore pyproject.toml settings and use the defaults")
    check.set_defaults(handler=_run_check)

    lsp = commands.add_parser("lsp", help="run the language server over standard input and output")
    lsp.set_defaults(handler=_run_lsp)

    rule = commands.add_parser("rule", help="print the documentation of a rule, by code or name: `gradsight rule GS101`")
    rule.add_argument("code", metavar="CODE")
    rule.set_defaults(handler=_run_rule)

    run = commands.add_parser(
        "run",
        # argparse would show the REMAINDER positional as required: give the usage line by hand.
        usage="gradsight run [-h] [--steps N] [--format {text,json}] SCRIPT [-- SCRIPT_ARGS ...]",
        help="run a training script for a few optimizer steps and report which layers learn",
        description="Run a training script in this Python process, unchanged, for a few optimizer steps (or backward "
        "passes when nothing steps), then report each layer's status and the runtime findings (GS9xx). Exit status: "
        "0 when no finding is a warning or worse, 1 when one is or the script failed, 2 on a usage error.",
    )
    run.add_argument("--steps", type=int, default=5, metavar="N", help="stop after N optimizer steps of all optimizers together (default: 5); "
                     "steps that a GradScaler skips do not count, but 16 of them (or N, if larger) also stop the script")
    run.add_argument("--format", choices=("text", "json"), default="text", help="report format (default: text); "
                     "with json the script's standard output goes to standard error")
    run.add_argument("script", type=Path, metavar="SCRIPT", help="the training script")
    script_args = run.add_argument("script_args", nargs=argparse.REMAINDER, metavar="-- SCRIPT_ARGS",
                                   help="arguments for the script (optional)")
    # argparse marks every positional as required, so a missing SCRIPT would list SCRIPT_ARGS as
    # missing too; an empty remainder is valid.
    script_args.required = False
    run.set_defaults(handler=_run_run)
    return parser


def _codes(values: list[str] | None, option: str) -> tuple[str, ...] | None:
    from gradsight.config import ConfigError, parse_codes

    if values is None:
        return None
    try:
        return parse_codes(values, option)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _run_check(args: argparse.Namespace) -> int:
    from gradsight.config import DEFAULT_SETTINGS, ConfigError, settings_for
    from gradsight.fixes import apply_fixes
    from gradsight.output import WRITERS
    from gradsight.static import check_file, check_source, iter_python_files

    # Python's parser warns about code such as `1if x else 2` (`<unknown>:1: SyntaxWarning`). Running
    # the checked file shows that warning, so it is left out here, as ruff and flake8 leave it out.
    warnings.filterwarnings("ignore", category=SyntaxWarning)
    _collect_garbage_less_often()

    select, ignore = _codes(args.select, "--select"), _codes(args.ignore, "--ignore")
    if select == ():
        raise UsageError("--select needs at least one rule code or prefix, e.g. --select GS1")
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        raise UsageError(f"path not found: {', '.join(missing)}")

    results: list[tuple[Path, CheckResult]] = []
    fixed = 0
    seen: set[Path] = set()
    for path in iter_python_files(args.paths):
        if path.resolve() in seen:
            continue  # The same file named twice, or reached through two of the given paths.
        seen.add(path.resolve())
        if path.suffix == ".ipynb":
            message = "Jupyter notebooks are not supported yet; export one with `jupyter nbconvert --to script` and check the .py file"
            results.append((path, CheckResult(error=SourceError(message, kind="read"))))
            continue
        try:
            settings = DEFAULT_SETTINGS if args.no_config else settings_for(path)
        except ConfigError as error:
            raise UsageError(f"invalid configuration: {error}") from None
        result = check_file(path, settings=settings, select=select, ignore=ignore)
        if args.fix and result.error is None:
            safe_fixes = [finding.fix for finding in result.findings if finding.fix is not None and finding.fix.safe]
            source = _read_utf8(path) if safe_fixes else None
            if source is not None:
                new_source, count = apply_fixes(source, safe_fixes)
                if new_source != source:
                    path.write_text(new_source, encoding="utf-8")
                    fixed += count
                    result = check_source(new_source, settings=settings, select=select, ignore=ignore)
        results.append((path, result))

    if not results:
        print(f"gradsight: warning: no Python files found in {', '.join(str(path) for path in args.paths)}", file=sys.stderr)

    if args.format == "text":
        WRITERS["text"](results, sys.stdout, fixed=fixed)
    else:
        WRITERS[args.format](results, sys.stdout)

    if any(result.error is not None and result.error.kind == "internal" for _, result in results):
        return EXIT_ERROR
    failed = any(result.error is not None for _, result in results)
    serious = any(finding.severity >= Severity.WARNING for _, result in results for finding in result.findings)
    return EXIT_FINDINGS if failed or serious else EXIT_CLEAN


def _read_utf8(path: Path) -> str | None:
    """Return the text of a UTF-8 file, or None for other encodings, which --fix leaves untouched."""
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _collect_garbage_less_often() -> None:
    # The checker allocates many short-lived objects (syntax trees, lists, dictionaries) and
    # almost no reference cycles, so the default threshold of 700 allocations makes the cycle
    # collector run thousands of times per file for little. The memory this holds back is small.
    gc.set_threshold(50_000, 20, 20)


def _run_lsp(args: argparse.Namespace) -> int:
    from gradsight.lsp import run_stdio

    warnings.filterwarnings("ignore", category=SyntaxWarning)  # see _run_check
    _collect_garbage_less_often()
    run_stdio()
    return EXIT_CLEAN


def _run_rule(args: argparse.Namespace) -> int:
    from gradsight.runtime.codes import RUNTIME_RULES, runtime_rule_text
    from gradsight.static import RULES, rule_doc_path

    code = args.code.strip().upper()
    by_name = {info.name: info.code for info in RULES.values()}
    by_name.update((rule.name, rule.code) for rule in RUNTIME_RULES.values())
    code = by_name.get(args.code.strip().lower(), code)
    if code in RULES:
        print(rule_doc_path(code).read_text(encoding="utf-8"), end="")
    elif code in RUNTIME_RULES:
        print(runtime_rule_text(RUNTIME_RULES[code]), end="")
    else:
        known = ", ".join(sorted([*RULES, *RUNTIME_RULES]))
        raise UsageError(f"unknown rule {args.code!r}; known codes: {known}")
    return EXIT_CLEAN


def _run_run(args: argparse.Namespace) -> int:
    import json

    if args.steps < 1:
        raise UsageError(f"--steps must be 1 or more, not {args.steps}")
    if not args.script.is_file():
        raise UsageError(f"script not found: {args.script}")
    script_args = list(args.script_args)
    if script_args[:1] == ["--"]:
        script_args = script_args[1:]

    from gradsight.runtime.run import run_script

    if args.format == "json":
        # stdout carries the JSON report: send the script's own output to stderr meanwhile.
        with _stdout_to_stderr():
            result = run_script(str(args.script), script_args, steps=args.steps, traceback_location="on standard error")
    else:
        result = run_script(str(args.script), script_args, steps=args.steps)
    sys.stdout.flush()

    # In a distributed job every rank has the combined report; rank 0 prints it.
    if (result.report.run or {}).get("rank", 0) == 0:
        if args.format == "json":
            print(json.dumps(result.report.to_dict(), indent=2, allow_nan=False))
        else:
            print(f"\ngradsight: {_ending(result.outcome, args.steps)}")
            print(result.report)

    failed = result.outcome.ended_by == "exception" or bool(result.outcome.exit_code)
    return EXIT_FINDINGS if failed or result.report.has_problems else EXIT_CLEAN


def _ending(outcome, steps: int) -> str:
    from gradsight.runtime.history import SKIPPED_STEPS_STOP

    skipped = max(steps, SKIPPED_STEPS_STOP)
    if outcome.ended_by == "backward" and outcome.inside == "optimizer.step()":
        return f"stopped the script after {steps} backward passes, inside the first optimizer.step() call."
    if outcome.ended_by == "exception" and outcome.inside:
        return f"the script raised an exception in {outcome.inside}."
    return {
        "steps": f"stopped the script after {steps} optimizer steps.",
        "backward": f"stopped the script after {steps} backward passes (no optimizer step was seen).",
        "skipped": f"stopped the script after {skipped} optimizer steps that the GradScaler skipped.",
        "end": "the script ended.",
        "exit": f"the script called sys.exit({outcome.exit_code}).",
        "exception": "the script raised an exception.",
    }[outcome.ended_by]


class _stdout_to_stderr:
    """Point file descriptor 1 and sys.stdout at stderr, and restore both on exit."""

    def __enter__(self) -> None:
        sys.stdout.flush()
        self.saved_fd = os.dup(1)
        self.saved_stdout = sys.stdout
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def __exit__(self, *exc_info) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved_fd, 1)
        os.close(self.saved_fd)
        sys.stdout = self.saved_stdout


if __name__ == "__main__":
    raise SystemExit(main())
