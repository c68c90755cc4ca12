"""The runtime probe in-process: what it reads, that it changes nothing, and its bad-input cases."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from gradsight.runtime import probe
from gradsight.runtime.expressions import format_read_chunk, format_snapshot, probe_expressions

EXPRESSIONS = probe_expressions()


def evaluate(expression: str, namespace: dict):
    """Evaluate a probe expression as debugpy does (one dict) and parse the JSON, reading chunks."""
    result = json.loads(eval(expression, namespace))
    if isinstance(result, dict) and "chunked" in result:
        token, count = result["chunked"]["token"], result["chunked"]["count"]
        pieces = [eval(format_read_chunk(EXPRESSIONS.read_chunk, token, index), namespace) for index in range(count)]
        result = json.loads("".join(pieces))
    return result


def take_snapshot(namespace: dict, model: str = "model", optimizer: str | None = None):
    evaluate(EXPRESSIONS.install, namespace)
    return evaluate(format_snapshot(EXPRESSIONS.snapshot, model, optimizer), namespace)


def trained(model: nn.Module, optimizer=None, steps: int = 1, inputs: int = 8):
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(16, inputs)).pow(2).mean().backward()
        optimizer.step()
    model(torch.randn(16, inputs)).pow(2).mean().backward()
    return {"model": model, "optimizer": optimizer}


def by_name(snapshot):
    return {p["name"]: p for p in snapshot["parameters"]}


# Installation.


def test_install_binds_no_name():
    namespace = {"model": nn.Linear(2, 2)}
    result = evaluate(EXPRESSIONS.install, namespace)
    assert result["probe"]["version"] == EXPRESSIONS.version
    assert set(namespace) == {"model", "__builtins__"}
    assert sys.modules["_gradsight_probe"].PROBE_VERSION == EXPRESSIONS.version


def test_install_keeps_same_version():
    evaluate(EXPRESSIONS.install, {})
    installed = sys.modules["_gradsight_probe"]
    evaluate(EXPRESSIONS.install, {})
    assert sys.modules["_gradsight_probe"] is installed


def test_install_replaces_other_version():
    evaluate(EXPRESSIONS.install, {})
    sys.modules["_gradsight_probe"].PROBE_VERSION = "0+older"
    evaluate(EXPRESSIONS.install, {})
    assert sys.modules["_gradsight_probe"].PROBE_VERSION == EXPRESSIONS.version


def test_probe_imports_only_stdlib():
    source = Path(probe.__file__).read_text()
    assert "gradsight" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))
    assert "\nimport torch" not in source


# What the snapshot reads.


def test_snapshot_reads_norms_and_groups():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(
        [{"params": model[0].parameters(), "lr": 1e-3}, {"params": model[2].parameters(), "lr": 1e-2, "weight_decay": 0.1}]
    )
    namespace = trained(model, optimizer, steps=3)
    snapshot = take_snapshot(namespace)
    weight = by_name(snapshot)["0.weight"]
    assert weight["shape"] == [4, 8]
    assert weight["group"] == [0, 0]
    assert by_name(snapshot)["2.bias"]["group"] == [0, 1]
    assert math.isclose(weight["gradNorm"], model[0].weight.grad.norm().item(), rel_tol=1e-6)
    assert math.isclose(weight["gradMaxAbs"], model[0].weight.grad.abs().max().item(), rel_tol=1e-6)
    assert math.isclose(weight["weightNorm"], model[0].weight.norm().item(), rel_tol=1e-6)
    groups = snapshot["optimizers"][0]["groups"]
    assert [group["lr"] for group in groups] == [1e-3, 1e-2]
    assert groups[1]["weightDecay"] == 0.1
    assert groups[0]["betas"] == [0.9, 0.999]
    assert groups[0]["step"] == 3
    assert snapshot["layers"][0]["next"] == "ReLU"


def test_snapshot_finds_optimizer_in_frame():
    namespace = trained(nn.Linear(8, 2))
    snapshot = take_snapshot(namespace)
    assert snapshot["optimizers"][0]["type"] == "SGD"
    assert snapshot["model"]["names"] == ["model"]


def test_candidates_one_attribute_level():
    class Trainer:
        def __init__(self):
            self.model = nn.Linear(3, 3)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    namespace = {"trainer": Trainer(), "head": nn.Linear(3, 1)}
    evaluate(EXPRESSIONS.install, namespace)
    candidates = evaluate(EXPRESSIONS.find_candidates, namespace)
    assert [m["expression"] for m in candidates["models"]] == ["trainer.model", "head"]
    assert [o["expression"] for o in candidates["optimizers"]] == ["trainer.optimizer"]


def test_candidates_skip_submodules():
    model = nn.Sequential(nn.Linear(3, 3))
    namespace = {"model": model, "first": model[0]}
    evaluate(EXPRESSIONS.install, namespace)
    candidates = evaluate(EXPRESSIONS.find_candidates, namespace)
    assert [m["expression"] for m in candidates["models"]] == ["model"]


def test_snapshot_reports_unregistered_modules_and_tensors():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = [nn.Linear(4, 4)]
            self.scale = torch.ones(4, requires_grad=True)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.blocks[0](x) * self.scale)

    namespace = trained(Net(), inputs=4)
    parameters = by_name(take_snapshot(namespace))
    assert parameters["blocks[0].weight"]["registered"] is False
    assert parameters["blocks[0].weight"]["group"] is None
    assert parameters["scale"]["registered"] is False
    assert parameters["scale"]["hasGrad"] is True
    assert parameters["head.weight"]["registered"] is True


# The probe changes nothing.


def _state_bytes(model, optimizer):
    tensors = [p.detach().clone() for p in model.parameters()]
    tensors += [p.grad.clone() for p in model.parameters() if p.grad is not None]
    tensors += [b.clone() for b in model.buffers()]
    for state in optimizer.state.values():
        tensors += [value.clone() for value in state.values() if isinstance(value, torch.Tensor)]
    flags = [(p.requires_grad, p.grad is None) for p in model.parameters()]
    modes = [(m.training, len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    return tensors, flags, modes, torch.get_rng_state(), random.getstate(), torch.is_grad_enabled()


def _assert_same_state(before, after):
    tensors_before, *rest_before = before
    tensors_after, *rest_after = after
    assert len(tensors_before) == len(tensors_after)
    for old, new in zip(tensors_before, tensors_after):
        assert torch.equal(_bits(old), _bits(new))
    assert rest_before[:2] == rest_after[:2]
    assert torch.equal(rest_before[2], rest_after[2])
    assert rest_before[3:] == rest_after[3:]


def _bits(tensor):
    """The raw bytes of a tensor, so that NaN equals NaN and -0.0 differs from 0.0."""
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8)


def _training_run(snapshot_each_step: bool):
    torch.manual_seed(1)
    random.seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    model[0].weight.register_hook(lambda grad: grad)  # a user hook the probe must leave alone
    sgd = torch.optim.SGD(model[0].parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    adam = torch.optim.Adam(list(model[1].parameters()) + list(model[4].parameters()), lr=1e-3)
    namespace = {"model": model, "sgd": sgd, "adam": adam}
    for _ in range(4):
        sgd.zero_grad()
        adam.zero_grad()
        model(torch.randn(32, 8)).pow(2).mean().backward()
        if snapshot_each_step:
            before = _state_bytes(model, adam)
            sgd_before = _state_bytes(model, sgd)
            snapshot = take_snapshot(namespace)
            assert "error" not in snapshot
            assert len(snapshot["optimizers"]) == 2
            _assert_same_state(before, _state_bytes(model, adam))
            _assert_same_state(sgd_before, _state_bytes(model, sgd))
        sgd.step()
        adam.step()
        random.random()
    return [p.detach().clone() for p in model.parameters()] + [b.clone() for b in model.buffers()]


def test_snapshot_changes_nothing_during_training():
    plain = _training_run(snapshot_each_step=False)
    probed = _training_run(snapshot_each_step=True)
    for old, new in zip(plain, probed):
        assert torch.equal(_bits(old), _bits(new))


def test_snapshot_keeps_eval_mode_and_grad_mode():
    model = nn.Sequential(nn.Linear(8, 4), nn.Dropout())
    namespace = trained(model)
    model.eval()
    with torch.no_grad():
        take_snapshot(namespace)
        assert torch.is_grad_enabled() is False
    assert torch.is_grad_enabled() is True
    assert not any(m.training for m in model.modules())


# Bad input.


def test_snapshot_not_a_module():
    namespace = {"x": torch.ones(3)}
    assert take_snapshot(namespace, "x")["error"]["code"] == "not-a-module"


def test_snapshot_no_model():
    assert take_snapshot({}, "None")["error"]["code"] == "no-model"


def test_candidates_no_model():
    namespace = {"x": 1}
    evaluate(EXPRESSIONS.install, namespace)
    assert evaluate(EXPRESSIONS.find_candidates, namespace) == {"models": [], "optimizers": []}


def test_snapshot_expression_failed():
    error = take_snapshot({}, "undefined_model")["error"]
    assert error["code"] == "expression-failed"
    assert "undefined_model" in error["message"]


def test_snapshot_not_an_optimizer():
    namespace = {"model": nn.Linear(2, 2)}
    assert take_snapshot(namespace, "model", "model")["error"]["code"] == "not-an-optimizer"


def test_read_chunk_unknown_token():
    evaluate(EXPRESSIONS.install, {})
    result = json.loads(eval(format_read_chunk(EXPRESSIONS.read_chunk, "missing", 0), {}))
    assert result["error"]["code"] == "unknown-token"


def test_torch_not_importable():
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None\n"
        "from gradsight.runtime.expressions import probe_expressions, format_snapshot\n"
        "e = probe_expressions()\n"
        "ns = {}\n"
        "print(eval(e.install, ns))\n"
        "print(eval(e.find_candidates, ns))\n"
        "print(eval(format_snapshot(e.snapshot, 'object()', None), ns))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    install, candidates, snapshot = (json.loads(line) for line in output.stdout.splitlines())
    assert install["probe"]["torch"] is None
    assert candidates["error"]["code"] == "torch-missing"
    assert snapshot["error"]["code"] == "torch-missing"
    assert "interpreter" in snapshot["error"]["message"]


def test_meta_device_reports_shapes_only():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(1000, 1000), nn.Linear(1000, 10))
    snapshot = take_snapshot({"model": model})
    weight = by_name(snapshot)["0.weight"]
    assert weight["shape"] == [1000, 1000]
    assert weight["device"] == "meta"
    assert weight["weightNorm"] is None
    assert snapshot["model"]["meta"] is True
    assert any("meta device" in note for note in snapshot["notes"])


def test_nan_weights_counted():
    model = nn.Linear(4, 2)
    namespace = trained(model, inputs=4)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
        model.weight[1, 1] = float("inf")
    weight = by_name(take_snapshot(namespace))["weight"]
    assert weight["weightNan"] == 1
    assert weight["weightInf"] == 1
    assert weight["weightNorm"] == "nan"


def test_sparse_gradients():
    embedding = nn.Embedding(100, 8, sparse=True)
    optimizer = torch.optim.SGD(embedding.parameters(), lr=0.1)
    embedding(torch.tensor([1, 2, 2, 5])).sum().backward()
    weight = by_name(take_snapshot({"model": embedding, "optimizer": optimizer}))["weight"]
    dense = embedding.weight.grad.to_dense()
    assert weight["gradSparse"] is True
    assert math.isclose(weight["gradNorm"], dense.norm().item(), rel_tol=1e-6)
    assert math.isclose(weight["gradMaxAbs"], dense.abs().max().item(), rel_tol=1e-6)


def test_complex_gradients():
    class Spectral(nn.Module):
        def __init__(self):
            super().__init__()
            self.filter = nn.Parameter(torch.randn(16, dtype=torch.complex64))

        def forward(self, x):
            return (torch.fft.fft(x) * self.filter).abs().pow(2).mean()

    model = Spectral()
    model(torch.randn(4, 16)).backward()
    parameter = by_name(take_snapshot({"model": model}))["filter"]
    assert parameter["dtype"] == "complex64"
    assert math.isclose(parameter["gradNorm"], torch.linalg.vector_norm(model.filter.grad).item(), rel_tol=1e-5)
    assert math.isclose(parameter["gradMaxAbs"], model.filter.grad.abs().max().item(), rel_tol=1e-5)


def test_half_precision_norm_does_not_overflow():
    model = nn.Linear(4, 4).half()
    with torch.no_grad():
        model.weight.fill_(60000)
    weight = by_name(take_snapshot({"model": model}))["weight"]
    assert math.isclose(weight["weightNorm"], 240000, rel_tol=1e-3)
    assert weight["weightInf"] == 0


def test_ten_thousand_tensors_fast_and_chunked():
    model = nn.ParameterList([nn.Parameter(torch.randn(4)) for _ in range(10_000)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.stack(list(model)).pow(2).sum().backward()
    namespace = {"model": model, "optimizer": optimizer}
    evaluate(EXPRESSIONS.install, namespace)

    started = time.perf_counter()
    first = json.loads(eval(format_snapshot(EXPRESSIONS.snapshot, "model", None), namespace))
    elapsed = time.perf_counter() - started
    assert first["chunked"]["count"] > 1
    snapshot = evaluate(format_snapshot(EXPRESSIONS.snapshot, "model", None), namespace)
    assert len(snapshot["parameters"]) == 10_000
    assert snapshot["parameters"][9_999]["group"] == [0, 0]
    # About 0.5 s on the 2-core development machine; the bound leaves room for a slower CI run.
    assert elapsed < 10


def test_distributed_rank_never_runs_collectives(monkeypatch):
    import torch.distributed as dist

    from debugpy_client import free_port

    store = dist.TCPStore("127.0.0.1", free_port(), 1, is_master=True, timeout=__import__("datetime").timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        for collective in ("all_reduce", "all_gather", "broadcast", "barrier", "reduce_scatter", "all_gather_object"):
            monkeypatch.setattr(dist, collective, _forbidden(collective))

        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor

        mesh = init_device_mesh("cpu", (1,))
        model = nn.Linear(4, 4)
        model.weight = nn.Parameter(distribute_tensor(model.weight.detach(), mesh, [Shard(0)]))
        snapshot = take_snapshot({"model": model})
        assert "error" not in snapshot, snapshot
        assert snapshot["distributed"] == {"rank": 0, "worldSize": 1, "backend": "gloo"}
        assert any("rank 0 of 1" in note for note in snapshot["notes"])
        assert by_name(snapshot)["weight"]["local"] is True
        assert by_name(snapshot)["bias"]["local"] is False
    finally:
        dist.destroy_process_group()


def _forbidden(name):
    def collective(*args, **kwargs):
        raise AssertionError(f"the probe ran the collective {name}")

    return collective
