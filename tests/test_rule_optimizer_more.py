"""GS103-GS108: how the optimizer is built, kept and scheduled."""

import ast
import textwrap

import pytest

from conftest import codes_of, findings_of
from gradsight.config import DEFAULT_SETTINGS
from gradsight.findings import Severity
from gradsight.static import check_source
from test_rule_loop import apply_edits

HEADER = "import torch\nimport torch.nn as nn\nmodel = nn.Linear(4, 2)\n"


def of_code(source, code):
    return [finding for finding in findings_of(source) if finding.code == code]


# GS103 params-consumed


CONSUMED = """
import torch
model = torch.nn.Linear(4, 2)
params = model.parameters()
print("trainable tensors:", sum(1 for p in params if p.requires_grad))
optimizer = torch.optim.SGD(params, lr=0.01)
"""


def test_consumed_generator():
    (finding,) = of_code(CONSUMED, "GS103")
    assert finding.severity == Severity.ERROR
    assert finding.span.line == 6
    assert [item.span.line for item in finding.related] == [5, 4]


def test_consumed_generator_fix_stores_list():
    (finding,) = of_code(CONSUMED, "GS103")
    fixed = apply_edits(CONSUMED, finding.fix.edits)
    ast.parse(fixed)
    assert "params = list(model.parameters())" in fixed
    assert of_code(fixed, "GS103") == []


@pytest.mark.parametrize(
    "use",
    [
        "for p in params:\n    p.requires_grad = True",
        "n = len(list(params))",
        "first = next(params)",
        "torch.nn.init.zeros_ and [p for p in params]",
        "other = torch.optim.Adam(params, lr=1e-3)",
    ],
)
def test_consumed_generator_uses(use):
    source = HEADER + "params = model.parameters()\n" + use + "\nopt = torch.optim.SGD(params, lr=0.1)\n"
    assert "GS103" in codes_of(source)


def test_generator_expression_consumed():
    source = HEADER + "params = (p for p in model.parameters() if p.requires_grad)\nprint(list(params))\nopt = torch.optim.SGD(params, lr=0.1)\n"
    assert "GS103" in codes_of(source)


def test_reused_list_is_quiet():
    source = HEADER + "params = list(model.parameters())\nprint(sum(p.numel() for p in params))\nopt = torch.optim.SGD(params, lr=0.1)\n"
    assert "GS103" not in codes_of(source)


def test_generator_used_once_is_quiet():
    source = HEADER + "params = model.parameters()\nopt = torch.optim.SGD(params, lr=0.1)\nfor p in params:\n    print(p)\n"
    assert "GS103" not in codes_of(source)


def test_empty_list():
    assert "GS103" in codes_of(HEADER + "opt = torch.optim.SGD([], lr=0.1)\n")
    assert "GS103" in codes_of(HEADER + "params = []\nopt = torch.optim.Adam(params, lr=1e-3)\n")


def test_list_filled_later_is_quiet():
    source = HEADER + "params = []\nfor p in model.parameters():\n    params.append(p)\nopt = torch.optim.Adam(params, lr=1e-3)\n"
    assert "GS103" not in codes_of(source)


# GS104 stale-optimizer


STALE = """
import copy
import pickle
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

model = Net()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model = {rebind}
for step in range(10):
    optimizer.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
"""


@pytest.mark.parametrize(
    "rebind",
    ['torch.load("model.pt")', "copy.deepcopy(model)", 'pickle.load(open("m.pkl", "rb"))', "Net()", "nn.Linear(4, 2)"],
)
def test_stale_optimizer(rebind):
    findings = of_code(STALE.format(rebind=rebind), "GS104")
    assert [finding.span.line for finding in findings] == [14]
    assert findings[0].severity == Severity.WARNING


@pytest.mark.parametrize(
    "rebind",
    ['model.to("cuda")', "torch.compile(model)", "nn.DataParallel(model)", "model.cuda().half()"],
)
def test_rebinding_that_keeps_parameters_is_quiet(rebind):
    assert of_code(STALE.format(rebind=rebind), "GS104") == []


