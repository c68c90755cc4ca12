"""`gradsight run` and `gradsight.inspect` under torch.distributed: two CPU processes on gloo,
talking over 127.0.0.1 on a free port. Every process is bounded by a timeout and killed by its
PID if it outlives it."""

from __future__ import annotations

import json
import sys

import pytest
from distributed_helpers import exit_codes, gradsight_run, run_two_ranks, write

DDP_UNUSED = """
import datetime
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(8, 4)
        self.unused = nn.Linear(8, 4)

    def forward(self, x):
        return self.used(x)


dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
torch.manual_seed(0)
model = DistributedDataParallel(Net(), find_unused_parameters=True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
torch.manual_seed(1 + dist.get_rank())
for step in range(10):
    optimizer.zero_grad()
    model(torch.randn(16, 8)).pow(2).mean().backward()
    optimizer.step()
"""

# Each rank trains its own copy without DDP, so the copies drift apart.
DRIFTING_REPLICAS = """
import datetime
import torch
import torch.distributed as dist
import torch.nn as nn

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
torch.manual_seed(1 + dist.get_rank())
for step in range(10):
    optimizer.zero_grad()
    model(torch.randn(16, 8)).pow(2).mean().backward()
    optimizer.step()
"""

INSPECT_DDP = """
import datetime, json
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
import gradsight

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
torch.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
torch.manual_seed(1 + dist.get_rank())
local_norm = None
for step in range(3):
    optimizer.zero_grad()
    model(torch.randn(16, 8)).pow(2).mean().backward()
    if step < 2:
        optimizer.step()
report = gradsight.inspect(model, optimizer).to_dict()
local = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in model.module[0].parameters()])).item()
print(json.dumps({"report": report, "localNorm": local, "rank": dist.get_rank()}))
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def ddp_unused(tmp_path_factory):
    return run_two_ranks(gradsight_run, write(tmp_path_factory.mktemp("ddp"), DDP_UNUSED))


def test_ddp_unused_parameter_is_no_grad(ddp_unused):
    rank0 = ddp_unused[0]
    assert rank0.stdout, rank0.stderr[-2000:]
    report = json.loads(rank0.stdout)
    layers = {layer["name"]: layer for layer in report["models"][0]["layers"]}
    assert layers["unused"]["status"] == "no-grad"
    assert layers["used"]["status"] == "ok"
    assert [(f["code"], f["layer"]) for f in report["findings"]] == [("GS902", "unused")]
    # `self.unused = nn.Linear(8, 4)` is line 13 of the script (it starts with a blank line).
    assert report["findings"][0]["line"] == 13


def test_ddp_only_rank0_reports(ddp_unused):
    # NOTE: a rank that aborts at exit after its report (a torch/gloo problem, see exit_codes) passes too.
    assert all(code in (1, "aborted at exit") for code in exit_codes(ddp_unused)), [r.stderr[-2000:] for r in ddp_unused]
    assert ddp_unused[1].stdout == ""


def test_ddp_report_combined_and_named(ddp_unused):
    report = json.loads(ddp_unused[0].stdout)
    assert report["models"][0]["distributed"]["combined"] is True
    assert report["models"][0]["names"] == ["model"]
    assert any("combined across the 2 ranks" in note for note in report["notes"])


def test_drifting_replicas_found(tmp_path):
    rank0, _ = run_two_ranks(gradsight_run, write(tmp_path, DRIFTING_REPLICAS))
    report = json.loads(rank0.stdout)
    drifted = {f["layer"] for f in report["findings"] if f["code"] == "GS915"}
    assert drifted == {"0", "2"}


def test_inspect_ddp_combines_gradients(tmp_path):
    results = run_two_ranks(lambda script: [sys.executable, str(script)], write(tmp_path, INSPECT_DDP))
    outputs = [json.loads(result.stdout) for result in results]
    for output in outputs:
        report = output["report"]
        assert report["findings"] == []
        first = report["models"][0]["layers"][0]
        # DDP averaged the gradients, so the combined norm is each rank's own norm.
        assert first["gradNorm"] == pytest.approx(output["localNorm"], rel=1e-6)
