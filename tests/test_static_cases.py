"""The static cases: every expected finding is reported on one of its lines, at least as severe."""

import json
from pathlib import Path

import pytest

from gradsight.findings import Severity
from gradsight.static import RULES, check_file

CASES = Path(__file__).parent / "cases" / "static"
EXPECTED = json.loads((CASES / "expected.json").read_text())["cases"]


def _expected(name):
    # Expectations for rules that are not in the catalog yet are skipped until those rules land.
    return [item for item in EXPECTED[name] if item["code"] in RULES]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_reports_expected_findings(name):
    result = check_file(CASES / name)
    assert result.error is None
    remaining = list(result.findings)
    for item in _expected(name):
        floor = Severity.parse(item["severity"])
        match = next(
            (f for f in remaining if f.code == item["code"] and f.span.line in item["lines"] and f.severity >= floor),
            None,
        )
        assert match is not None, f"{name}: no {item['code']} on lines {item['lines']} at {item['severity']} or worse; got {result.findings}"
        remaining.remove(match)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case_has_no_unexpected_warnings(name):
    result = check_file(CASES / name)
    expected_codes = {item["code"] for item in EXPECTED[name]}
    unexpected = [f for f in result.findings if f.severity >= Severity.WARNING and f.code not in expected_codes]
    assert unexpected == []


@pytest.mark.parametrize("name", [name for name, items in EXPECTED.items() if not items])
def test_clean_case_gets_no_warning(name):
    result = check_file(CASES / name)
    assert [f for f in result.findings if f.severity >= Severity.WARNING] == []


def test_long_correct_training_program_gets_no_warning():
    # The 2,000-line benchmark input: ResNet, ViT, GRU and U-Net, AMP with GradScaler, accumulation, EMA, checkpoints.
    result = check_file(Path(__file__).parents[1] / "bench" / "inputs" / "long_train.py")
    assert result.error is None
    assert [f for f in result.findings if f.severity >= Severity.WARNING] == []
