"""Benchmark the runtime probe on VGG-16 (138 M parameters) after one backward pass on the CPU.

Measures, each as the median of several runs:

- the probe's snapshot (`gradsight.runtime.probe.snapshot`) and its JSON encoding;
- one `torch._foreach_norm` pass over the gradients and one over the weights, read with one
  transfer: the floor that a statistics pass cannot beat;
- a plain per-parameter Python loop with `.item()` calls that computes the same statistics;
- the payload size;
- the round trip the extension makes: a real debugpy `evaluate` of the snapshot expression
  (with its chunks) plus the `gradsight/analyzeSnapshot` request to a real `gradsight lsp`.

Run from the repository root: `.venv/bin/python bench/probe_bench.py [--runs N] [--skip-debugger]`.
The model has torchvision's VGG-16 layer shapes, built here because torchvision is not a
dependency. The input is one 64x64 image: the gradient sizes do not depend on it, and a small
input keeps the backward pass short.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gradsight.runtime import probe  # noqa: E402
from gradsight.runtime.expressions import format_snapshot, probe_expressions  # noqa: E402

VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

VGG16_SOURCE = '''
import torch
import torch.nn as nn

CONFIG = {config!r}


def vgg16():
    layers = []
    channels = 3
    for value in CONFIG:
        if value == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, value, 3, padding=1), nn.ReLU(inplace=True)]
            channels = value
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),
        nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 1000),
        ),
    )


torch.manual_seed(0)
model = vgg16()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss = nn.functional.cross_entropy(model(torch.randn(1, 3, 64, 64)), torch.tensor([3]))
loss.backward()
paused = True
'''.format(config=VGG16_CONFIG)


def build_vgg16():
    namespace: dict = {}
    exec(compile(VGG16_SOURCE, "<vgg16>", "exec"), namespace)
    return namespace["model"], namespace["optimizer"]


def median_seconds(function, runs: int) -> float:
    function()  # warm-up: first calls allocate and load kernels
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def foreach_floor(model) -> list[float]:
    parameters = list(model.parameters())
    with torch.no_grad():
        grad_norms = torch._foreach_norm([p.grad for p in parameters])
        weight_norms = torch._foreach_norm([p.detach() for p in parameters])
        return torch.stack(list(grad_norms) + list(weight_norms)).tolist()


def item_loop(model) -> list[tuple[float, ...]]:
    rows = []
    with torch.no_grad():
        for p in model.parameters():
            grad = p.grad
            rows.append((
                grad.norm().item(), grad.abs().max().item(), grad.abs().sum().item(),
                torch.isnan(grad).sum().item(), p.norm().item(), p.abs().sum().item(),
                torch.isnan(p).sum().item(),
            ))
    return rows


def debugger_round_trip(runs: int) -> dict:
    from debugpy_client import DebugSession
    from runtime_helpers import LspStdioClient

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "train_vgg16.py"
        script.write_text(textwrap.dedent(VGG16_SOURCE))
        break_line = VGG16_SOURCE.strip("\n").splitlines().index("paused = True") + 1
        lsp = LspStdioClient()
        session = DebugSession(script)
        try:
            session.start([break_line])
            frame_id = session.wait_stopped(timeout=300)
            expressions = lsp.request("gradsight/probe", None)
            started = time.perf_counter()
            session.evaluate_json(expressions["install"], frame_id)
            install_s = time.perf_counter() - started
            expression = format_snapshot(expressions["snapshot"], "model", None)
            uri = script.as_uri()
            times = []
            for run in range(runs + 1):
                started = time.perf_counter()
                snapshot = session.evaluate_json(expression, frame_id)
                evaluated = time.perf_counter()
                lsp.request("gradsight/analyzeSnapshot", {"sessionId": "bench", "snapshot": snapshot, "sourceUris": [uri]})
                finished = time.perf_counter()
                if run:
                    times.append((evaluated - started, finished - evaluated, finished - started))
        finally:
            session.close()
            lsp.close()
    return {
        "install_s": install_s,
        "evaluate_s": statistics.median(t[0] for t in times),
        "analyze_s": statistics.median(t[1] for t in times),
        "round_trip_s": statistics.median(t[2] for t in times),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
        )
        memory = f"{memory_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown memory"
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, {memory}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--skip-debugger", action="store_true", help="skip the debugpy and LSP round trip")
    options = parser.parse_args()

    print("machine:", machine())
    model, optimizer = build_vgg16()
    count = sum(p.numel() for p in model.parameters())
    print(f"VGG-16: {count:,} parameters in {len(list(model.parameters()))} tensors")

    snapshot_s = median_seconds(lambda: probe.snapshot(model, optimizer, {}), options.runs)
    payload = json.dumps(probe.snapshot(model, optimizer, {}), separators=(",", ":"))
    encode_s = median_seconds(lambda: probe.snapshot_json(lambda: model, lambda: optimizer, {}, {}), options.runs)
    floor_s = median_seconds(lambda: foreach_floor(model), options.runs)
    loop_s = median_seconds(lambda: item_loop(model), options.runs)

    print(f"probe snapshot:            {snapshot_s * 1000:8.1f} ms")
    print(f"probe snapshot + JSON:     {encode_s * 1000:8.1f} ms")
    print(f"_foreach_norm floor:       {floor_s * 1000:8.1f} ms  (probe / floor = {snapshot_s / floor_s:.2f})")
    print(f"per-parameter .item() loop:{loop_s * 1000:8.1f} ms  (loop / probe = {loop_s / snapshot_s:.2f})")
    print(f"payload:                   {len(payload):,} characters")

    if not options.skip_debugger:
        round_trip = debugger_round_trip(options.runs)
        print(f"debugpy install:           {round_trip['install_s'] * 1000:8.1f} ms (once per session)")
        print(f"debugpy evaluate snapshot: {round_trip['evaluate_s'] * 1000:8.1f} ms")
        print(f"LSP analyzeSnapshot:       {round_trip['analyze_s'] * 1000:8.1f} ms")
        print(f"round trip:                {round_trip['round_trip_s'] * 1000:8.1f} ms")

    probe_expressions.cache_clear()


if __name__ == "__main__":
    main()
