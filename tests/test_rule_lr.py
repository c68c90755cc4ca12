"""GS101 lr-too-small and GS102 lr-too-large on the many ways scripts set a learning rate."""

import pytest

from conftest import codes_of, findings_of

HEADER = "import torch\nimport torch.nn as nn\nmodel = nn.Linear(4, 2)\n"


@pytest.mark.parametrize(
    "source",
    [
        "opt = torch.optim.SGD(model.parameters(), lr=1e-10)",
        "opt = torch.optim.SGD(model.parameters(), 1e-10)",
        "opt = torch.optim.Adam(model.parameters(), lr=0)",
        "opt = torch.optim.Adam(model.parameters(), lr=0.0)",
        "opt = torch.optim.AdamW(model.parameters(), lr=float('1e-10'))",
        "LR = 1e-8\nopt = torch.optim.SGD(model.parameters(), lr=LR)",
        "LR = 1e-3 / 1e5\nopt = torch.optim.SGD(model.parameters(), lr=LR)",
        "opt = torch.optim.SGD(model.parameters(), lr=10 ** -9)",
        "config = {'lr': 1e-9, 'epochs': 3}\nopt = torch.optim.SGD(model.parameters(), lr=config['lr'])",
        "config = {'optim': {'lr': 1e-9}}\nopt = torch.optim.SGD(model.parameters(), lr=config['optim']['lr'])",
        "config = dict(lr=1e-9)\nopt = torch.optim.SGD(model.parameters(), lr=config.get('lr', 0.1))",
        "lr, momentum = 1e-9, 0.9\nopt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)",
        "opt = torch.optim.SGD([{'params': model.parameters(), 'lr': 1e-12}], lr=0.1)",
    ],
)
def test_lr_too_small_found(source):
    assert "GS101" in codes_of(HEADER + source)


def test_lr_too_small_through_import_aliases():
    source = """
        from torch.optim import SGD as PlainSGD
        import torch.optim as optim
        from torch import optim as o2
        a = PlainSGD(params, lr=1e-9)
        b = optim.Adam(params, lr=1e-9)
        c = o2.RMSprop(params, lr=1e-9)
    """
    assert codes_of(source) == ["GS101", "GS101", "GS101"]


def test_lr_argparse_string_default():
    source = """
        import argparse
        import torch
        parser = argparse.ArgumentParser()
        parser.add_argument("--learning-rate", type=float, default="1e-10")
        parser.add_argument("-m", "--momentum", type=float, default=0.9)
        args = parser.parse_args()
        opt = torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum)
    """
    (finding,) = findings_of(source)
    assert finding.code == "GS101"
    assert "the default of --learning-rate, line 5" in finding.message
    assert finding.related[0].span.line == 5


def test_lr_helper_parser_and_function_default():
    source = """
        import argparse
        import torch

        def get_args():
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=1e-9)
            return parser.parse_args()

        def train(model, lr=1e-11):
            return torch.optim.Adam(model.parameters(), lr=lr)

        args = get_args()
        opt = torch.optim.SGD(params, lr=args.lr)
        args2, _ = argparse.ArgumentParser().parse_known_args()
    """
    findings = findings_of(source)
    assert [(f.code, f.span.line) for f in findings] == [("GS101", 11), ("GS101", 14)]
    assert "parameter `lr` of `train()`" in findings[0].message


def test_lr_through_dataclass_and_class_attribute():
    source = """
        from dataclasses import dataclass
        import torch

        @dataclass
        class Config:
            lr: float = 1e-9
            epochs: int = 3

        class Defaults:
            lr = 1e-9

        cfg = Config()
        a = torch.optim.SGD(params, lr=cfg.lr)
        b = torch.optim.SGD(params, lr=Defaults.lr)
        c = torch.optim.SGD(params, lr=Config(lr=0.1).lr)
    """
    assert [f.span.line for f in findings_of(source)] == [14, 15]


