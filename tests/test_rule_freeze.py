"""GS201 frozen-parameters and GS206 module-requires-grad-attribute."""

import pytest

from conftest import codes_of, findings_of

PRELUDE = """
import torch
import torch.nn as nn
import torchvision
from torchvision.models import resnet18
"""


def test_module_attribute_on_layers_containers_and_library_models():
    source = PRELUDE + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 2)
        self.scale = nn.Parameter(torch.ones(1))

    def freeze_encoder(self):
        self.encoder.requires_grad = False
        self.scale.requires_grad = False

net = Net().to("cpu")
net.head.requires_grad = False
net.head.weight.requires_grad = False
backbone = resnet18(weights=None)
backbone.fc.requires_grad = True
vgg = torchvision.models.vgg16()
vgg.features.requires_grad = False
vgg.features[0].requires_grad = False
for layer in vgg.children():
    layer.requires_grad = False
seq = nn.Sequential(nn.Linear(2, 2))
seq[0].requires_grad = False
x = torch.randn(3, requires_grad=True)
x.requires_grad = False
"""
    lines = [f.span.line for f in findings_of(source) if f.code == "GS206"]
    assert lines == [15, 19, 22, 24, 25, 27, 29]


def test_module_attribute_message_says_what_to_write():
    (finding,) = [f for f in findings_of(PRELUDE + "m = nn.Linear(2, 2)\nm.requires_grad = False\n") if f.code == "GS206"]
    assert "requires_grad_(False)" in finding.message
    assert finding.severity.label == "warning"


def test_module_attribute_quiet_on_unknown_objects():
    source = PRELUDE + """
def freeze(thing):
    thing.requires_grad = False

obj = load_something()
obj.requires_grad = False
"""
    assert codes_of(source) == []


def test_module_attribute_with_annotation():
    source = PRELUDE + """
def freeze(model: nn.Module):
    model.requires_grad = False
"""
    assert codes_of(source) == ["GS206"]


def test_whole_model_frozen_before_optimizer_is_warning():
    source = PRELUDE + """
model = resnet18(weights=None)
model.requires_grad_(False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label, finding.span.line) == ("GS201", "warning", 8)
    assert finding.related[0].span.line == 9


def test_freeze_after_training_started_is_warning():
    source = PRELUDE + """
model = resnet18(weights=None)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for epoch in range(10):
    optimizer.zero_grad()
    model(torch.randn(2, 3, 224, 224)).sum().backward()
    optimizer.step()
    if epoch == 5:
        for p in model.layer1.parameters():
            p.requires_grad = False
"""
    findings = [f for f in findings_of(source) if f.code == "GS201"]
    assert [(f.severity.label, f.span.line) for f in findings] == [("warning", 15)]
    assert "after the optimizer (line 8)" in findings[0].message


def test_freeze_right_after_optimizer_is_information():
    # Before any backward() the frozen parameters have no gradient, and optimizers skip those.
    source = PRELUDE + """
model = resnet18(weights=None)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for p in model.layer1.parameters():
    p.requires_grad = False
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label, finding.span.line) == ("GS201", "information", 10)


@pytest.mark.parametrize(
    "body",
    [
        # Frozen backbone, optimizer over the trainable parameters.
        """
model = resnet18(weights=None)
for p in model.parameters():
    p.requires_grad = False
model.fc = nn.Linear(512, 10)
optimizer = torch.optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=0.1)
""",
        """
model = resnet18(weights=None)
model.requires_grad_(False)
model.fc = nn.Linear(512, 10)
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.1)
""",
        # Everything frozen, then the head unfrozen properly.
        """
model = resnet18(weights=None)
for p in model.parameters():
    p.requires_grad = False
for p in model.fc.parameters():
    p.requires_grad = True
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
""",
        """
model = resnet18(weights=None)
model.requires_grad_(False)
model.fc.requires_grad_(True)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
""",
        # Only some parameters, chosen by name.
        """
model = resnet18(weights=None)
for name, p in model.named_parameters():
    if "bn" in name:
        p.requires_grad = False
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
""",
        # A helper freezes the backbone; the optimizer trains the new head.
        """
def freeze(module):
    for p in module.parameters():
        p.requires_grad = False

model = resnet18(weights=None)
freeze(model)
model.fc = nn.Linear(512, 10)
optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
""",
        # Layers unfrozen in ways the checker cannot place: a loop over a list, getattr, a helper, a library call.
        """
