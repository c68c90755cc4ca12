"""GS301 unregistered-submodules, GS302 unregistered-tensor and GS303 layer-in-forward."""

import pytest

from conftest import codes_of, findings_of
from gradsight.static import check_source
from test_rule_graph import fix_all, fixed

PRELUDE = """
import torch
import torch.nn as nn
"""


def codes(source, minimum="warning"):
    """Return the GS3 codes reported on `source` at `minimum` severity or worse."""
    return codes_of(PRELUDE + source, minimum=minimum, select=["GS3"])


def module(init, forward="return x"):
    """Build a module class whose __init__ and forward bodies are the given lines."""
    init_lines = "".join(f"        {line}\n" for line in init.strip().splitlines())
    forward_lines = "".join(f"        {line}\n" for line in forward.strip().splitlines())
    return f"""
class Net(nn.Module):
    def __init__(self):
        super().__init__()
{init_lines}
    def forward(self, x):
{forward_lines}"""


# GS301 unregistered-submodules


def test_plain_list_and_dict_of_modules(cases_dir):
    result = check_source((cases_dir / "static" / "plain_list_blocks.py").read_text())
    found = [(f.code, f.span.line) for f in result.findings if f.code == "GS301"]
    assert found == [("GS301", 18), ("GS301", 23)]
    assert result.findings[0].related[0].span.line == 21


@pytest.mark.parametrize(
    "init",
    [
        "self.layers = [nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)]",
        "self.layers = [nn.Linear(4, 4) for _ in range(3)]",
        "self.layers = (nn.Linear(4, 4), nn.Linear(4, 2))",
        "self.heads = {name: nn.Linear(4, 1) for name in ('a', 'b')}",
        "layers = []\nfor _ in range(3):\n    layers.append(nn.Linear(4, 4))\nself.layers = layers",
        "self.layers = list()\nself.layers.extend([nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)])",
    ],
)
def test_unregistered_submodules_variants(init):
    assert codes(module(init)) == ["GS301"]


@pytest.mark.parametrize(
    "init",
    [
        "self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])",
        "self.heads = nn.ModuleDict({'a': nn.Linear(4, 1)})",
        "self.body = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])",
        "self.sizes = [64, 128, 256]",
        "self.names = {'a': 'first', 'b': 'second'}",
        "self.activations = {'relu': nn.ReLU(), 'gelu': nn.GELU()}",
        "self.conv1 = nn.Conv2d(3, 8, 3)\nself.conv2 = nn.Conv2d(8, 8, 3)\nself.convs = [self.conv1, self.conv2]",
        "self.blocks = []\nfor i in range(3):\n    block = nn.Linear(4, 4)\n    self.add_module(f'block{i}', block)\n    self.blocks.append(block)",
    ],
)
def test_unregistered_submodules_quiet(init):
    assert codes(module(init)) == []


def test_unregistered_submodules_fix_empty_list_becomes_module_list(cases_dir):
    source = (cases_dir / "static" / "plain_list_blocks.py").read_text()
    finding = next(f for f in check_source(source).findings if f.code == "GS301")
    assert finding.fix.safe
    assert finding.fix.edits[0].new_text == "nn.ModuleList()"


def test_unregistered_submodules_fix_dict_becomes_module_dict():
    source = PRELUDE + module("self.heads = {'main': nn.Linear(4, 3), 'aux': nn.Linear(4, 2)}", "return self.heads['main'](x)")
    fix, result = fixed(source, "GS301")
    assert fix.safe
    assert "self.heads = nn.ModuleDict({'main': nn.Linear(4, 3), 'aux': nn.Linear(4, 2)})" in result
    assert "GS301" not in [f.code for f in check_source(result).findings]


def test_unregistered_submodules_fix_uses_the_files_alias():
    source = "import torch\n" + module("self.layers = [torch.nn.Linear(4, 4)]", "return self.layers[0](x)").replace("nn.Module", "torch.nn.Module")
    fix, result = fixed(source, "GS301")
    assert "self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4)])" in result


def test_unregistered_submodules_fix_unsafe_with_other_values():
    source = PRELUDE + module("self.stages = [nn.Linear(4, 4), 'skip', nn.Linear(4, 4)]")
    fix, _ = fixed(source, "GS301")
    assert not fix.safe


def test_unregistered_submodules_fix_unsafe_list_method():
    source = PRELUDE + module("self.layers = [nn.Linear(4, 4), nn.Linear(4, 4)]", "self.layers.reverse()\nreturn x")
    fix, _ = fixed(source, "GS301")
    assert not fix.safe


# GS302 unregistered-tensor