def test_lr_through_self_attribute_and_constructor_default():
    source = """
        import torch

        class Trainer:
            def __init__(self, model, lr=1e-9):
                self.model = model
                self.lr = lr

            def build(self):
                return torch.optim.SGD(self.model.parameters(), lr=self.lr)

        Trainer(model).build()
    """
    assert codes_of(source) == ["GS101"]


@pytest.mark.parametrize(
    "source",
    [
        # Typical values.
        "opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)",
        "opt = torch.optim.Adam(model.parameters(), lr=3e-4)",
        "opt = torch.optim.Adam(model.parameters())",
        "opt = torch.optim.AdamW(model.parameters(), lr=2e-6)",
        # A scheduler sets the lr on its own terms.
        "opt = torch.optim.SGD(model.parameters(), lr=1e-10)\n"
        "sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100)",
        "opt = torch.optim.AdamW(model.parameters(), lr=0)\n"
        "sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 100) * 3e-4)",
        # Warmup that writes the lr per step.
        "opt = torch.optim.AdamW(model.parameters(), lr=0.0)\n"
        "for step in range(100):\n"
        "    for group in opt.param_groups:\n"
        "        group['lr'] = 3e-4 * min(1.0, step / 10)\n",
        # Values that cannot be proven: a sweep, a reassigned name, an argument overridden by a caller.
        "for lr in [1e-10, 1e-3]:\n    opt = torch.optim.SGD(model.parameters(), lr=lr)",
        "lr = 1e-10\nlr = lr * 1e8\nopt = torch.optim.SGD(model.parameters(), lr=lr)",
        "def train(lr=1e-10):\n    return torch.optim.SGD(model.parameters(), lr=lr)\ntrain(lr=0.1)",
        "def train(lr=1e-10):\n    return torch.optim.SGD(model.parameters(), lr=lr)\ntrain(0.1)",
        "import json\nconfig = json.load(open('c.json'))\nopt = torch.optim.SGD(model.parameters(), lr=config['lr'])",
        "config = {'lr': 1e-10}\nconfig['lr'] = 0.1\nopt = torch.optim.SGD(model.parameters(), lr=config['lr'])",
        "config = {'lr': 1e-10}\nconfig.update(lr=0.1)\nopt = torch.optim.SGD(model.parameters(), lr=config['lr'])",
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, default=1e-10)\n"
        "args = p.parse_args()\nargs.lr = args.lr * 1e8\nopt = torch.optim.SGD(model.parameters(), lr=args.lr)",
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, required=True)\n"
        "args = p.parse_args()\nopt = torch.optim.SGD(model.parameters(), lr=args.lr)",
        # LBFGS uses lr=1 by default.
        "opt = torch.optim.LBFGS(model.parameters(), lr=1)",
        # Not a torch optimizer.
        "class SGD:\n    def __init__(self, params, lr): pass\nopt = SGD(model.parameters(), lr=1e-10)",
    ],
)
def test_lr_quiet(source):
    assert codes_of(HEADER + source) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("opt = torch.optim.SGD(model.parameters(), lr=1.5)", ["GS102"]),
        ("opt = torch.optim.SGD(model.parameters(), lr=1.0)", []),
        ("opt = torch.optim.Adam(model.parameters(), lr=0.5)", ["GS102"]),
        ("opt = torch.optim.RMSprop(model.parameters(), lr=0.2)", ["GS102"]),
        ("opt = torch.optim.Adam(model.parameters(), lr=0.1)", []),
        ("opt = torch.optim.LBFGS(model.parameters(), lr=5)", []),
        ("opt = torch.optim.Adadelta(model.parameters(), lr=1.0)", []),
    ],
)
def test_lr_too_large(source, expected):
    assert codes_of(HEADER + source) == expected