def test_optimizer_rebuilt_after_load_is_quiet():
    source = STALE.format(rebind='torch.load("model.pt")').replace(
        "for step", "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nfor step"
    )
    assert of_code(source, "GS104") == []


def test_load_state_dict_is_quiet():
    source = STALE.format(rebind="model").replace("model = model\n", 'model.load_state_dict(torch.load("m.pt"))\n')
    assert of_code(source, "GS104") == []


# GS105 bad-hyperparameter


@pytest.mark.parametrize(
    "call",
    [
        "torch.optim.SGD(model.parameters(), lr=0.1, momentum=1.0)",
        "torch.optim.SGD(model.parameters(), 0.1, 1.5)",
        "torch.optim.SGD(model.parameters(), lr=0.1, momentum=-0.5)",
        "torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 1.0))",
        "torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(1.2, 0.999))",
        "torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0)",
        "torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)",
        "torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)",
        "torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=1.0)",
    ],
)
def test_bad_hyperparameter(call):
    assert "GS105" in codes_of(HEADER + f"opt = {call}\n")


@pytest.mark.parametrize(
    "call",
    [
        "torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.3)",
        "torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95))",
        "torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)",
        "torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.99), weight_decay=1e-5)",
        "torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.2, decoupled_weight_decay=True)",
    ],
)
def test_good_hyperparameters_are_quiet(call):
    assert "GS105" not in codes_of(HEADER + f"opt = {call}\n")


def test_coupled_weight_decay_threshold_is_configurable():
    settings = DEFAULT_SETTINGS.merged(thresholds={"coupled_weight_decay_max": 0.6})
    source = HEADER + "opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5)\n"
    assert [f.code for f in check_source(source, settings=settings).findings] == []


# GS106 lr-schedule-zero


@pytest.mark.parametrize(
    "scheduler",
    [
        "torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0)",
        "torch.optim.lr_scheduler.StepLR(opt, 10, 0.0)",
        "torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0)",
        "torch.optim.lr_scheduler.MultiStepLR(opt, [30, 60], gamma=0)",
        "torch.optim.lr_scheduler.MultiplicativeLR(opt, lambda epoch: 0)",
    ],
)
def test_schedule_reaches_zero(scheduler):
    source = HEADER + f"opt = torch.optim.SGD(model.parameters(), lr=0.1)\nsched = {scheduler}\n"
    assert "GS106" in codes_of(source)


EPOCH_LOOP = """
import torch
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
WARMUP = 5
{definition}
sched = torch.optim.lr_scheduler.LambdaLR(opt, {factor})
for epoch in range(20):
    for x in range(100):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    {epoch_step}
"""


@pytest.mark.parametrize(
    "definition, factor",
    [
        ("", "lambda epoch: epoch / WARMUP"),
        ("", "lr_lambda=lambda e: min(1.0, e / WARMUP)"),
        ("def warmup(epoch):\n    return epoch / WARMUP if epoch < WARMUP else 1.0", "warmup"),
    ],
)
def test_lambda_zero_at_start_stepped_per_epoch(definition, factor):
    source = EPOCH_LOOP.format(definition=definition, factor=factor, epoch_step="sched.step()")
    (finding,) = of_code(source, "GS106")
    assert finding.related[0].span.line == 13 + definition.count("\n")


def test_lambda_plus_one_is_quiet():
    source = EPOCH_LOOP.format(definition="", factor="lambda epoch: (epoch + 1) / WARMUP", epoch_step="sched.step()")
    assert of_code(source, "GS106") == []


def test_lambda_stepped_per_batch_is_quiet():
    source = EPOCH_LOOP.format(definition="", factor="lambda step: step / WARMUP", epoch_step="pass").replace(
        "        opt.step()\n", "        opt.step()\n        sched.step()\n"
    )
    assert of_code(source, "GS106") == []


def test_cosine_lambda_is_quiet():
    source = EPOCH_LOOP.format(
        definition="import math", factor="lambda e: 0.5 * (1 + math.cos(math.pi * e / 20))", epoch_step="sched.step()"
    )
    assert of_code(source, "GS106") == []


