"""GS202-GS208: the autograd graph between the model and backward(), and inside forward."""

import ast
import textwrap

import pytest

from conftest import codes_of, findings_of
from gradsight.fixes import apply_fixes
from gradsight.static import check_source

PRELUDE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
"""


def apply_fix(source, fix):
    """Apply a fix's edits with the function that `gradsight check --fix` uses."""
    text, applied = apply_fixes(source, [fix])
    assert applied == 1
    return text


def fixed(source, code):
    """Check `source`, apply the fix of its only `code` finding, and return the new source after checking it parses."""
    source = textwrap.dedent(source)
    (finding,) = [f for f in check_source(source).findings if f.code == code]
    assert finding.fix is not None
    result = apply_fix(source, finding.fix)
    ast.parse(result)
    return finding.fix, result


def fix_all(source, prefix):
    """Apply the fixes of findings whose code starts with `prefix` one at a time, re-checking after each."""
    for _ in range(20):
        finding = next((f for f in check_source(source).findings if f.code.startswith(prefix) and f.fix is not None), None)
        if finding is None:
            return source
        source = apply_fix(source, finding.fix)
        ast.parse(source)
    raise AssertionError("fixes did not converge")


def codes(source, minimum="warning"):
    """Return the GS2 codes reported on `source` at `minimum` severity or worse."""
    return codes_of(PRELUDE + source, minimum=minimum, select=["GS2"])


# GS202 no-grad-training


def test_no_grad_forward_then_backward_is_error():
    source = PRELUDE + """
def train(model, loader, optimizer):
    for inputs, targets in loader:
        with torch.no_grad():
            preds = model(inputs)
        loss = F.mse_loss(preds, targets)
        loss.backward()
        optimizer.step()
"""
    (finding,) = [f for f in findings_of(source) if f.code == "GS202"]
    assert finding.severity.label == "error"
    assert finding.span.line == 9
    assert "torch.no_grad()" in finding.message
    assert [r.span.line for r in finding.related] == [8, 11]


@pytest.mark.parametrize("context", ["torch.inference_mode()", "torch.set_grad_enabled(False)", "torch.no_grad()"])
def test_no_grad_forward_variants(context):
    source = f"""
model = nn.Linear(4, 1)
for x, y in loader:
    with {context}:
        out = model(x)
    loss = F.mse_loss(out, y)
    loss.backward()
"""
    assert "GS202" in codes(source)


def test_no_grad_forward_with_criterion_parameter():
    source = """
def train(model, loader, criterion, optimizer):
    for inputs, labels in loader:
        optimizer.zero_grad()
        with torch.no_grad():
            outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
"""
    assert codes(source) == ["GS202"]


def test_no_grad_decorated_training_step():
    source = """
model = nn.Linear(4, 1)

@torch.no_grad()
def train_step(x, y):
    loss = F.mse_loss(model(x), y)
    loss.backward()
"""
    assert "GS202" in codes(source)


def test_no_grad_quiet_on_dqn_targets():
    source = """
policy = nn.Linear(4, 2)
target = nn.Linear(4, 2)
for s, a, r, s2 in loader:
    with torch.no_grad():
        y = r + 0.99 * target(s2).max(1).values
    q = policy(s).gather(1, a.unsqueeze(1)).squeeze(1)
    loss = F.mse_loss(y, q)
    loss.backward()
"""
    assert codes(source) == []


def test_no_grad_quiet_on_phase_dependent_grad_mode():
    source = """
def run(model, loader, phase, optimizer):
    for x, y in loader:
        with torch.set_grad_enabled(phase == "train"):
            loss = F.cross_entropy(model(x), y)
        if phase == "train":
            loss.backward()
            optimizer.step()
"""
    assert codes(source) == []


def test_no_grad_quiet_when_grad_is_enabled_again():
    source = """
model = nn.Linear(4, 1)
with torch.no_grad():
    with torch.enable_grad():
        loss = model(x).sum()
    loss.backward()
"""
    assert codes(source) == []


def test_no_grad_quiet_on_separate_validation():
    source = """
def evaluate(model, loader):
    with torch.no_grad():
        return sum(F.cross_entropy(model(x), y).item() for x, y in loader)

def train(model, loader, optimizer):
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
"""
    assert codes(source) == []


