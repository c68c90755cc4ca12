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


def cleared_before_step_snapshots(optimizer_class, **options):
    """Snapshots after backward() of a loop that calls zero_grad() between backward() and step()."""
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = optimizer_class(model.parameters(), **options)
    backward(model)
    first = snapshot_of(model, optimizer)
    for _ in range(3):
        optimizer.zero_grad()
        optimizer.step()  # .grad is None, so the optimizer skips every parameter
        backward(model)
    return first, snapshot_of(model, optimizer)


def test_unchanged_with_adam_after_cleared_gradients():
    first, second = cleared_before_step_snapshots(torch.optim.Adam, lr=1e-3)
    report = classify(second, first, optimizer_steps=3)
    assert statuses(report) == {"": "unchanged"}
    assert codes(report) == {("", "GS908", "error")}
    assert "cleared before step()" in report.findings[0].message


def test_unchanged_with_momentum_after_cleared_gradients():
    first, second = cleared_before_step_snapshots(torch.optim.SGD, lr=0.01, momentum=0.9)
    assert statuses(classify(second, first)) == {"": "unchanged"}


def test_not_unchanged_when_no_step_counted():
    first, second = cleared_before_step_snapshots(torch.optim.Adam, lr=1e-3)
    assert statuses(classify(second, first, optimizer_steps=0)) == {"": "ok"}


def test_not_unchanged_with_zero_lr_after_cleared_gradients():
    first, second = cleared_before_step_snapshots(torch.optim.Adam, lr=0.0)
    assert statuses(classify(second, first)) == {"": "zero-lr"}


def test_not_unchanged_with_tiny_update_after_cleared_gradients():
    first, second = cleared_before_step_snapshots(torch.optim.Adam, lr=1e-12)
    assert statuses(classify(second, first)) == {"": "tiny-update"}


def test_not_unchanged_when_frozen_or_outside_optimizer():
    torch.manual_seed(0)
    model = TwoPaths()
    model.second.requires_grad_(False)
    optimizer = torch.optim.Adam(model.first.parameters(), lr=1e-3)
    backward(model)
    first = snapshot_of(model, optimizer)
    for _ in range(3):
        optimizer.zero_grad()
        backward(model)
        optimizer.step()
    report = classify(snapshot_of(model, optimizer), first, optimizer_steps=3)
    assert statuses(report) == {"first": "ok", "second": "frozen"}


def test_adam_training_after_scaler_skip_not_unchanged():
    """A step skipped by a GradScaler after non-finite gradients leaves Adam without state."""
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    backward(model, scale=float("inf"))
    first = snapshot_of(model, optimizer)
    optimizer.zero_grad()  # the scaler found inf and skipped optimizer.step()
    backward(model)
    assert statuses(classify(snapshot_of(model, optimizer), first)) == {"": "ok"}


def ranking_scorer_snapshot():
    torch.manual_seed(0)
    scorer = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(scorer.parameters(), lr=1e-3)
    ranking_loss = nn.MarginRankingLoss(margin=0.5)
    for _ in range(3):
        better, worse = torch.randn(64, 10) + 0.5, torch.randn(64, 10)
        optimizer.zero_grad()
        ranking_loss(scorer(better).squeeze(1), scorer(worse).squeeze(1), torch.ones(64)).backward()
        optimizer.step()
    assert scorer[2].bias.grad.abs().max().item() == 0.0
    return snapshot_of(scorer, optimizer)


def test_shift_invariant_bias_not_zero_grad():
    report = classify(ranking_scorer_snapshot())
    assert statuses(report) == {"0": "ok", "2": "ok"}
    assert report.findings == []
    assert any("`2.bias`" in note and "does not depend on this bias" in note for note in report.notes)


def test_siamese_distance_bias_not_zero_grad():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 8))
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.01, momentum=0.9)
    a, b = torch.randn(16, 20), torch.randn(16, 20)
    nn.functional.pairwise_distance(encoder(a), encoder(b)).pow(2).mean().backward()
    report = classify(snapshot_of(encoder, optimizer))
    assert report.findings == []


def test_zero_multiplier_bias_still_zero_grad():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    (model(torch.randn(32, 8)) * 0.0).sum().backward()  # a zero multiplier: no signal at all
    report = classify(snapshot_of(model, optimizer))
    assert statuses(report)["2"] == "zero-grad"
    assert not any("does not depend on this bias" in note for note in report.notes)


class EmaPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.online = nn.Linear(8, 8)
        self.target = nn.Linear(8, 8).requires_grad_(False)

    def forward(self, x):
        return (self.online(x) - self.target(x)).pow(2).mean()


def test_ema_target_outside_optimizer_not_frozen_but_changing():
    torch.manual_seed(0)
    model = EmaPair()
    optimizer = torch.optim.Adam(model.online.parameters(), lr=1e-3)
    model(torch.randn(16, 8)).backward()
    first = snapshot_of(model, optimizer)
    optimizer.step()
    with torch.no_grad():
        for target, online in zip(model.target.parameters(), model.online.parameters()):
            target.lerp_(online, 0.01)
    optimizer.zero_grad()
    model(torch.randn(16, 8)).backward()
    report = classify(snapshot_of(model, optimizer), first)
    assert statuses(report) == {"online": "ok", "target": "frozen"}
    assert {code for _, code, _ in codes(report)} == {"GS920"}
    assert "EMA or target-network update" in report.findings[0].message


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 16))
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(x + self.cls_token).pow(2).mean()


def test_zero_initialized_parameter_not_exploding():
    torch.manual_seed(0)
    model = TokenNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    for _ in range(2):
        optimizer.zero_grad()
        (10 * model(torch.randn(4, 5, 16))).backward()
        optimizer.step()
    (10 * model(torch.randn(4, 5, 16))).backward()
    snapshot = snapshot_of(model, optimizer)
    own = next(p for p in snapshot["parameters"] if p["name"] == "cls_token")
    assert own["gradNorm"] > 100 * own["weightNorm"]
    assert statuses(classify(snapshot)) == {"": "ok", "head": "ok"}


def test_exploding_growth_kept_for_small_weights():
    torch.manual_seed(0)
    model = TokenNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with torch.no_grad():
        model.cls_token.fill_(1e-5)
    model(torch.randn(4, 5, 16)).backward()
    first = snapshot_of(model, optimizer)
    optimizer.step()
    optimizer.zero_grad()
    (model(torch.randn(4, 5, 16)) * 1e6).backward()
    assert statuses(classify(snapshot_of(model, optimizer), first))[""] == "exploding"


def test_notes_name_model_and_fit_front_end():
    model = nn.Sequential(nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.eval()
    snapshot = probe.snapshot(model, [optimizer], {"target_net": model})
    for front_end in ("debugger", "run", "api"):
        notes = classify(snapshot, front_end=front_end).notes
        assert all("`target_net` (Sequential)" in note for note in notes), notes
        assert not any("this pause" in note for note in notes)
    assert any("Pause on the line after loss.backward()" in note for note in classify(snapshot).notes)
    for front_end in ("run", "api"):
        assert not any("Pause" in note for note in classify(snapshot, front_end=front_end).notes)