PER_BATCH_STEP = """
import torch
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
{definition}
sched = torch.optim.lr_scheduler.LambdaLR(opt, {factor})
for x in range(100):
    opt.zero_grad()
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()
"""


@pytest.mark.parametrize(
    "definition, factor",
    [
        ("", "lambda epoch: 0"),
        ("", "lambda epoch: 0.0"),
        ("", "lr_lambda=lambda _: 0 * 0.95"),
        ("", "lambda step: int(0.5)"),
        ("def constant(epoch):\n    return 0", "constant"),
        ("def constant(epoch):\n    return 0.0", "lr_lambda=constant"),
        ("SCALE = 0\nschedule = lambda step: SCALE * (step + 1)", "schedule"),
    ],
)
def test_lambda_zero_at_every_step(definition, factor):
    source = PER_BATCH_STEP.format(definition=definition, factor=factor)
    (finding,) = of_code(source, "GS106")
    assert "is 0 at every step" in finding.message
    assert finding.span.line == 6 + definition.count("\n")


def test_zero_lambda_stepped_per_epoch():
    source = EPOCH_LOOP.format(definition="", factor="lambda epoch: 0", epoch_step="sched.step()")
    (finding,) = of_code(source, "GS106")
    assert "is 0 at every step" in finding.message


def test_zero_lambda_never_stepped():
    source = HEADER + "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nsched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0)\n"
    assert codes_of(source) == ["GS106"]


@pytest.mark.parametrize(
    "factor",
    [
        "lambda step: min(1.0, step / 1000)",  # linear warmup, stepped per batch
        "lambda step: int(step >= 10)",  # a short hold at 0, then the full lr
        "lambda step: 0.95 ** step",
        "lambda step: 1",
        "[lambda step: 0, lambda step: 1.0]",  # a group kept at lr 0 beside one that trains
        "lambda step: factor",  # not known
    ],
)
def test_lambda_not_zero_everywhere_is_quiet(factor):
    source = PER_BATCH_STEP.format(definition="", factor=factor)
    assert of_code(source, "GS106") == []


# GS107 tiny-grad-clip


@pytest.mark.parametrize(
    "call",
    [
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-6)",
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 0)",
        "nn.utils.clip_grad_value_(model.parameters(), clip_value=1e-5)",
        "accelerator.clip_grad_norm_(model.parameters(), 1e-8)",
        "fabric.clip_gradients(model, opt, max_norm=1e-7)",
    ],
)
def test_tiny_grad_clip(call):
    assert "GS107" in codes_of(HEADER + "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n" + call + "\n")


@pytest.mark.parametrize(
    "call",
    [
        "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)",
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)",
        "torch.nn.utils.clip_grad_value_(model.parameters(), 5)",
        "trainer = Trainer(gradient_clip_val=0)",
        "trainer = Trainer(gradient_clip_val=0.5)",
    ],
)
def test_typical_grad_clip_is_quiet(call):
    assert "GS107" not in codes_of(HEADER + call + "\n")


def test_tiny_grad_clip_points_to_constant():
    source = HEADER + "MAX_NORM = 1e-6\ntorch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)\n"
    (finding,) = of_code(source, "GS107")
    assert finding.related[0].span.line == 4


# GS108 optimizer-in-loop


def test_optimizer_built_in_training_loop():
    source = """
        import torch
        def train(model, loader):
            for x, y in loader:
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    """
    (finding,) = of_code(source, "GS108")
    assert finding.span.line == 5
    assert finding.severity == Severity.WARNING


def test_optimizer_built_per_epoch_with_batch_loop_is_quiet():
    source = """
        import torch
        def train(model, loader, epochs):
            for epoch in range(epochs):
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 * 0.9 ** epoch)
                for x, y in loader:
                    optimizer.zero_grad()
                    torch.nn.functional.mse_loss(model(x), y).backward()
                    optimizer.step()
    """
    assert of_code(source, "GS108") == []


