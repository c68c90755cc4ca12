"""GS501 double-activation and GS503 loss-tensor-accumulated."""

import pytest

from conftest import codes_of, findings_of
from gradsight.static import check_source
from test_rule_graph import fix_all, fixed

PRELUDE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
"""


def codes(source, minimum="warning"):
    """Return the GS5 codes reported on `source` at `minimum` severity or worse."""
    return codes_of(PRELUDE + source, minimum=minimum, select=["GS5"])


# GS501 double-activation


def test_softmax_into_cross_entropy_is_warning(cases_dir):
    result = check_source((cases_dir / "static" / "graph_breaks.py").read_text())
    (finding,) = [f for f in result.findings if f.code == "GS501"]
    assert (finding.span.line, finding.severity.label) == (19, "warning")
    assert "F.softmax(logits, dim=1)" in finding.message
    assert finding.related[0].span.line == 18


@pytest.mark.parametrize(
    "loss",
    [
        "F.cross_entropy(F.softmax(out, dim=1), y)",
        "F.cross_entropy(torch.softmax(out, -1), y)",
        "nn.CrossEntropyLoss()(out.softmax(dim=1), y)",
        "F.nll_loss(F.softmax(out, dim=1), y)",
        "F.binary_cross_entropy_with_logits(torch.sigmoid(out), y)",
        "nn.BCEWithLogitsLoss()(out.sigmoid().squeeze(1), y)",
        "F.cross_entropy(torch.log(F.softmax(out, dim=1) + 1e-8), y)",
    ],
)
def test_double_activation_variants(loss):
    source = f"""
model = nn.Linear(4, 3)
for x, y in loader:
    out = model(x)
    loss = {loss}
    loss.backward()
"""
    assert codes(source, minimum="information") == ["GS501"]


def test_log_softmax_into_cross_entropy_is_information():
    source = """
out = nn.Linear(4, 3)(x)
loss = F.cross_entropy(F.log_softmax(out, dim=1), y)
"""
    (finding,) = findings_of(PRELUDE + source)
    assert (finding.code, finding.severity.label) == ("GS501", "information")
    assert "same values" in finding.message


def test_double_activation_through_forward():
    source = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return torch.sigmoid(self.fc(x)).squeeze(-1)

model = Net()
criterion = nn.BCEWithLogitsLoss()
loss = criterion(model(x), y)
"""
    (finding,) = findings_of(PRELUDE + source)
    assert finding.code == "GS501"
    assert finding.span.line == 16
    assert finding.related[0].span.line == 12


def test_double_activation_through_final_sequential_layer():
    source = """
class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=1))

    def forward(self, x):
        return self.layers(x)

criterion = nn.CrossEntropyLoss()
model = Classifier().to("cuda")
loss = criterion(model(x), y)
"""
    assert codes(source) == ["GS501"]


@pytest.mark.parametrize(
    "loss",
    [
        "F.nll_loss(F.log_softmax(out, dim=1), y)",
        "F.binary_cross_entropy(torch.sigmoid(out), y)",
        "nn.BCELoss()(out.sigmoid(), y)",
        "F.cross_entropy(out, y)",
        "F.cross_entropy(out / 0.07, y)",
        "F.kl_div(F.log_softmax(out, 1), F.softmax(teacher, 1), reduction='batchmean')",
    ],
)
def test_double_activation_quiet_on_matching_pairs(loss):
    source = f"""
out = nn.Linear(4, 3)(x)
loss = {loss}
"""
    assert codes(source, minimum="information") == []


def test_double_activation_quiet_on_training_logits():
    source = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        logits = self.fc(x)
        if self.training:
            return logits
        return logits.softmax(dim=-1)

loss = F.cross_entropy(Net()(x), y)
"""
    assert codes(source) == []


def test_double_activation_fix_removes_softmax_at_single_use(cases_dir):
    source = (cases_dir / "static" / "graph_breaks.py").read_text()
    fix, result = fixed(source, "GS501")
    assert fix.safe
    assert "    probs = logits\n" in result
    assert "GS501" not in [f.code for f in check_source(result).findings]


def test_double_activation_fix_inside_the_loss_call():
    source = PRELUDE + "out = nn.Linear(4, 3)(x)\nloss = F.cross_entropy(F.softmax(out, dim=1), y)\n"
    fix, result = fixed(source, "GS501")
    assert fix.safe
    assert result.endswith("loss = F.cross_entropy(out, y)\n")


def test_double_activation_no_fix_on_reused_probabilities():
    source = PRELUDE + "out = nn.Linear(4, 3)(x)\nprobs = F.softmax(out, dim=1)\nloss = F.cross_entropy(probs, y)\nprint(probs.max())\n"
    (finding,) = findings_of(source)
    assert finding.fix is None


def test_double_activation_fix_drops_final_sequential_layer_unsafely():
    source = PRELUDE + """