def test_lr_finding_range_and_message():
    (finding,) = findings_of(HEADER + "optimizer = torch.optim.SGD(model.parameters(), lr=1e-10, momentum=0.9)\n")
    assert (finding.span.line, finding.span.column, finding.span.end_column) == (4, 49, 57)
    assert finding.rule == "lr-too-small"
    assert finding.severity.label == "warning"
    assert "1e-10" in finding.message
    assert "SGD" in finding.message
    assert "1e-3 to 1e-1" in finding.message


def test_lr_argparse_result_passed_to_function():
    source = """
        import argparse
        import torch

        def train(args, model):
            return torch.optim.Adam(model.parameters(), lr=args.lr)

        def main():
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=1e-10)
            args = parser.parse_args()
            train(args, torch.nn.Linear(3, 3))
    """
    assert codes_of(source) == ["GS101"]


def test_lr_lightning_saved_hyperparameter():
    source = """
        import torch
        import lightning as L

        class Model(L.LightningModule):
            def __init__(self, learning_rate=1e-10):
                super().__init__()
                self.save_hyperparameters()

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)

        Model()
    """
    assert codes_of(source) == ["GS101"]


@pytest.mark.parametrize(
    "source, expected",
    [
        # The default of a required option is never used.
        ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, required=True, default=0)\n"
         "args = p.parse_args()\nopt = torch.optim.SGD(model.parameters(), lr=args.lr)", []),
        # parser.set_defaults wins over add_argument.
        ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\np.set_defaults(lr=1e-10)\n"
         "args = p.parse_args()\nopt = torch.optim.SGD(model.parameters(), lr=args.lr)", ["GS101"]),
        # dataclass field(default=...).
        ("from dataclasses import dataclass, field\n@dataclass\nclass C:\n    lr: float = field(default=1e-10)\n"
         "opt = torch.optim.SGD(model.parameters(), lr=C().lr)", ["GS101"]),
        # A scheduler that raises the lr (LR range test) and a warmup before a large peak lr.
        ("opt = torch.optim.Adam(model.parameters(), lr=1e-7)\n"
         "sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1.1)", []),
        ("opt = torch.optim.SGD(model.parameters(), lr=3.2, momentum=0.9)\n"
         "warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.03125, total_iters=5)", []),
        ("from transformers import get_linear_schedule_with_warmup\nopt = torch.optim.AdamW(model.parameters(), lr=0.5)\n"
         "sched = get_linear_schedule_with_warmup(opt, 100, 1000)", []),
        # Warmup does not make a tiny lr right.
        ("opt = torch.optim.SGD(model.parameters(), lr=1e-10)\n"
         "warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)", ["GS101"]),
    ],
)
def test_lr_schedulers_and_argparse_details(source, expected):
    assert codes_of(HEADER + source) == expected


def test_lr_negative_message():
    (finding,) = findings_of(HEADER + "opt = torch.optim.SGD(model.parameters(), lr=-0.01)\n")
    assert "is negative" in finding.message


def test_lr_arithmetic_points_at_expression():
    (finding,) = findings_of(HEADER + "LR = 1e-3\n\nopt = torch.optim.Adam(model.parameters(), lr=LR * 1e-5)\n")
    assert "learning rate 1e-8 is" in finding.message
    assert finding.related == ()


def test_lr_config_value_named_as_written():
    source = HEADER + "cfg = dict(optimizer=dict(lr=1e-8))\n\nopt = torch.optim.SGD(model.parameters(), lr=cfg['optimizer']['lr'])\n"
    (finding,) = findings_of(source)
    assert "(`cfg['optimizer']['lr']`, line 4)" in finding.message
    assert finding.related[0].span.line == 4