def test_optimizer_built_per_run_with_model_is_quiet():
    source = """
        import torch
        for trial in range(20):
            model = torch.nn.Linear(4, 1)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            optimizer.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
    """
    assert of_code(source, "GS108") == []


def test_optimizer_rebuilt_conditionally_is_quiet():
    source = """
        import torch
        def train(model, loader, unfreeze_at):
            optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
            for step, (x, y) in enumerate(loader):
                if step == unfreeze_at:
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                optimizer.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    """
    assert of_code(source, "GS108") == []


@pytest.mark.parametrize(
    "factory",
    [
        "def make_opt(m):\n    return torch.optim.Adam(m.parameters(), lr=1e-3)",
        "def make_opt(m, lr=1e-3):\n    opt = torch.optim.Adam(m.parameters(), lr=lr)\n    return opt",
    ],
)
def test_optimizer_built_by_factory_in_loop(factory):
    source = f"""
import torch
{factory}

def train(model, loader):
    for x, y in loader:
        opt = make_opt(model)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
"""
    (finding,) = of_code(source, "GS108")
    assert finding.span.line == 7 + factory.count("\n")
    assert "by `make_opt()`, which builds a new Adam (line 4)" in finding.message
    assert finding.related[0].span.line == 4


def test_optimizer_built_by_method_factory():
    source = """
        import torch

        class Trainer:
            def __init__(self, model):
                self.model = model

            def build_optimizer(self):
                return torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

            def fit(self, loader):
                for x, y in loader:
                    optimizer = self.build_optimizer()
                    optimizer.zero_grad()
                    torch.nn.functional.mse_loss(self.model(x), y).backward()
                    optimizer.step()
    """
    (finding,) = of_code(source, "GS108")
    assert finding.span.line == 13


@pytest.mark.parametrize(
    "factory, loop",
    [
        # Built once, before the loop.
        ("def make_opt(m):\n    return torch.optim.Adam(m.parameters())",
         "opt = make_opt(model)\nfor x, y in loader:\n    opt.zero_grad()\n    loss_of(model, x, y).backward()\n    opt.step()"),
        # Built per run, with a new model, in a loop over runs.
        ("def make_opt(m):\n    return torch.optim.Adam(m.parameters())",
         "for seed in range(3):\n    model = torch.nn.Linear(4, 1)\n    opt = make_opt(model)\n"
         "    opt.zero_grad()\n    loss_of(model, x, y).backward()\n    opt.step()"),
        # Built per epoch, stepped in the loop over batches.
        ("def make_opt(m):\n    return torch.optim.Adam(m.parameters())",
         "for epoch in range(3):\n    opt = make_opt(model)\n    for x, y in loader:\n"
         "        opt.zero_grad()\n        loss_of(model, x, y).backward()\n        opt.step()"),
        # A cached optimizer: built on the first call only.
        ("_OPT = None\ndef make_opt(m):\n    global _OPT\n    if _OPT is None:\n        _OPT = torch.optim.Adam(m.parameters())\n    return _OPT",
         "for x, y in loader:\n    opt = make_opt(model)\n    opt.zero_grad()\n    loss_of(model, x, y).backward()\n    opt.step()"),
        ("def get_opt(m, opt=None):\n    if opt is None:\n        opt = torch.optim.Adam(m.parameters())\n    return opt",
         "opt = None\nfor x, y in loader:\n    opt = get_opt(model, opt)\n    opt.zero_grad()\n    loss_of(model, x, y).backward()\n    opt.step()"),
    ],
)
def test_optimizer_factory_outside_iteration_quiet(factory, loop):
    source = f"import torch\nmodel = torch.nn.Linear(4, 1)\n{factory}\n{loop}\n"
    assert of_code(source, "GS108") == []


def test_stale_optimizer_case_findings():
    from pathlib import Path

    source = (Path(__file__).parent / "cases" / "static" / "stale_optimizer.py").read_text()
    codes = [(f.code, f.span.line) for f in check_source(source).findings if f.code in ("GS103", "GS104")]
    assert codes == [("GS103", 14), ("GS104", 17)]
    assert textwrap.dedent(source) == source
