"""Benchmark of the static checker: whole-tree speed against other PyTorch linters, and re-analysis latency.

Usage (from the repository root, after scripts/setup.sh --test, which installs torch into .venv):

    .venv/bin/python bench/static_bench.py [--skip-others] [--edits 300]

It creates a separate environment in .bench/venv with torch-preflight 0.5.0 and TorchFix, so that
their dependencies (LibCST) stay out of gradsight's environment, then times, single-process:

- `gradsight check`, `torch-preflight check -j 1` and `torchfix -j 1` over a sample of the
  installed torch package's source files (copied out of site-packages, which torch-preflight
  skips) and over the training scripts in tests/ and examples/; gradsight alone over all of
  the torch package's files;
- gradsight's re-analysis of two 2,000-line training scripts after one-character edits (median),
  and a check of each that reuses nothing.

It prints a Markdown report for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_ENV = ROOT / ".bench" / "venv"
OTHER_TOOLS = ["torch-preflight==0.5.0", "torchfix"]


def ensure_other_tools() -> Path:
    """Create .bench/venv with the other linters, once; return its bin folder."""
    bin_dir = BENCH_ENV / "bin"
    if not (bin_dir / "torch-preflight").exists() or not (bin_dir / "torchfix").exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_ENV)], check=True)
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *OTHER_TOOLS], check=True)
    return bin_dir


def torch_source_tree() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("torch is not installed in this Python; run scripts/setup.sh --test first")
    return Path(list(spec.submodule_search_locations)[0])


def copy_torch_sources(sample: int | None) -> Path:
    """Copy the torch package's .py files out of site-packages (torch-preflight skips files under it).

    With `sample`, copy every k-th file of the sorted list so that about `sample` files remain.
    """
    source = torch_source_tree()
    files = sorted(source.rglob("*.py"))
    if sample is not None and sample < len(files):
        step = len(files) / sample
        files = [files[int(index * step)] for index in range(sample)]
    folder = Path(tempfile.mkdtemp(prefix="gradsight-bench-torch-")) / "torch"
    for path in files:
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return folder


def script_corpus() -> Path:
    """Copy the training scripts of tests/ and examples/ into one folder, so that every tool checks the same files."""
    folder = Path(tempfile.mkdtemp(prefix="gradsight-bench-scripts-"))
    for source in [*sorted((ROOT / "tests" / "cases").rglob("*.py")), *sorted((ROOT / "examples").glob("*.py"))]:
        shutil.copy(source, folder / f"{source.parent.name}_{source.name}")
    return folder


def time_command(command: list[str], repeats: int) -> tuple[float, subprocess.CompletedProcess]:
    """Return the median wall time in seconds of `command` over `repeats` runs, and the last run's result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def count_python_files(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.py"))


def one_program_script() -> str:
    """A single training program of about 2,000 lines in which every function is reachable from main()."""
    return (ROOT / "bench" / "inputs" / "long_train.py").read_text()


def repeated_case_script() -> str:
    """Copies of one test case joined to 2,000 lines: twenty training loops, denser in what the rules trace."""
    base = (ROOT / "tests" / "cases" / "static" / "vgg_cifar10_tiny_lr.py").read_text()
    parts = []
    index = 0
    while sum(part.count("\n") for part in parts) < 2000:
        parts.append(base.replace("VGG16", f"VGG16_{index}").replace("def main", f"def main_{index}"))
        index += 1
    return "\n".join(parts)


def reanalysis_latency(source: str, edits: int) -> dict[str, float]:
    """Time check_source on `source` after one-character edits of its digits; return milliseconds.

    Each edit is applied to the original source, as typing one character and then undoing it
    would. The edited statement is parsed again, and the results kept for the others are reused.
    """
    from gradsight.static import check_source

    lines = source.count("\n")
    rng = random.Random(0)
    digits = [position for position, char in enumerate(source) if char.isdigit()]
    check_source(source)  # the server has checked the file once when it was opened
    samples = []
    for _ in range(edits):
        position = rng.choice(digits)
        edited = source[:position] + str((int(source[position]) + 1) % 10) + source[position + 1 :]
        start = time.perf_counter()
        check_source(edited)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "lines": lines,
        "median_ms": statistics.median(samples),
        "p90_ms": samples[int(len(samples) * 0.9)],
        "edits": edits,
    }