@pytest.mark.parametrize(
    "source, expected",
    [
        # Every group sets its lr, so the optimizer-wide default of 0 is never used (3D Gaussian Splatting).
        ("w = torch.nn.Parameter(torch.zeros(3))\nopt = torch.optim.Adam([{'params': [w], 'lr': 1.6e-4}], lr=0.0, eps=1e-15)", []),
        # A group with lr 0 beside a group that trains: a deliberate freeze.
        ("opt = torch.optim.SGD([{'params': model.weight, 'lr': 0.01}, {'params': model.bias, 'lr': 0.0}])", []),
        ("opt = torch.optim.SGD([{'params': model.weight, 'lr': 0.0}, {'params': model.bias, 'lr': 0.0}], lr=0.1)", ["GS101", "GS101"]),
        # SGD at lr 5 with gradient clipping, as the PyTorch transformer tutorial trains.
        ("opt = torch.optim.SGD(model.parameters(), lr=5.0)\ntorch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)", []),
    ],
)
def test_lr_parameter_groups_and_clipping(source, expected):
    assert codes_of(HEADER + source) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("cfg = {'lr': 1e-10, 'momentum': 0.9}\nopt = torch.optim.SGD(model.parameters(), **cfg)", ["GS101"]),
        ("cfg = dict(lr=1e-10, weight_decay=0.0)\nopt = torch.optim.Adam(model.parameters(), **cfg)", ["GS101"]),
        ("opt = torch.optim.SGD(model.parameters(), **{'lr': 0})", ["GS101"]),
        ("config = {'optim': {'lr': 1e-9}}\nopt = torch.optim.SGD(model.parameters(), **config['optim'])", ["GS101"]),
        ("kwargs = {'lr': 0.5}\nopt = torch.optim.Adam(model.parameters(), **kwargs)", ["GS102"]),
        ("cfg = {'lr': 0.01, 'momentum': 1.5}\nopt = torch.optim.SGD(model.parameters(), **cfg)", ["GS105"]),
        ("cfg = {'lr': 1e-3, 'betas': (0.9, 1.2)}\nopt = torch.optim.Adam(model.parameters(), **cfg)", ["GS105"]),
        # An explicit lr is the one used; the dict only passes the rest.
        ("cfg = {'momentum': 0.9}\nopt = torch.optim.SGD(model.parameters(), lr=1e-10, **cfg)", ["GS101"]),
    ],
)
def test_lr_unpacked_config_dict(source, expected):
    assert codes_of(HEADER + source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "cfg = {'lr': 0.01, 'momentum': 0.9}\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        # The dict is unknown, rebound, changed after it is made, or merged with another mapping.
        "import json\ncfg = json.load(open('c.json'))\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\ncfg = {'lr': 0.1}\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\nif resume:\n    cfg = {'lr': 0.1}\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\ncfg['lr'] = 0.1\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\ncfg.update(lr=0.1)\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\ncfg |= overrides\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10, **overrides}\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = dict(base, lr=1e-10)\nopt = torch.optim.SGD(model.parameters(), **cfg)",
        "cfg = {'lr': 1e-10}\nopt = torch.optim.SGD(model.parameters(), **cfg, **overrides)",
        "for cfg in [{'lr': 1e-10}, {'lr': 0.1}]:\n    opt = torch.optim.SGD(model.parameters(), **cfg)",
        "def build(cfg={'lr': 1e-10}):\n    return torch.optim.SGD(model.parameters(), **cfg)",
        # A scheduler sets the lr on its own terms.
        "cfg = {'lr': 0}\nopt = torch.optim.AdamW(model.parameters(), **cfg)\n"
        "sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=100)",
    ],
)
def test_lr_unpacked_config_dict_quiet(source):
    assert codes_of(HEADER + source) == []


def test_lr_unpacked_config_dict_message():
    source = HEADER + "cfg = {'lr': 1e-10, 'momentum': 0.9}\n\nopt = torch.optim.SGD(model.parameters(), **cfg)\n"
    (finding,) = findings_of(source)
    assert finding.span.line == 6
    assert "(`cfg['lr']`, line 4)" in finding.message
    assert finding.related[0].span.line == 4