model = nn.Sequential(
    nn.Linear(8, 3),
    nn.Softmax(dim=1),
)
loss = nn.CrossEntropyLoss()(model(x), y)
"""
    fix, result = fixed(source, "GS501")
    assert not fix.safe
    assert "nn.Softmax" not in result
    assert "nn.Linear(8, 3),\n)" in result
    assert "GS501" not in [f.code for f in check_source(result).findings]


# GS503 loss-tensor-accumulated


def test_loss_tensor_added_to_running_total_is_warning():
    source = PRELUDE + """
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(10):
    epoch_loss = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        epoch_loss += loss
    print(epoch_loss / len(loader))
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.span.line, finding.severity.label) == ("GS503", 15, "warning")
    assert "epoch_loss += loss.item()" in finding.message


@pytest.mark.parametrize("statement", ["total = total + loss * x.size(0)", "total += criterion(model(x), y)"])
def test_loss_tensor_accumulated_variants(statement):
    source = f"""
model = nn.Linear(4, 1)
criterion = nn.MSELoss()
total = 0
for x, y in loader:
    loss = criterion(model(x), y)
    {statement}
print(total)
"""
    assert codes(source) == ["GS503"]


@pytest.mark.parametrize(
    "statement",
    [
        "total += loss.item()",
        "total += loss.detach()",
        "total += float(loss)",
        "total += loss.detach().cpu().item() * x.size(0)",
    ],
)
def test_loss_tensor_accumulated_quiet_on_values(statement):
    source = f"""
model = nn.Linear(4, 1)
total = 0
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    loss.backward()
    {statement}
"""
    assert codes(source) == []


def test_loss_tensor_accumulated_quiet_when_total_is_backpropagated():
    source = """
model = nn.GRUCell(4, 4)
for sequence, targets in loader:
    h = torch.zeros(1, 4)
    loss = 0
    for x, y in zip(sequence, targets):
        h = model(x, h)
        loss += F.mse_loss(h, y)
    loss.backward()
"""
    assert codes(source) == []


def test_loss_tensor_accumulated_quiet_no_grad_or_returned():
    source = """
def evaluate(model, loader):
    total = 0
    with torch.no_grad():
        for x, y in loader:
            total += F.mse_loss(model(x), y)
    return total

def accumulate(model, chunks):
    total = 0
    for x, y in chunks:
        total += F.mse_loss(model(x), y)
    return total
"""
    assert codes(source) == []


@pytest.mark.parametrize(
    "setup, statement",
    [
        ("stats = {'loss': 0.0}", "stats['loss'] += loss"),
        ("stats = {'loss': 0.0}", "stats['loss'] = stats['loss'] + loss"),
        ("from types import SimpleNamespace\nstats = SimpleNamespace(loss=0.0)", "stats.loss += loss"),
        ("from collections import defaultdict\nhistory = defaultdict(float)", "history[epoch] += loss"),
        ("from collections import defaultdict\nhistory = defaultdict(float)", "history[phase] += criterion(model(x), y)"),
    ],
)
def test_loss_added_to_entry_or_attribute(setup, statement):
    source = f"""
{setup}
model = nn.Linear(4, 1)
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
phase = "train"
for epoch in range(10):
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        {statement}
"""
    (finding,) = findings_of(PRELUDE + source)
    assert finding.code == "GS503"
    assert finding.span.line == (PRELUDE + source).count("\n")


def test_loss_added_to_self_entry():
    source = """
class Trainer:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.running = {"loss": 0.0}

    def fit(self, model, loader):
        for x, y in loader:
            self.optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            self.optimizer.step()
            self.running["loss"] += loss
"""
    (finding,) = findings_of(PRELUDE + source)
    assert finding.code == "GS503"
    assert "`self.running[\"loss\"]` keeps the graph" in finding.message


@pytest.mark.parametrize(
    "statement",
    [
        "stats['loss'] += loss.item()",
        "stats['loss'] += loss.detach()",
        "stats.loss += float(loss)",
        "history[epoch] += loss.item() * x.size(0)",
    ],
)
def test_entry_total_quiet_on_values(statement):
    source = f"""
from types import SimpleNamespace
model = nn.Linear(4, 1)
stats = {{'loss': 0.0}}
history = {{}}
for epoch in range(10):
    for x, y in loader:
        loss = F.mse_loss(model(x), y)
        loss.backward()
        {statement}
"""
    assert codes(source) == []


