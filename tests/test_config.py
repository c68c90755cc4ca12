"""Configuration: [tool.gradsight] in pyproject.toml, noqa comments, severity overrides and thresholds."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradsight.config import ConfigError, Settings, load_settings, parse_settings, settings_for
from gradsight.findings import Severity
from gradsight.fixes import apply_fixes
from gradsight.findings import Edit, Fix, Span
from gradsight.static import check_source

TINY_LR = "import torch\nopt = torch.optim.SGD(params, lr=1e-9)\n"


def _gradsight():
    script = Path(sys.executable).with_name("gradsight")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradsight"]


def test_noqa_with_code_suppresses():
    source = "import torch\nopt = torch.optim.SGD(params, lr=1e-9)  # noqa: GS101\n"
    assert check_source(source).findings == ()


def test_noqa_with_other_code_keeps_finding():
    source = "import torch\nopt = torch.optim.SGD(params, lr=1e-9)  # noqa: E501, GS102\n"
    assert [f.code for f in check_source(source).findings] == ["GS101"]


def test_bare_noqa_keeps_our_findings():
    source = "import torch\nopt = torch.optim.SGD(params, lr=1e-9)  # noqa\n"
    assert [f.code for f in check_source(source).findings] == ["GS101"]


def test_severity_override_longest_prefix_wins():
    settings = parse_settings({"severity": {"GS1": "hint", "GS101": "error"}}, "test")
    (finding,) = check_source(TINY_LR, settings=settings).findings
    assert finding.severity is Severity.ERROR


def test_threshold_override():
    settings = parse_settings({"thresholds": {"lr-min": 1e-10}}, "test")
    assert check_source(TINY_LR, settings=settings).findings == ()


def test_select_and_ignore_from_settings():
    assert check_source(TINY_LR, settings=parse_settings({"ignore": ["GS1"]}, "test")).findings == ()
    assert check_source(TINY_LR, settings=parse_settings({"select": ["GS5"]}, "test")).findings == ()


@pytest.mark.parametrize(
    "table, message",
    [
        ({"selct": ["GS1"]}, "unknown setting selct"),
        ({"select": "GS1"}, "must be a list"),
        ({"ignore": ["GS999"]}, "unknown rule code 'GS999'"),
        ({"severity": {"GS101": "loud"}}, "invalid severity 'loud'"),
        ({"thresholds": {"lr_max": 1}}, "unknown threshold 'lr_max'"),
        ({"thresholds": {"lr-min": -1}}, "must be a non-negative number"),
    ],
)
def test_invalid_settings_are_rejected(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(table, "pyproject.toml")


def test_nearest_pyproject_with_table_applies(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradsight]\nignore = ["GS101"]\n')
    sub = tmp_path / "pkg" / "sub"
    sub.mkdir(parents=True)
    (sub / "pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no [tool.gradsight]: keep searching upwards
    script = sub / "train.py"
    script.write_text(TINY_LR)
    settings = settings_for(script)
    assert settings.ignore == ("GS101",)
    assert settings.source == tmp_path / "pyproject.toml"


def test_no_pyproject_gives_defaults(tmp_path):
    assert settings_for(tmp_path / "train.py") == Settings()


def test_cli_reads_pyproject_and_no_config(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradsight]\nignore = ["GS101"]\n')
    (tmp_path / "train.py").write_text(TINY_LR)
    configured = subprocess.run([*_gradsight(), "check", "train.py"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert configured.returncode == 0
    plain = subprocess.run([*_gradsight(), "check", "--no-config", "train.py"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert plain.returncode == 1


def test_cli_invalid_pyproject_is_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradsight]\nselect = ["GS9"]\n')
    (tmp_path / "train.py").write_text(TINY_LR)
    result = subprocess.run([*_gradsight(), "check", "train.py"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "unknown rule code 'GS9'" in result.stderr


def test_cli_broken_toml_is_usage_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.gradsight\n")
    (tmp_path / "train.py").write_text(TINY_LR)
    result = subprocess.run([*_gradsight(), "check", "train.py"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "invalid TOML" in result.stderr


def test_apply_fixes_skips_overlapping_and_orders_edits():
    source = "a = 1\nb = 2\n"
    first = Fix("rename a", (Edit(Span(1, 1, 1, 2), "alpha"),))
    overlapping = Fix("rename a again", (Edit(Span(1, 1, 1, 6), "x = 0"),))
    second = Fix("insert and delete", (Edit(Span(2, 1, 2, 1), "# b\n"), Edit(Span(1, 5, 1, 6), "10")))
    text, applied = apply_fixes(source, [first, overlapping, second])
    assert applied == 2
    assert text == "alpha = 10\n# b\nb = 2\n"


def test_sarif_and_github_formats(tmp_path):
    (tmp_path / "train.py").write_text(TINY_LR)
    (tmp_path / "broken.py").write_text("def f(:\n")
    sarif = subprocess.run([*_gradsight(), "check", "--format", "sarif", "."], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    log = json.loads(sarif.stdout)
    run = log["runs"][0]
    assert log["version"] == "2.1.0"
    assert run["tool"]["driver"]["rules"][0]["id"] == "GS101"
    assert run["results"][0]["ruleId"] == "GS101"
    assert run["results"][0]["level"] == "warning"
    assert run["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
    assert run["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"

    github = subprocess.run([*_gradsight(), "check", "--format", "github", "."], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    lines = github.stdout.splitlines()
    assert lines[0].startswith("::error file=broken.py,line=1,col=7,title=gradsight::SyntaxError")
    assert lines[1].startswith("::warning file=train.py,line=2,col=31,endLine=2,endColumn=38,title=GS101 lr-too-small::learning rate 1e-9 ")
    assert github.returncode == 1


def test_sarif_uri_is_percent_encoded(tmp_path):
    (tmp_path / "odd dir").mkdir()
    (tmp_path / "odd dir" / "a,b 100%.py").write_text(TINY_LR)
    result = subprocess.run([*_gradsight(), "check", "--format", "sarif", "odd dir"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    location = json.loads(result.stdout)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "odd%20dir/a%2Cb%20100%25.py"
