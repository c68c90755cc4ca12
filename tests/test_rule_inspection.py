"""GS701 snapshot-by-reference."""

import pytest

from conftest import codes_of, findings_of
from gradsight.static import check_source
from test_rule_graph import fixed

PRELUDE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
"""

TRAINING = """
for x, y in loader:
    optimizer.zero_grad()
    F.mse_loss(model(x), y).backward()
    optimizer.step()
"""


def codes(source, minimum="warning"):
    """Return the GS7 codes reported on `source` at `minimum` severity or worse."""
    return codes_of(PRELUDE + source, minimum=minimum, select=["GS7"])


def test_parameters_list_compared_after_training_is_warning():
    source = PRELUDE + "model = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    source += "before = list(model.parameters())\n" + TRAINING
    source += "for old, new in zip(before, model.parameters()):\n    print(torch.equal(old, new))\n"
    (finding,) = findings_of(source)
    assert (finding.code, finding.span.line) == ("GS701", 7)
    assert "copy.deepcopy(list(model.parameters()))" in finding.message
    assert finding.related[0].span.line == 14


def test_best_state_dict_restored_after_loop_is_warning():
    source = """
model = nn.Linear(4, 1)
optimizer = torch.optim.Adam(model.parameters())
best_loss = float("inf")
for epoch in range(10):
    train_one_epoch(model, optimizer)
    val_loss = validate(model)
    if val_loss < best_loss:
        best_loss = val_loss
        best_state = model.state_dict()
model.load_state_dict(best_state)
"""
    assert codes(source) == ["GS701"]


@pytest.mark.parametrize(
    "snapshot, use",
    [
        ("initial = model.weight.data", "print((model.weight - initial).abs().max())"),
        ("initial = [p.data for p in model.parameters()]", "print([torch.allclose(a, b) for a, b in zip(initial, model.parameters())])"),
        ("initial = {k: v for k, v in model.state_dict().items()}", "model.load_state_dict(initial)"),
        ("initial = [p.detach() for p in model.parameters()]", "print(initial[0].equal(model.weight))"),
        ("initial = model.weight", "print(initial != model.weight)"),
    ],
)
def test_snapshot_by_reference_variants(snapshot, use):
    source = "model = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    source += snapshot + "\n" + TRAINING + use + "\n"
    assert codes(source) == ["GS701"]


@pytest.mark.parametrize(
    "snapshot",
    [
        "initial = copy.deepcopy(model.state_dict())",
        "initial = {k: v.clone() for k, v in model.state_dict().items()}",
        "initial = [p.detach().clone() for p in model.parameters()]",
        "initial = model.weight.detach().clone()",
        "initial = [p.clone() for p in model.parameters()]",
    ],
)
def test_snapshot_quiet_on_copies(snapshot):
    source = "import copy\nmodel = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    source += snapshot + "\n" + TRAINING + "model.load_state_dict(initial) if isinstance(initial, dict) else print(initial[0] - model.weight)\n"
    assert codes(source) == []


def test_snapshot_quiet_without_training_in_between():
    source = """
source_model = nn.Linear(4, 1)
target = nn.Linear(4, 1)
state = source_model.state_dict()
target.load_state_dict(state)
"""
    assert codes(source) == []


def test_snapshot_quiet_when_saved_to_disk():
    source = "model = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n" + TRAINING
    source += "state = model.state_dict()\ntorch.save(state, 'model.pt')\n"
    assert codes(source) == []


def test_snapshot_fix_adds_deepcopy_and_import():
    source = '"""Train and keep the best weights."""\n' + PRELUDE + """
model = nn.Linear(4, 1)
optimizer = torch.optim.Adam(model.parameters())
best = None
for epoch in range(10):
    train_one_epoch(model, optimizer)
    if improved():
        best = model.state_dict()
