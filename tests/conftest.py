import textwrap
from pathlib import Path

import pytest

from gradsight.static import check_source

CASES = Path(__file__).parent / "cases"


def findings_of(source: str, **options):
    """Check dedented source and return its findings, failing the test if it does not parse."""
    result = check_source(textwrap.dedent(source), **options)
    assert result.error is None, result.error
    return result.findings


def codes_of(source: str, minimum: str = "hint", **options) -> list[str]:
    from gradsight.findings import Severity

    floor = Severity.parse(minimum)
    return [finding.code for finding in findings_of(source, **options) if finding.severity >= floor]


@pytest.fixture
def cases_dir() -> Path:
    return CASES