def test_no_grad_helper_forward_is_error():
    source = PRELUDE + """
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)


@torch.no_grad()
def predict(net, inputs):
    return net(inputs)


for x, y in loader:
    optimizer.zero_grad()
    logits = predict(model, x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()
"""
    (finding,) = [f for f in findings_of(source) if f.code == "GS202"]
    assert (finding.severity.label, finding.span.line) == ("error", 17)
    assert "`predict(model, x)` runs the forward pass `net(inputs)` in `predict()`" in finding.message
    assert [r.span.line for r in finding.related] == [12, 10, 19]


@pytest.mark.parametrize(
    "helper, call",
    [
        ("@torch.inference_mode()\ndef forward_pass(net, x):\n    out = net(x)\n    return out", "forward_pass(model, x)"),
        ("@torch.no_grad\ndef forward_pass(net, x):\n    return F.log_softmax(net(x), dim=1)", "forward_pass(model, x)"),
        ("@torch.no_grad()\ndef forward_pass(net, x):\n    return net(x), x.size(0)", "forward_pass(model, x)[0]"),
        ("@torch.no_grad()\ndef forward_pass(x):\n    return model(x)", "forward_pass(x)"),
        # torch's decorator wraps generators too: every yielded output is computed without gradients.
        ("@torch.no_grad()\ndef forward_all(net, xs):\n    for x in xs:\n        yield net(x)", "next(forward_all(model, [x]))"),
    ],
)
def test_no_grad_helper_variants(helper, call):
    source = f"""
model = nn.Linear(4, 2)
{helper}

for x, y in loader:
    loss = F.cross_entropy({call}, y)
    loss.backward()
"""
    assert codes(source) == ["GS202"]


def test_no_grad_method_helper_is_error():
    source = """
class Trainer:
    def __init__(self, optimizer):
        self.optimizer = optimizer

    @torch.inference_mode()
    def _forward(self, model, x):
        return model(x)

    def fit(self, model, loader):
        for x, y in loader:
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self._forward(model, x), y)
            loss.backward()
            self.optimizer.step()
"""
    (finding,) = [f for f in findings_of(PRELUDE + source) if f.code == "GS202"]
    assert finding.span.line == PRELUDE.count("\n") + 13


@pytest.mark.parametrize(
    "helper, loop",
    [
        # An evaluation helper whose output is not backpropagated.
        ("@torch.no_grad()\ndef predict(net, x):\n    return net(x)",
         "    loss = F.cross_entropy(model(x), y)\n    loss.backward()\n    accuracy = (predict(model, x).argmax(1) == y).float().mean()"),
        # DQN targets and distillation teachers computed in a helper.
        ("@torch.no_grad()\ndef targets_of(net, r, s2):\n    return r + 0.99 * net(s2).max(1).values",
         "    q = model(x).gather(1, y.unsqueeze(1)).squeeze(1)\n    loss = F.mse_loss(q, targets_of(target_net, r, x))\n    loss.backward()"),
        ("@torch.no_grad()\ndef soft_labels(net, x):\n    return F.softmax(net(x) / 2.0, dim=1)",
         "    loss = F.kl_div(F.log_softmax(model(x), dim=1), soft_labels(teacher, x))\n    loss.backward()"),
        ("@torch.no_grad()\ndef pseudo_labels(net, x):\n    return net(x).argmax(1)",
         "    loss = F.cross_entropy(model(x), pseudo_labels(model, x))\n    loss.backward()"),
        # Gradients turned on again inside the helper, or its argument returned as it is.
        ("@torch.no_grad()\ndef forward_pass(net, x):\n    with torch.enable_grad():\n        return net(x)",
         "    loss = F.cross_entropy(forward_pass(model, x), y)\n    loss.backward()"),
        ("@torch.no_grad()\ndef log_stats(t):\n    print(t.mean())\n    return t",
         "    loss = F.cross_entropy(log_stats(model(x)), y)\n    loss.backward()"),
        # Not decorated.
        ("def forward_pass(net, x):\n    return net(x)",
         "    loss = F.cross_entropy(forward_pass(model, x), y)\n    loss.backward()"),
    ],
)
def test_no_grad_helper_quiet(helper, loop):
    source = f"""
model = nn.Linear(4, 2)
target_net = nn.Linear(4, 2)
teacher = nn.Linear(4, 2)
{helper}

for x, y, r in loader:
{loop}
"""
    assert codes(source) == []