model.load_state_dict(best)
"""
    fix, result = fixed(source, "GS701")
    assert fix.safe
    assert len(fix.edits) == 2
    assert result.startswith('"""Train and keep the best weights."""\n\nimport copy\nimport torch\n')
    assert "best = copy.deepcopy(model.state_dict())" in result
    assert "GS701" not in [f.code for f in check_source(result).findings]


def test_snapshot_fix_reuses_existing_import():
    source = "from copy import deepcopy\n" + PRELUDE + "model = nn.Linear(4, 1)\nbefore = model.state_dict()\n" + TRAINING + "model.load_state_dict(before)\n"
    fix, result = fixed(source, "GS701")
    assert len(fix.edits) == 1
    assert "before = deepcopy(model.state_dict())" in result


MAML = """
model = nn.Linear(4, 1)
meta_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
inner_lr = 0.01
for support_x, support_y, query_x, query_y in tasks:
    {snapshot}
    for _ in range(5):
        {inner_step}
    meta_optimizer.zero_grad()
    F.mse_loss(F.linear(query_x, params[0], params[1]), query_y).backward()
    meta_optimizer.step()
"""


@pytest.mark.parametrize(
    "snapshot, inner_step",
    [
        # Differentiated with autograd.grad and updated functionally.
        ("params = list(model.parameters())",
         "loss = F.mse_loss(F.linear(support_x, params[0], params[1]), support_y)\n"
         "        grads = torch.autograd.grad(loss, params, create_graph=True)\n"
         "        params = [p - inner_lr * g for p, g in zip(params, grads)]"),
        # Only given to autograd.grad.
        ("params = list(model.parameters())",
         "loss = F.mse_loss(F.linear(support_x, params[0], params[1]), support_y)\n"
         "        grads = torch.autograd.grad(loss, params)\n"
         "        print([torch.equal(p, g) for p, g in zip(params, grads)])"),
        # Only rebound from its own update.
        ("params = [p for p in model.parameters()]",
         "loss = F.mse_loss(F.linear(support_x, params[0], params[1]), support_y)\n"
         "        loss.backward()\n"
         "        params = [p - inner_lr * p.grad for p in params]"),
        # Run through functional_call.
        ("params = dict(model.named_parameters())",
         "out = torch.func.functional_call(model, params, (support_x,))\n"
         "        print(model.weight - params['weight'])"),
    ],
)
def test_live_parameter_list_is_quiet(snapshot, inner_step):
    assert codes(MAML.format(snapshot=snapshot, inner_step=inner_step)) == []


def test_update_step_is_not_comparison():
    source = "model = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    source += "params = list(model.parameters())\n" + TRAINING
    source += "new_params = [p - 0.01 * p.grad for p in params]\n"
    assert codes(source) == []


def test_self_fast_weights_are_quiet():
    source = """
class Learner:
    def __init__(self, model):
        self.model = model
        self.fast_weights = list(model.parameters())

    def adapt(self, x, y, lr):
        loss = F.mse_loss(F.linear(x, *self.fast_weights), y)
        loss.backward()
        self.fast_weights = [w - lr * g for w, g in zip(self.fast_weights, torch.autograd.grad(loss, self.fast_weights))]
        print([torch.equal(a, b) for a, b in zip(self.fast_weights, self.model.parameters())])
"""
    assert codes(source) == []


@pytest.mark.parametrize(
    "snapshot",
    [
        "params = list(model.parameters())",
        "before = list(model.parameters())",
    ],
)
def test_compared_parameter_list_still_warns(snapshot):
    name = snapshot.split(" ")[0]
    source = "model = nn.Linear(4, 1)\noptimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    source += snapshot + "\n" + TRAINING
    source += f"changes = [(p - q).abs().max() for p, q in zip({name}, model.parameters())]\n"
    source += f"grads = [p.grad for p in {name}]\n"
    assert codes(source) == ["GS701"]


def test_best_state_beside_meta_learning_warns():
    source = """
model = nn.Linear(4, 1)
optimizer = torch.optim.Adam(model.parameters())
best_state = model.state_dict()
for epoch in range(10):
    params = list(model.parameters())
    grads = torch.autograd.grad(F.mse_loss(model(x), y), params)
    optimizer.step()
model.load_state_dict(best_state)
"""
    assert codes(source) == ["GS701"]
