"""Bad and unusual input: the analysis returns findings or a clear error and never raises."""

import logging
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gradsight.static import check_file, check_source

CASES = Path(__file__).parent / "cases" / "static"
SCRIPTS = sorted(CASES.glob("*.py"))
REAL_SOURCE = "\n".join(path.read_text() for path in SCRIPTS)


class _RuleErrors(logging.Handler):
    """Collect the errors that rule handlers log: the analysis survives them, but they are bugs."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


RULE_ERRORS = _RuleErrors()
logging.getLogger("gradsight.static").addHandler(RULE_ERRORS)


def _check_cleanly(source):
    before = len(RULE_ERRORS.records)
    result = check_source(source)
    new_errors = [record.getMessage() for record in RULE_ERRORS.records[before:]]
    assert new_errors == []
    return result


def test_syntax_error_reports_position():
    result = check_source("import torch\nopt = torch.optim.SGD(p, lr=\n")
    assert result.findings == ()
    assert result.error.kind == "syntax"
    assert result.error.line == 2


def test_deeply_nested_expression_is_an_error_not_a_crash():
    result = check_source("x = " + "-" * 100_000 + "1\n")
    assert result.error is not None
    assert "nested too deeply" in result.error.message


def test_nul_bytes_in_source():
    result = check_source("x = 1\x00\n")
    assert result.error is not None


def test_binary_file(tmp_path):
    path = tmp_path / "weights.py"
    path.write_bytes(bytes(range(256)))
    result = check_file(path)
    assert result.error.kind == "read"
    assert "NUL bytes" in result.error.message


def test_undecodable_file(tmp_path):
    path = tmp_path / "bad.py"
    path.write_bytes(b"x = '\xff\xfe'\n")
    result = check_file(path)
    assert result.error.kind == "read"


def test_ten_thousand_line_file():
    script = (CASES / "vgg_cifar10_tiny_lr.py").read_text()
    copies = [script.replace("def main", f"def main_{index}") for index in range(140)]
    source = "\n".join(copies)
    assert source.count("\n") > 10_000
    result = check_source(source)
    assert result.error is None
    assert len([f for f in result.findings if f.code == "GS101"]) == 140


def test_repeated_import_still_resolves():
    source = "import torch.optim as optim\nimport torch.optim as optim\nopt = optim.SGD(p, lr=1e-9)\n"
    assert [f.code for f in check_source(source).findings] == ["GS101"]


def test_long_alias_chain_is_bounded():
    source = "import torch\na0 = 1e-10\n" + "".join(f"a{i + 1} = a{i}\n" for i in range(3000)) + "opt = torch.optim.SGD(p, lr=a3000)\n"
    result = check_source(source)
    assert result.error is None


def test_self_referencing_names_terminate():
    source = """
import torch
model = Net()
model = model.to("cuda")
model = model
lr = lr
x = y
y = x
opt = torch.optim.SGD(model.parameters(), lr=x)
model.requires_grad = False
"""
    result = _check_cleanly(source)
    assert result.error is None


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(REAL_SOURCE)))
def test_any_prefix_of_real_scripts(cut):
    result = _check_cleanly(REAL_SOURCE[:cut])
    assert result.error is None or result.error.kind == "syntax"


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(REAL_SOURCE)),
    st.integers(min_value=0, max_value=40),
    st.text(alphabet=" \n\t()[]{}:=.,'\"#+-*/0123456789abcdefxyz_éλ🙂", max_size=12),
)
def test_random_edits_of_real_scripts(position, length, replacement):
    edited = REAL_SOURCE[:position] + replacement + REAL_SOURCE[position + length :]
    result = _check_cleanly(edited)
    assert result.error is None or result.error.kind == "syntax"