@pytest.mark.parametrize(
    "make_latent",
    [
        "with torch.no_grad():\n        z0 = model(x)\n    z = z0.clone().requires_grad_(True)",
        "z = encode(model, x).requires_grad_()",
    ],
)
def test_no_grad_output_made_leaf_is_quiet(make_latent):
    source = f"""
model = nn.Linear(8, 4)


@torch.no_grad()
def encode(net, x):
    return net(x)


for x in loader:
    {make_latent}
    latent_optimizer = torch.optim.Adam([z], lr=0.1)
    for _ in range(10):
        latent_optimizer.zero_grad()
        loss = (z - x[:, :4]).pow(2).sum()
        loss.backward()
        latent_optimizer.step()
"""
    assert codes(source) == []


def test_detached_loss_made_leaf_is_error():
    source = """
model = nn.Linear(8, 4)
optimizer = torch.optim.Adam(model.parameters())
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    trainable_loss = loss.detach().requires_grad_()
    trainable_loss.backward()
    optimizer.step()
"""
    assert codes(source) == ["GS203"]


# GS203 detached-loss


def test_loss_rebuilt_from_item_is_error(cases_dir):
    result = check_source((cases_dir / "static" / "graph_breaks.py").read_text())
    (finding,) = [f for f in result.findings if f.code == "GS203"]
    assert finding.severity.label == "error"
    assert finding.span.line == 21
    assert "torch.tensor(loss_value, requires_grad=True)" in finding.message
    assert [r.span.line for r in finding.related] == [20, 24]


@pytest.mark.parametrize(
    "rebuilt",
    [
        "loss.detach()",
        "loss.data",
        "torch.tensor(loss.item(), requires_grad=True)",
        "torch.tensor(float(loss), requires_grad=True)",
        "torch.from_numpy(loss.detach().cpu().numpy()).requires_grad_()",
        "torch.tensor(loss.tolist(), requires_grad=True)",
    ],
)
def test_detached_loss_variants(rebuilt):
    source = f"""
model = nn.Linear(4, 1)
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    loss2 = {rebuilt}
    loss2.backward()
"""
    assert codes(source) == ["GS203"]


def test_detached_loss_quiet_on_logging_and_running_average():
    source = """
model = nn.Linear(4, 1)
running = None
for step, (x, y) in enumerate(loader):
    loss = F.mse_loss(model(x), y)
    loss.backward()
    value = loss.item()
    running = loss.detach() if running is None else 0.9 * running + 0.1 * loss.detach()
    print(step, value, running)
"""
    assert codes(source) == []


def test_detached_loss_quiet_on_live_term():
    source = """
model = nn.Linear(4, 1)
for x, y in loader:
    out = model(x)
    penalty = out.detach().abs().mean()
    loss = F.mse_loss(out, y) + 0.1 * penalty
    loss.backward()
"""
    assert codes(source) == []


def test_detached_loss_quiet_on_filled_list():
    source = """
policy = nn.Linear(4, 2)
log_probs = []
for state in states:
    log_probs.append(torch.log_softmax(policy(state), -1)[0])
loss = -torch.stack(log_probs).sum()
loss.backward()
"""
    assert codes(source) == []


# GS204 non-differentiable-op


def test_argmax_into_loss_term_is_warning(cases_dir):
    result = check_source((cases_dir / "static" / "graph_breaks.py").read_text())
    (finding,) = [f for f in result.findings if f.code == "GS204"]
    assert finding.span.line == 27
    assert "logits.argmax(dim=1)" in finding.message


@pytest.mark.parametrize(
    "term",
    [
        "F.mse_loss(out.round(), y)",
        "F.l1_loss((out > 0).float(), y)",
        "F.mse_loss(out.long().float(), y)",
        "F.mse_loss(torch.sign(out), y)",
        "F.mse_loss(out.to(torch.int64).float(), y)",
    ],
)
def test_non_differentiable_term_variants(term):
    source = f"""
model = nn.Linear(4, 1)
for x, y in loader:
    out = model(x)
    loss = F.mse_loss(out, y) + {term}
    loss.backward()
"""
    assert codes(source) == ["GS204"]