def test_tensor_with_requires_grad_is_warning(cases_dir):
    result = check_source((cases_dir / "static" / "plain_list_blocks.py").read_text())
    (finding,) = [f for f in result.findings if f.code == "GS302"]
    assert (finding.span.line, finding.severity.label) == (24, "warning")
    assert "nn.Parameter" in finding.message


def test_tensor_without_requires_grad_is_information():
    (finding,) = findings_of(PRELUDE + module("self.mask = torch.tril(torch.ones(8, 8))"))
    assert (finding.code, finding.severity.label) == ("GS302", "information")
    assert 'register_buffer("mask"' in finding.message


@pytest.mark.parametrize(
    "init",
    [
        "self.scale = torch.ones(1).requires_grad_()",
        "self.weight = torch.empty(4, 4, requires_grad=True)\nnn.init.xavier_uniform_(self.weight)",
        "self.weight = nn.init.normal_(torch.empty(4, 4), std=0.02)\nself.weight.requires_grad = True",
    ],
)
def test_unregistered_tensor_with_grad_variants(init):
    assert codes(module(init)) == ["GS302"]


@pytest.mark.parametrize(
    "init, forward",
    [
        ("self.register_buffer('mask', torch.ones(8, 8))", "return x"),
        ("self.scale = nn.Parameter(torch.ones(1))", "return x * self.scale"),
        ("self.scale = None", "self.cache = torch.zeros(1, requires_grad=True)\nreturn x"),
        ("self.hidden = 16", "return x"),
    ],
)
def test_unregistered_tensor_quiet(init, forward):
    assert codes(module(init, forward), minimum="information") == []


def test_unregistered_tensor_fix_wraps_in_parameter(cases_dir):
    source = (cases_dir / "static" / "plain_list_blocks.py").read_text()
    fix, result = fixed(source, "GS302")
    assert fix.safe
    assert "self.temperature = nn.Parameter(torch.ones(1, requires_grad=True))" in result
    assert "GS302" not in [f.code for f in check_source(result).findings]


def test_unregistered_tensor_fix_unsafe_when_reassigned():
    source = PRELUDE + module("self.scale = torch.ones(1, requires_grad=True)", "self.scale = self.scale.clamp(0, 1)\nreturn x")
    fix, _ = fixed(source, "GS302")
    assert not fix.safe


def test_unregistered_tensor_fix_registers_non_persistent_buffer():
    source = PRELUDE + module("self.mask = torch.ones(8, 8).tril()")
    fix, result = fixed(source, "GS302")
    assert fix.safe
    assert 'self.register_buffer("mask", torch.ones(8, 8).tril(), persistent=False)' in result
    assert "GS302" not in [f.code for f in check_source(result).findings]


# GS303 layer-in-forward


def test_layer_built_in_forward_is_warning():
    source = PRELUDE + module("self.hidden = 16", "x = nn.Linear(x.size(-1), self.hidden)(x)\nreturn x")
    (finding,) = findings_of(source)
    assert (finding.code, finding.span.line) == ("GS303", 11)
    assert "`nn.Linear(x.size(-1), self.hidden)`" in finding.message


@pytest.mark.parametrize(
    "forward",
    [
        "w = nn.Parameter(torch.randn(4, 4))\nreturn x @ w",
        "norm = nn.LayerNorm(4)\nreturn norm(x)",
        "return nn.BatchNorm1d(4, affine=True)(x)",
        "self.proj = nn.Linear(4, 4)\nreturn self.proj(x)",
    ],
)
def test_layer_in_forward_variants(forward):
    assert codes(module("self.hidden = 16", forward)) == ["GS303"]


@pytest.mark.parametrize(
    "forward",
    [
        "return nn.ReLU()(x)",
        "return nn.Flatten()(nn.Dropout(0.1)(x))",
        "return nn.functional.linear(x, torch.ones(4, 4))",
        "return nn.LayerNorm(4, elementwise_affine=False)(x)",
        "return nn.InstanceNorm2d(4)(x)",
        "return nn.Sequential(nn.ReLU(), nn.Dropout(0.1))(x)",
        "if self.proj is None:\n    self.proj = nn.Linear(x.size(-1), 4)\nreturn self.proj(x)",
    ],
)
def test_layer_in_forward_quiet(forward):
    assert codes(module("self.proj = None", forward)) == []


def test_registration_fixes_clear_the_case_file(cases_dir):
    source = fix_all((cases_dir / "static" / "plain_list_blocks.py").read_text(), "GS3")
    assert "self.blocks = nn.ModuleList()" in source
    assert "self.heads = nn.ModuleDict({" in source
    assert "self.temperature = nn.Parameter(" in source
    assert [f.code for f in check_source(source).findings if f.code.startswith("GS3")] == []