model = resnet18(weights=None)
model.requires_grad_(False)
for m in [model.layer4, model.fc]:
    m.requires_grad_(True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
""",
        """
model = resnet18(weights=None)
model.requires_grad_(False)
for name in ["layer3", "layer4", "fc"]:
    getattr(model, name).requires_grad_(True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
""",
        """
def set_trainable(module, flag):
    for p in module.parameters():
        p.requires_grad = flag

model = resnet18(weights=None)
model.requires_grad_(False)
set_trainable(model.fc, True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
""",
        """
import loralib as lora
model = resnet18(weights=None)
model.requires_grad_(False)
lora.mark_only_lora_as_trainable(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
""",
        # A module keeping a flag of its own named requires_grad.
        """
class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.requires_grad = True
""",
        # A target network is frozen; the optimizer trains the online network.
        """
import copy
online = resnet18(weights=None)
target = copy.deepcopy(online)
for p in target.parameters():
    p.requires_grad = False
optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
""",
    ],
)
def test_deliberate_freezing_gets_no_warning(body):
    assert codes_of(PRELUDE + body, minimum="warning") == []


def test_frozen_model_with_optimizer_over_its_frozen_head_is_warning():
    source = PRELUDE + """
model = resnet18(weights=None)
model.requires_grad_(False)
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.1)
"""
    assert codes_of(source, minimum="warning") == ["GS201"]


def test_freeze_through_helper_is_placed_at_call():
    source = PRELUDE + """
def freeze(module):
    for p in module.parameters():
        p.requires_grad = False

model = resnet18(weights=None)
freeze(model)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label, finding.span.line) == ("GS201", "warning", 12)


def test_freeze_of_self_model_in_class():
    source = PRELUDE + """
class Trainer:
    def __init__(self):
        self.model = resnet18(weights=None)
        for p in self.model.parameters():
            p.requires_grad = False
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
"""
    assert codes_of(source, minimum="warning") == ["GS201"]


def test_module_attribute_in_loops_and_wrappers():
    source = PRELUDE + """
from torch.nn.parallel import DistributedDataParallel as DDP
net = resnet18()
seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
for layer in list(net.children())[:-1]:
    layer.requires_grad = False
for layer in seq[:-1]:
    layer.requires_grad = False
for m in [net.layer1, net.layer2]:
    m.requires_grad = False
ddp = DDP(net)
ddp.module.layer1.requires_grad = False
"""
    assert [f.span.line for f in findings_of(source) if f.code == "GS206"] == [11, 13, 15, 17]


def test_freeze_is_information_naming_the_module():
    source = PRELUDE + """
model = resnet18(weights=None)
for p in model.layer1.parameters():
    p.requires_grad = False
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label) == ("GS201", "information")
    assert "`model.layer1`" in finding.message


def test_freeze_through_alias_of_submodule():
    source = PRELUDE + """
model = resnet18(weights=None)
backbone = model
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
backbone.requires_grad_(False)
"""
    assert codes_of(source, minimum="warning") == []  # `backbone = model` is a whole-object alias, not tracked


def test_frozen_by_mistake_case_links_the_attribute_unfreeze(cases_dir):
    from gradsight.static import check_file

    result = check_file(cases_dir / "static" / "frozen_by_mistake.py")
    warning = next(f for f in result.findings if f.code == "GS201")
    assert warning.severity.label == "warning"
    assert [item.span.line for item in warning.related] == [31, 24]


def test_setattr_on_module_is_module_attribute():
    source = PRELUDE + """
model = resnet18(weights=None)
setattr(model, "requires_grad", False)
setattr(model.layer1, 'requires_grad', True)
for layer in list(model.children())[:-1]:
    setattr(layer, "requires_grad", False)
"""
    findings = [f for f in findings_of(source) if f.code == "GS206"]
    assert [f.span.line for f in findings] == [8, 9, 11]
    assert '`setattr(model, "requires_grad", False)` only sets a plain attribute' in findings[0].message
    assert findings[0].fix.edits[0].new_text == "model.requires_grad_(False)"


def test_setattr_freezing_everything_warns():
    source = PRELUDE + """
model = resnet18(weights=None)
for p in model.parameters():
    setattr(p, "requires_grad", False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label, finding.span.line) == ("GS201", "warning", 9)


def test_setattr_freeze_names_module():
    source = PRELUDE + """
FLAG = "requires_grad"
model = resnet18(weights=None)
for p in model.layer1.parameters():
    setattr(p, FLAG, False)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.severity.label) == ("GS201", "information")
    assert "`model.layer1`" in finding.message


@pytest.mark.parametrize(
    "body",
    [
        # Frozen backbone, optimizer over the new head.
        """
model = resnet18(weights=None)
for p in model.parameters():
    setattr(p, "requires_grad", False)
model.fc = nn.Linear(512, 10)
optimizer = torch.optim.SGD(model.fc.parameters(), lr=0.1)
""",
        # Everything frozen, then the head unfrozen with setattr.
        """
model = resnet18(weights=None)
for p in model.parameters():
    p.requires_grad = False
for p in model.fc.parameters():
    setattr(p, "requires_grad", True)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
""",
        # Unfrozen through setattr with a flag the checker cannot read.
        """
model = resnet18(weights=None)
model.requires_grad_(False)
for p in model.fc.parameters():
    setattr(p, "requires_grad", config.trainable)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
""",
        # A target network is frozen; the optimizer trains the online network.
        """
import copy
online = resnet18(weights=None)
target = copy.deepcopy(online)
for p in target.parameters():
    setattr(p, "requires_grad", False)
optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
""",
        # Another attribute, and a setattr of this file's own.
        """
model = resnet18(weights=None)
for p in model.parameters():
    setattr(p, "is_frozen", False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
""",
        """
def setattr(obj, name, value):
    pass

model = resnet18(weights=None)
for p in model.parameters():
    setattr(p, "requires_grad", False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
""",
    ],
)
def test_deliberate_setattr_freeze_is_quiet(body):
    assert codes_of(PRELUDE + body, minimum="warning") == []