def test_non_differentiable_quiet_on_accuracy_metric():
    source = """
model = nn.Linear(4, 3)
for x, y in loader:
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    accuracy = (logits.argmax(dim=1) == y).float().mean()
    loss.backward()
"""
    assert codes(source) == []


def test_non_differentiable_quiet_on_targets_and_masks():
    source = """
model = nn.Linear(4, 3)
for x, y in loader:
    logits = model(x)
    pseudo = logits.argmax(dim=1)
    mask = (logits.max(dim=1).values > 0.9).float()
    loss = (F.cross_entropy(logits, pseudo, reduction="none") * mask).mean()
    picked = logits.gather(1, logits.argmax(1, keepdim=True))
    loss = loss + picked.mean()
    loss.backward()
"""
    assert codes(source) == []


# GS205 non-leaf-parameter


def test_moved_leaf_is_warning(cases_dir):
    result = check_source((cases_dir / "static" / "graph_breaks.py").read_text())
    (finding,) = [f for f in result.findings if f.code == "GS205"]
    assert finding.span.line == 10
    assert "`scale` is not a leaf" in finding.message


@pytest.mark.parametrize(
    "statement",
    [
        "w = torch.zeros(3, requires_grad=True).cuda()",
        "w = torch.randn(3, 3).requires_grad_().to(device)",
        "w = nn.Parameter(torch.randn(3)).to(device)",
        "w = torch.ones(3, requires_grad=True).double()",
        "w = torch.ones(3, requires_grad=True)\nw = w.to(device)",
    ],
)
def test_moved_leaf_variants(statement):
    assert codes("device = 'cuda'\n" + statement + "\n") == ["GS205"]


@pytest.mark.parametrize(
    "statement",
    [
        "w = torch.zeros(3, device=device, requires_grad=True)",
        "w = nn.Parameter(torch.randn(3).to(device))",
        "w = torch.randn(3).to(device).requires_grad_()",
        "w = torch.zeros(3, requires_grad=True).float()",
        "w = torch.zeros(3, requires_grad=True)\ny = (w.to(device) * 2).sum()",
    ],
)
def test_moved_leaf_quiet(statement):
    assert codes("device = 'cuda'\n" + statement + "\n") == []


# GS206 fix


def test_module_attribute_fix_calls_requires_grad_():
    fix, result = fixed(PRELUDE + "model = nn.Linear(2, 2)\nmodel.requires_grad = False\n", "GS206")
    assert fix.safe
    assert "model.requires_grad_(False)\n" in result
    assert "GS206" not in [f.code for f in check_source(result).findings]


def test_module_attribute_fix_unsafe_on_read():
    source = PRELUDE + "model = nn.Linear(2, 2)\nmodel.requires_grad = False\nif model.requires_grad:\n    print('trainable')\n"
    fix, _ = fixed(source, "GS206")
    assert not fix.safe


# GS207 detach-in-forward


def test_detach_in_forward_is_warning():
    source = PRELUDE + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.encoder(x)
        h = h.detach()
        return self.head(h)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.span.line) == ("GS207", 14)
    assert "`self.encoder`" in finding.message


def test_data_in_forward_is_warning():
    source = """
class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale.data
"""
    assert codes(source) == ["GS207"]


def test_detach_in_forward_quiet_on_second_path():
    source = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        z = self.encoder(x)
        return self.head(z), z.detach()
"""
    assert codes(source) == []


@pytest.mark.parametrize(
    "helper, forward",
    [
        # A method that detaches.
        ("    def _project(self, x):\n        return self.encoder(x).detach()",
         "        return self.head(self._project(x))"),
        ("    def _project(self, x):\n        h = self.encoder(x)\n        return h.data",
         "        return self.head(self._project(x=x))"),
        # A function nested in forward that detaches a value of forward.
        ("",
         "        h = self.encoder(x)\n\n        def classify(t):\n            return self.head(t.detach())\n\n        return classify(h)"),
        # A function of the module that detaches its argument.
        ("",
         "        return detached_head(self.head, self.encoder(x))"),
        # Two helpers deep.
        ("    def _project(self, x):\n        return self.encoder(x).detach()\n\n    def _embed(self, x):\n        return self._project(x) * 2",
         "        return self.head(self._embed(x))"),
    ],
)
def test_detach_in_forward_through_helper(helper, forward):
    source = f"""
