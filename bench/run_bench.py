"""Benchmark the overhead of `gradsight.watch` and of `gradsight run` on the CPU.

Measures:

- the time per training step of a small CNN (two convolutions, BatchNorm, a linear head,
  batch 32 of 3x32x32 images, SGD with momentum) without and with `watch(every=10)`. The
  overhead is the difference of the medians of several runs of `--steps` steps each;
- the time of one check alone (snapshot, classification and source lookup), the median of 20,
  and the overhead it implies at `every=10`: check time / (10 x plain step time), which is less
  disturbed by other load on the machine than the difference of two step times;
- the thread CPU time per step of the same CNN on one thread, without and with the forward hook
  that `watch` puts on each ReLU during the steps before a check (GS911), and of the hook's own
  work on the CNN's activations;
- the wall time of `python SCRIPT` and of `gradsight run --steps 1000 SCRIPT` on a script that
  only imports torch (the start-up cost) and on one that trains the same CNN for 20 steps, so
  `run` never stops it early (the cost of the hooks and snapshots over a short run).

Run from the repository root: `.venv/bin/python bench/run_bench.py [--runs N] [--steps N]`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "server"))

import gradsight  # noqa: E402
from gradsight.runtime import history  # noqa: E402

CNN_SOURCE = """
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for step in range(20):
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
"""


def make_cnn() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def time_steps(model, optimizer, steps: int) -> float:
    """Return the mean seconds per training step over `steps` steps."""
    batches = [(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))) for _ in range(steps)]
    started = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def bench_watch(runs: int, steps: int) -> tuple[float, float, list[float]]:
    """Time plain and watched training in pairs; return the median step times and each pair's ratio."""
    plain, watched, ratios = [], [], []
    for _ in range(runs):
        # Each pair runs back to back, so that drift in the machine's speed hits both alike.
        model, optimizer = make_cnn()
        time_steps(model, optimizer, 5)
        plain_step = time_steps(model, optimizer, steps)

        model, optimizer = make_cnn()
        handle = gradsight.watch(model, optimizer, every=10)
        time_steps(model, optimizer, 5)
        watched_step = time_steps(model, optimizer, steps)
        handle.remove()

        plain.append(plain_step)
        watched.append(watched_step)
        ratios.append(watched_step / plain_step)
    return statistics.median(plain), statistics.median(watched), sorted(ratios)


def bench_check(plain_step: float) -> float:
    model, optimizer = make_cnn()
    time_steps(model, optimizer, 3)
    handle = gradsight.watch(model, optimizer, every=10)
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        handle._check(model, [optimizer])
        durations.append(time.perf_counter() - started)
    handle.remove()
    return statistics.median(durations)


def bench_dead_unit_hook(runs: int, steps: int) -> tuple[float, float, float]:
    """Return thread CPU seconds per step without and with the dead-unit hook, and of the hook's work.

    Runs torch on one thread, so that the calling thread's CPU time covers all of torch's work
    and other jobs on the machine disturb it less than the wall time. Each is the minimum over
    `runs` runs of `steps` steps.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, optimizer = make_cnn()
    batches = [(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))) for _ in range(steps)]
    tracker = history.DeadUnitTracker()

    def cpu_time_per_step() -> float:
        started = time.thread_time()
        for x, y in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return (time.thread_time() - started) / steps

    def observe(name, module, args, output):
        tracker.observe(name, module, output)

    plain, hooked = [], []
    for _ in range(runs):
        plain.append(cpu_time_per_step())
        handles = [module.register_forward_hook(functools.partial(observe, name)) for name, module in history.activation_modules(model)]
        hooked.append(cpu_time_per_step())
        for handle in handles:
            handle.remove()
        tracker.read()
        tracker.clear()

    outputs = [module(torch.randn(32, *shape)) for module, shape in ((nn.ReLU(), (16, 32, 32)), (nn.ReLU(), (32, 16, 16)))]
    hook_times = []
    for _ in range(runs):
        started = time.thread_time()
        for _ in range(steps):
            for index, output in enumerate(outputs):
                tracker.observe(index, nn.ReLU(), output)
        hook_times.append((time.thread_time() - started) / steps)
    torch.set_num_threads(threads)
    return min(plain), min(hooked), min(hook_times)


def bench_startup(runs: int, source: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "train.py"
        script.write_text(textwrap.dedent(source))
        gradsight_command = [str(Path(sys.executable).parent / "gradsight"), "run", "--steps", "1000", str(script)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "server"))
        plain = [_wall([sys.executable, str(script)], env) for _ in range(runs)]
        with_run = [_wall(gradsight_command, env) for _ in range(runs)]
    return statistics.median(plain), statistics.median(with_run)


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=False, capture_output=True, timeout=300)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement; the median is reported")
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed run of watch")
    args = parser.parse_args()

    # Training the CNN on random labels kills most of its second ReLU's units within 50 steps,
    # and watch rightly warns about it (GS911) once per run: keep those lines out of the report.
    logging.getLogger("gradsight").setLevel(logging.ERROR)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, Python {platform.python_version()}")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    plain, watched, ratios = bench_watch(args.runs, args.steps)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    print(f"step time: {plain * 1000:.2f} ms plain, {watched * 1000:.2f} ms with watch(every=10) (medians)")
    print(f"paired runs of {args.steps} steps: watched/plain median {(statistics.median(ratios) - 1) * 100:+.1f}%, "
          f"quartiles {(quartiles[0] - 1) * 100:+.1f}% and {(quartiles[2] - 1) * 100:+.1f}%, over {len(ratios)} pairs")
    check = bench_check(plain)
    print(f"one check: {check * 1000:.2f} ms, so watch(every=10) adds {check / (10 * plain) * 100:.1f}% per step")
    plain_cpu, hooked_cpu, hook_cpu = bench_dead_unit_hook(max(args.runs, 12), 5)
    print(f"dead-unit hook, one thread, thread CPU time per step: {plain_cpu * 1000:.2f} ms without, "
          f"{hooked_cpu * 1000:.2f} ms with; the hook's work alone {hook_cpu * 1000:.2f} ms")
    for label, source in (("import torch only", "import torch\n"), ("20-step CNN script", CNN_SOURCE)):
        plain_start, run_start = bench_startup(args.runs, source)
        print(f"{label}: {plain_start:.2f} s with python, {run_start:.2f} s with gradsight run: "
              f"{run_start - plain_start:+.2f} s")
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
