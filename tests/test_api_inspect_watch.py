"""The Python API, `gradsight.inspect` and `gradsight.watch`, on real training steps."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import gradsight


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_1 = nn.Linear(10, 32)
        self.layer_2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.layer_2(torch.relu(self.layer_1(x)))


def train_steps(model, optimizer, steps, clear_before_step=False):
    for _ in range(steps):
        x, y = torch.randn(16, 10), torch.randint(0, 3, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if clear_before_step:
            optimizer.zero_grad()
        optimizer.step()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Net()


def test_import_does_not_load_torch():
    code = "import sys, gradsight; print('torch' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "False"


def test_inspect_healthy_model(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    train_steps(model, optimizer, 1)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    report = gradsight.inspect(model, optimizer)
    assert not report.has_problems
    assert [layer["status"] for layer in report.to_dict()["models"][0]["layers"]] == ["ok", "ok"]


def test_inspect_text_is_table(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    text = str(gradsight.inspect(model, optimizer))
    assert any(line.split()[:3] == ["layer_1", "Linear", "tiny-update"] for line in text.splitlines())
    assert "GS909 warning" in text


def test_inspect_finds_layer_not_in_optimizer(model):
    optimizer = torch.optim.SGD(model.layer_2.parameters(), lr=0.05)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    findings = gradsight.inspect(model, optimizer).to_dict()["findings"]
    assert [(f["code"], f["layer"]) for f in findings] == [("GS901", "layer_1")]
    assert findings[0]["path"] == __file__
    assert findings[0]["line"] == 19


def test_inspect_twice_finds_unchanged(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    train_steps(model, optimizer, 1, clear_before_step=True)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    first = gradsight.inspect(model, optimizer)
    optimizer.zero_grad()
    optimizer.step()
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    second = gradsight.inspect(model, optimizer)
    assert not first.has_problems
    assert {f["code"] for f in second.findings} == {"GS908"}


def test_watch_logs_new_findings_once(model, caplog):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-10)
    handle = gradsight.watch(model, optimizer, every=3)
    with caplog.at_level(logging.INFO, logger="gradsight"):
        train_steps(model, optimizer, 9)
    handle.remove()
    assert handle.checks == 3
    messages = [record.getMessage() for record in caplog.records if record.name == "gradsight"]
    tiny = [message for message in messages if "GS909" in message]
    assert len(tiny) == 2  # layer_1 and layer_2, each logged when first found
    assert all(record.levelno == logging.WARNING for record in caplog.records if "GS909" in record.getMessage())
    assert handle.report is not None and handle.report.has_problems


def test_watch_quiet_on_healthy_training(model, caplog):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    handle = gradsight.watch(model, optimizer, every=2)
    with caplog.at_level(logging.INFO, logger="gradsight"):
        train_steps(model, optimizer, 6)
    handle.remove()
    assert handle.checks == 3
    assert [record for record in caplog.records if record.name == "gradsight"] == []


def test_watch_remove_stops_checks(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    handle = gradsight.watch(model, optimizer, every=1)
    train_steps(model, optimizer, 2)
    handle.remove()
    train_steps(model, optimizer, 2)
    assert handle.checks == 2


def test_watch_rejects_bad_every(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="every must be a positive"):
        gradsight.watch(model, optimizer, every=0)


class ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_1 = nn.Linear(10, 32)
        self.act = nn.ReLU()
        self.layer_2 = nn.Linear(32, 3)

    def forward(self, x):
        return self.layer_2(self.act(self.layer_1(x)))


def test_watch_logs_dead_relu(caplog):
    torch.manual_seed(0)
    model = ReluNet()
    nn.init.constant_(model.layer_1.bias, -20.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    handle = gradsight.watch(model, optimizer, every=30)
    with caplog.at_level(logging.INFO, logger="gradsight"):
        train_steps(model, optimizer, 30)
    handle.remove()
    [finding] = [f for f in handle.report.findings if f["code"] == "GS911"]
    assert finding["layer"] == "act"
    assert finding["line"] == ReluNet.__init__.__code__.co_firstlineno + 3
    # Only the every // 10 = 3 steps before the check are counted: 3 batches of 16 inputs.
    assert "32 of 32 units output 0 for all 48 inputs seen" in finding["message"]
    messages = [record.getMessage() for record in caplog.records if "GS911" in record.getMessage()]
    assert len(messages) == 1


def test_watch_quiet_on_healthy_relu(caplog):
    torch.manual_seed(0)
    model = ReluNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    handle = gradsight.watch(model, optimizer, every=3)
    with caplog.at_level(logging.INFO, logger="gradsight"):
        train_steps(model, optimizer, 9)
    handle.remove()
    assert handle.checks == 3
    assert [record for record in caplog.records if record.name == "gradsight"] == []


def test_watch_hooks_activations_before_checks_only():
    torch.manual_seed(0)
    model = ReluNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    handle = gradsight.watch(model, optimizer, every=20)
    hooked = []
    for _ in range(40):
        hooked.append(bool(model.act._forward_hooks))
        train_steps(model, optimizer, 1)
    handle.remove()
    # With every=20 the forward passes of the last 2 steps before each check run the hook.
    assert hooked == ([False] * 18 + [True] * 2) * 2
    assert not model.act._forward_hooks


@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.Adam, {"lr": 1e-3}),
    (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
    (torch.optim.SGD, {"lr": 0.01}),
])
def test_watch_finds_gradients_cleared_before_step(model, caplog, optimizer_class, options):
    optimizer = optimizer_class(model.parameters(), **options)
    handle = gradsight.watch(model, optimizer, every=5)
    with caplog.at_level(logging.INFO, logger="gradsight"):
        train_steps(model, optimizer, 10, clear_before_step=True)
    handle.remove()
    messages = [record.getMessage() for record in caplog.records if "GS908" in record.getMessage()]
    assert len(messages) == 2  # layer_1 and layer_2, at the second check
    assert all("cleared before step()" in message for message in messages)


def test_inspect_twice_finds_adam_cleared_before_step(model):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    first = gradsight.inspect(model, optimizer)
    optimizer.zero_grad()
    optimizer.step()
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    second = gradsight.inspect(model, optimizer)
    assert not first.has_problems
    assert {f["code"] for f in second.findings} == {"GS908"}


def test_inspect_twice_quiet_on_adam_training(model):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    gradsight.inspect(model, optimizer)
    optimizer.step()
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    assert gradsight.inspect(model, optimizer).findings == []


def test_inspect_header_says_what_it_compared(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    nn.functional.cross_entropy(model(torch.randn(16, 10)), torch.randint(0, 3, (16,))).backward()
    first = str(gradsight.inspect(model, optimizer)).splitlines()[0]
    second = str(gradsight.inspect(model, optimizer)).splitlines()[0]
    assert first.endswith("; checked once")
    assert second.endswith("; compared with the previous check of this model")


def test_watch_header_names_compared_steps(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    handle = gradsight.watch(model, optimizer, every=3)
    train_steps(model, optimizer, 6)
    handle.remove()
    assert str(handle.report).splitlines()[0].endswith("; compared after 3 and after 6 optimizer steps")


def test_inspect_note_fits_api(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.eval()
    notes = gradsight.inspect(model, optimizer).to_dict()["notes"]
    assert any("Call gradsight.inspect after loss.backward()" in note for note in notes)
    assert any("is in eval mode" in note for note in notes)
    assert not any("pause" in note.lower() for note in notes)


class TokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_1 = nn.Linear(16, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 16))

    def forward(self, x):
        return self.layer_1(x + self.cls_token)


def test_own_parameter_finding_has_line():
    model = TokenNet()
    optimizer = torch.optim.SGD(model.layer_1.parameters(), lr=0.05)
    model(torch.randn(4, 16)).pow(2).mean().backward()
    findings = gradsight.inspect(model, optimizer).to_dict()["findings"]
    assert [(f["code"], f["layer"]) for f in findings] == [("GS901", "")]
    assert findings[0]["path"] == __file__
    assert findings[0]["line"] == TokenNet.__init__.__code__.co_firstlineno + 3
