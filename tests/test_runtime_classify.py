"""Layer statuses and findings of the runtime classification, on snapshots of real training steps."""

from __future__ import annotations

import torch
import torch.nn as nn

from gradsight.runtime import probe
from gradsight.runtime.classify import STATUSES, classify


def snapshot_of(model, *optimizers):
    return probe.snapshot(model, list(optimizers) if optimizers else None, {})


def statuses(report):
    return {layer.name: layer.status for layer in report.layers}


def codes(report):
    return {(finding.layer, finding.code, finding.severity) for finding in report.findings}


def backward(model, inputs=8, scale=1.0):
    (model(torch.randn(32, inputs)).pow(2).mean() * scale).backward()


class TwoPaths(nn.Module):
    """Two branches summed; `weak` scales the second branch's output before the sum."""

    def __init__(self, weak: float = 1.0, skip_second: bool = False):
        super().__init__()
        self.first = nn.Linear(8, 1)
        self.second = nn.Linear(8, 1)
        self.weak = weak
        self.skip_second = skip_second

    def forward(self, x):
        out = self.first(x)
        return out if self.skip_second else out + self.weak * self.second(x)


def test_statuses_order_worst_first():
    assert STATUSES[0] == "non-finite"
    assert STATUSES[-1] == "ok"


def test_healthy_model_ok():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert set(statuses(report).values()) == {"ok"}
    assert report.findings == []


def test_zero_lr():
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"": "zero-lr"}
    assert codes(report) == {("", "GS907", "error")}


def test_not_in_optimizer():
    model = TwoPaths()
    optimizer = torch.optim.SGD(model.first.parameters(), lr=0.01)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"first": "ok", "second": "not-in-optimizer"}
    assert ("second", "GS901", "error") in codes(report)


def test_no_grad_when_loss_skips_layer():
    model = TwoPaths(skip_second=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report)["second"] == "no-grad"
    assert ("second", "GS902", "warning") in codes(report)


def test_no_gradient_anywhere_gives_note_not_warning():
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    report = classify(snapshot_of(model, optimizer))
    assert report.findings == []
    assert any("backward() has not run yet" in note for note in report.notes)


def test_zero_grad():
    model = TwoPaths(weak=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report)["second"] == "zero-grad"
    assert ("second", "GS903", "warning") in codes(report)


def test_vanishing():
    torch.manual_seed(0)
    model = TwoPaths(weak=1e-9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"first": "ok", "second": "vanishing"}
    assert ("second", "GS904", "warning") in codes(report)


def test_bias_before_batchnorm_not_vanishing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    backward(model)
    snapshot = snapshot_of(model, optimizer)
    bias = next(p for p in snapshot["parameters"] if p["name"] == "0.bias")
    assert bias["gradNorm"] < 1e-5 * bias["weightNorm"]
    report = classify(snapshot)
    assert set(statuses(report).values()) == {"ok"}


def test_exploding():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model, scale=1e6)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"": "exploding"}
    assert codes(report) == {("", "GS905", "warning")}


def test_exploding_growth_between_checks():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model, scale=1e-3)
    first = snapshot_of(model, optimizer)
    backward(model, scale=10)  # accumulated into the same .grad: no step in between
    second = snapshot_of(model, optimizer)
    assert statuses(classify(second)) == {"": "ok"}
    assert statuses(classify(second, first)) == {"": "exploding"}


def test_non_finite():
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"": "non-finite"}
    assert codes(report) == {("", "GS906", "error")}


def test_tiny_update():
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"": "tiny-update"}
    assert codes(report) == {("", "GS909", "warning")}


def test_frozen():
    model = TwoPaths()
    model.second.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    backward(model)
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report) == {"first": "ok", "second": "frozen"}
    assert codes(report) == {("second", "GS920", "information")}


def test_partly_frozen_layer_ok():
    model = TwoPaths()
    model.second.weight.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    assert statuses(classify(snapshot_of(model, optimizer)))["second"] == "ok"


def test_frozen_but_changing_with_stale_gradient():
    torch.manual_seed(0)
    model = TwoPaths()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    backward(model)
    optimizer.step()
    model.second.requires_grad_(False)  # frozen, but the old .grad stays and SGD keeps using it
    backward(model)
    first = snapshot_of(model, optimizer)
    optimizer.step()
    second = snapshot_of(model, optimizer)
    report = classify(second, first)
    assert statuses(report)["second"] == "frozen-but-changing"
    assert ("second", "GS910", "warning") in codes(report)


def test_unchanged_when_adam_step_has_no_effect():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    backward(model)
    optimizer.step()
    backward(model)
    first = snapshot_of(model, optimizer)
    saved = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    with torch.no_grad():  # the update is undone, as a stale "restore best weights" would do
        for parameter, value in zip(model.parameters(), saved):
            parameter.copy_(value)
    backward(model)
    report = classify(snapshot_of(model, optimizer), first)
    assert statuses(report) == {"": "unchanged"}
    assert codes(report) == {("", "GS908", "error")}


def test_not_unchanged_without_optimizer_step():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    backward(model)
    optimizer.step()
    backward(model)
    first = snapshot_of(model, optimizer)
    backward(model)  # gradient accumulation: a new backward pass, no step
    assert statuses(classify(snapshot_of(model, optimizer), first)) == {"": "ok"}


def test_no_optimizer_found_note():
    model = nn.Linear(8, 1)
    backward(model)
    report = classify(snapshot_of(model))
    assert statuses(report) == {"": "ok"}
    assert any("No optimizer" in note for note in report.notes)


def test_layer_tooltip_and_norms():
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    backward(model)
    layer = classify(snapshot_of(model, optimizer)).layers[0].to_json()
    expected_norm = torch.sqrt(model.weight.grad.norm() ** 2 + model.bias.grad.norm() ** 2).item()
    assert abs(layer["gradNorm"] - expected_norm) < 1e-6
    assert layer["lr"] == 0.1
    assert "learning rate 0.1" in layer["tooltip"]
    assert [p["name"] for p in layer["parameters"]] == ["weight", "bias"]


def test_unchanged_with_stateless_sgd_after_cleared_gradients():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    backward(model)
    first = snapshot_of(model, optimizer)
    optimizer.zero_grad()  # cleared between backward() and step(): the step has nothing to apply
    optimizer.step()
    backward(model)
    report = classify(snapshot_of(model, optimizer), first)
    assert statuses(report) == {"": "unchanged"}


def test_not_unchanged_with_stateless_sgd_accumulating():
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    backward(model)
    first = snapshot_of(model, optimizer)
    backward(model)  # accumulation step: the optimizer steps every few backward passes
    assert statuses(classify(snapshot_of(model, optimizer), first)) == {"": "ok"}


def test_eval_mode_note():
    model = nn.Sequential(nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    backward(model)
    model.eval()
    report = classify(snapshot_of(model, optimizer))
    assert any("eval mode" in note for note in report.notes)


def test_root_parameters_message_names_model():
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    backward(model)
    finding = classify(snapshot_of(model, optimizer)).findings[0]
    assert finding.layer == ""
    assert finding.message.startswith("the model's own parameters (Linear): weight is in a parameter group")