def test_entry_total_backpropagated_is_quiet():
    source = """
model = nn.GRUCell(4, 4)
optimizer = torch.optim.Adam(model.parameters())
for sequence, targets in loader:
    h = torch.zeros(1, 4)
    losses = {"mse": 0.0, "l1": 0.0}
    state = {"total": 0.0}
    for x, y in zip(sequence, targets):
        h = model(x, h)
        losses["mse"] += F.mse_loss(h, y)
        losses["l1"] = losses["l1"] + F.l1_loss(h, y)
        state["total"] += F.mse_loss(h, y)
    optimizer.zero_grad()
    total = sum(losses.values())
    total.backward(retain_graph=True)
    state["total"].backward()
    optimizer.step()
"""
    assert codes(source) == []


def test_gradient_accumulation_is_quiet():
    source = """
model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


class Accumulator:
    def __init__(self):
        self.total = 0.0

    def run(self, micro_batches):
        for x, y in micro_batches:
            self.total = self.total + F.mse_loss(model(x), y)
        self.total.backward()


for batch in loader:
    total = 0.0
    for x, y in batch:
        loss = F.mse_loss(model(x), y)
        total = total + loss
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
"""
    assert codes(source) == []


def test_entry_total_passed_or_returned_is_quiet():
    source = """
def add_losses(losses, model, chunks):
    for x, y in chunks:
        losses["mse"] += F.mse_loss(model(x), y)

def loss_terms(model, chunks):
    terms = {"mse": 0.0}
    for x, y in chunks:
        terms["mse"] += F.mse_loss(model(x), y)
    return terms

def evaluate(model, loader):
    stats = {"loss": 0.0}
    with torch.no_grad():
        for x, y in loader:
            stats["loss"] += F.mse_loss(model(x), y)
    print(stats)
"""
    assert codes(source) == []


def test_total_returned_from_a_stepping_loop_is_reported():
    # The loop backpropagates each step's loss itself, so the returned total is kept for logging only.
    source = """
def train_epoch(model, optimizer, loader):
    running_loss = 0.0
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss
    return running_loss / len(loader)
"""
    assert codes(source) == ["GS503"]


def test_trainer_attribute_total_is_reported():
    # `self.model` is a constructor argument, so only the loop's own `loss.backward()` shows that `loss` has a graph.
    source = """
class Trainer:
    def __init__(self, model):
        self.model = model
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.running_loss = 0.0

    def train(self, loader):
        for x, y in loader:
            self.opt.zero_grad()
            loss = F.mse_loss(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.running_loss += loss
            self.logged = loss.item()
"""
    assert codes(source) == ["GS503"]


def test_trainer_attribute_total_of_values_is_quiet():
    source = """
class Trainer:
    def train(self, loader):
        for x, y in loader:
            self.opt.zero_grad()
            loss = F.mse_loss(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.running_loss += loss.item()
            self.seen += x.size(0)
"""
    assert codes(source) == []


def test_total_message_parenthesizes_a_product():
    source = """
def train_epoch(model, optimizer, loader):
    stats = {"loss": 0.0}
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        stats["loss"] += loss * x.size(0)
    return stats["loss"]
"""
    [finding] = [f for f in check_source(source).findings if f.code == "GS503"]
    assert "`stats[\"loss\"] += (loss * x.size(0)).item()`" in finding.message


def test_tensor_slices_filled_are_quiet():
    source = """
class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(3)])

    def forward(self, x):
        out = torch.zeros(x.size(0), 3)
        for i, head in enumerate(self.heads):
            out[:, i] += head(x).squeeze(1)
        self.last = out
        return x

model = Heads()
for x, y in loader:
    stats = {"loss": 0.0}
    loss = F.mse_loss(model(x), y)
    loss.backward()
    stats["loss"] += loss
"""
    assert codes(source) == []


def test_loss_tensor_accumulated_fix_adds_detach():
    source = PRELUDE + """
model = nn.Linear(4, 1)
total = 0
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    loss.backward()
    total += loss
"""
    fix, result = fixed(source, "GS503")
    assert fix.safe
    assert "total += loss.detach()\n" in result
    assert "GS503" not in [f.code for f in check_source(result).findings]


def test_loss_fixes_clear_the_case_file(cases_dir):
    source = fix_all((cases_dir / "static" / "graph_breaks.py").read_text(), "GS5")
    assert [f.code for f in check_source(source).findings if f.code.startswith("GS5")] == []