def detached_head(layer, features):
    return layer(features.detach())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

{helper}

    def forward(self, x):
{forward}
"""
    (finding,) = findings_of(PRELUDE + source)
    assert finding.code == "GS207"
    assert "`self.encoder` reaches the output of `Net.forward`" in finding.message


def test_no_grad_helper_in_forward_warns():
    source = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 2)

    @torch.no_grad()
    def _features(self, x):
        return self.backbone(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self._features(x))
"""
    (finding,) = findings_of(PRELUDE + source)
    assert (finding.code, finding.span.line) == ("GS208", PRELUDE.count("\n") + 8)
    assert "outside `_features()`" in finding.message


@pytest.mark.parametrize(
    "helper, forward",
    [
        # A stop-gradient helper beside a live path (SimSiam).
        ("    def _stop_grad(self, z):\n        return z.detach()",
         "        z = self.encoder(x)\n        return self.head(z), self._stop_grad(z)"),
        # A target network's features detached in a helper (BYOL, DQN).
        ("    def _target_features(self, x):\n        return self.target_encoder(x).detach()",
         "        return self.head(self.encoder(x)), self._target_features(x)"),
        # A frozen backbone run in a helper under no_grad.
        ("    @torch.no_grad()\n    def _frozen(self, x):\n        return self.backbone(x)",
         "        return self.head(self.encoder(self._frozen(x)))"),
        # Helpers the analysis does not follow: calls with *args, and generators.
        ("    def _project(self, *xs):\n        return self.encoder(xs[0]).detach()",
         "        args = (x,)\n        return self.head(self._project(*args))"),
        ("    def _project(self, x):\n        yield self.encoder(x).detach()",
         "        return self.head(next(self._project(x)))"),
    ],
)
def test_detach_in_forward_through_helper_quiet(helper, forward):
    source = f"""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 8)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.backbone = nn.Linear(8, 8)
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(8, 2)

{helper}

    def forward(self, x):
{forward}
"""
    assert codes("import copy\n" + source) == []


def test_gan_discriminator_helper_is_quiet():
    source = """
class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8))
        self.discriminator = nn.Sequential(nn.Linear(8, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def _discriminator_loss(self, real, fake):
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake.detach())
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def forward(self, z, real):
        fake = self.generator(z)
        d_loss = self._discriminator_loss(real, fake)
        g_loss = F.softplus(-self.discriminator(fake)).mean()
        return d_loss, g_loss
"""
    assert codes(source) == []


# GS208 no-grad-in-forward


def test_no_grad_in_forward_is_warning():
    source = PRELUDE + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            features = self.backbone(x).mean(dim=(2, 3))
        return self.head(features)
"""
    (finding,) = findings_of(source)
    assert (finding.code, finding.span.line) == ("GS208", 13)
    assert "`self.backbone`" in finding.message


@pytest.mark.parametrize(
    "setup",
    [
        "self.backbone.requires_grad_(False)",
        "self.backbone.eval()",
        "for p in self.backbone.parameters():\n            p.requires_grad = False",
    ],
)
def test_no_grad_in_forward_quiet_when_frozen_explicitly(setup):
    source = f"""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        {setup}
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            features = self.backbone(x).mean(dim=(2, 3))
        return self.head(features)
"""
    assert codes(source) == []


def test_no_grad_in_forward_quiet_on_teacher_attribute():
    source = """
class Distiller(nn.Module):
    def __init__(self):
        super().__init__()
        self.teacher = nn.Linear(8, 4)
        self.student = nn.Linear(8, 4)

    def forward(self, x):
        with torch.no_grad():
            soft_targets = F.softmax(self.teacher(x), dim=-1)
        return self.student(x), soft_targets
"""
    assert codes(source) == []
