"""Every rule is documented in the same form, and docs/rules.md lists them all."""

import subprocess
import sys
from pathlib import Path

import pytest

from gradsight.static import RULES, rule_doc_path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["## What it does", "## Why is this bad?", "## Example", "## Fix safety"]


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_page_has_sections(code):
    page = rule_doc_path(code).read_text(encoding="utf-8")
    assert page.startswith(f"# {RULES[code].name} ({code})")
    for section in SECTIONS:
        assert section in page, f"{code}: missing {section}"


def test_rule_index_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "rule_index.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