def first_check_latency(source: str, repeats: int = 20) -> float:
    """Median milliseconds of a check that can reuse nothing (a file just opened, or a line break typed)."""
    from gradsight.static import check_source, incremental

    samples = []
    for _ in range(repeats):
        incremental.clear_cache()
        start = time.perf_counter()
        check_source(source)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-others", action="store_true", help="time gradsight only")
    parser.add_argument("--edits", type=int, default=300, help="one-character edits for the re-analysis timing (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per command on the script corpus (default 3); the torch trees run once")
    parser.add_argument(
        "--torch-sample",
        type=int,
        default=100,
        help="files of the torch package that all three tools check (default 100); torch-preflight needs minutes per hundred files",
    )
    args = parser.parse_args()

    gradsight = str(Path(sys.executable).with_name("gradsight"))
    corpora = {
        "torch package source, all files (gradsight only)": copy_torch_sources(None),
        f"torch package source, every k-th file ({args.torch_sample})": copy_torch_sources(args.torch_sample),
        "training scripts (tests/, examples/)": script_corpus(),
    }
    tools = {"gradsight": lambda path: [gradsight, "check", "--no-config", "--format", "json", str(path)]}
    if not args.skip_others:
        bin_dir = ensure_other_tools()
        tools["torch-preflight 0.5.0"] = lambda path: [str(bin_dir / "torch-preflight"), "check", "-j", "1", "-f", "json", str(path)]
        tools["TorchFix"] = lambda path: [str(bin_dir / "torchfix"), "-j", "1", str(path)]

    print(f"Machine: {machine()}")
    print(f"Command: .venv/bin/python bench/static_bench.py --edits {args.edits} --repeats {args.repeats} --torch-sample {args.torch_sample}\n")
    print("| Corpus | Files | Tool | Wall time (s) | Ratio to gradsight |")
    print("|---|---|---|---|---|")
    summary = {}
    for corpus_name, path in corpora.items():
        repeats = 1 if corpus_name.startswith("torch") else args.repeats
        files = count_python_files(path)
        baseline = None
        for tool_name, command in tools.items():
            if "gradsight only" in corpus_name and tool_name != "gradsight":
                continue
            seconds, result = time_command(command(path), repeats)
            if tool_name == "gradsight":
                baseline = seconds
                findings = json.loads(result.stdout) if result.stdout.strip() else []
                summary[corpus_name] = findings
                internal = "internal error" in result.stderr
                if internal:
                    print(f"gradsight reported an internal error: {result.stderr[-500:]}", file=sys.stderr)
            ratio = seconds / baseline if baseline else float("nan")
            print(f"| {corpus_name} | {files} | {tool_name} | {seconds:.2f} | {ratio:.1f}x |")

    print()
    for corpus_name, findings in summary.items():
        codes: dict[str, int] = {}
        for item in findings:
            key = item["code"] or item["rule"]
            codes[key] = codes.get(key, 0) + 1
        listed = ", ".join(f"{code}: {count}" for code, count in sorted(codes.items())) or "none"
        print(f"gradsight results on {corpus_name}: {len(findings)} ({listed})")

    print("\n| Script | Lines | Re-analysis after a one-character edit: median (ms) | 90th percentile (ms) | Check reusing nothing: median (ms) |")
    print("|---|---|---|---|---|")
    scripts = {
        "one training program (bench/inputs/long_train.py)": one_program_script(),
        "twenty copies of tests/cases/static/vgg_cifar10_tiny_lr.py": repeated_case_script(),
    }
    for name, source in scripts.items():
        latency = reanalysis_latency(source, args.edits)
        full = first_check_latency(source)
        print(f"| {name} | {latency['lines']} | {latency['median_ms']:.1f} | {latency['p90_ms']:.1f} | {full:.1f} |")
    print(f"\n({args.edits} edits per script, each replacing one digit.)")


if __name__ == "__main__":
    main()
