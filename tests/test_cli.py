"""The `gradsight check` command as a user runs it: a real subprocess of the installed console script."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).parent / "cases" / "static"


def _gradsight():
    script = Path(sys.executable).with_name("gradsight")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradsight"]


def run(*args, cwd=None):
    return subprocess.run([*_gradsight(), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_check_text_lines_and_exit_status(tmp_path):
    shutil.copy(CASES / "vgg_cifar10_tiny_lr.py", tmp_path / "train.py")
    result = run("check", "train.py", cwd=tmp_path)
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("train.py:55:47: GS101 warning: learning rate 1e-10")
    assert result.stdout.splitlines()[-1] == "Found 1 problem (1 warning) in 1 file."


def test_check_json_fields():
    result = run("check", "--format", "json", str(CASES / "normalize_std.py"))
    assert result.returncode == 1
    items = json.loads(result.stdout)
    assert [(item["code"], item["line"], item["severity"]) for item in items] == [
        ("GS502", 9, "warning"),
        ("GS502", 13, "warning"),
        ("GS502", 15, "error"),
    ]
    for key in ("path", "line", "column", "end_line", "end_column", "code", "rule", "severity", "message"):
        assert key in items[0]
    assert items[0]["rule"] == "normalize-stats"


def test_check_clean_file_exits_zero(tmp_path):
    (tmp_path / "ok.py").write_text("import torch\nopt = torch.optim.SGD(params, lr=0.1)\n")
    result = run("check", str(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == "All checks passed (1 file checked)."


def test_check_information_only_exits_zero():
    result = run("check", str(CASES / "clean_finetune_amp_accum.py"))
    assert result.returncode == 0
    assert "GS201" in result.stdout


def test_check_folder_with_broken_and_binary_files(tmp_path):
    (tmp_path / "a_broken.py").write_text("def f(:\n")
    (tmp_path / "b_binary.py").write_bytes(b"\x00\x01\x02")
    (tmp_path / "c_latin1.py").write_bytes("# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\nopt = torch.optim.SGD(p, lr=1e-9)\n".encode("latin-1"))
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "skipped.py").write_text("import torch\nopt = torch.optim.SGD(p, lr=1e-9)\n")
    result = run("check", str(tmp_path))
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert lines[0].endswith("a_broken.py:1:7: SyntaxError: invalid syntax (file not checked)")
    assert "b_binary.py:1:1: not a Python source file" in lines[1]
    assert "c_latin1.py:4:" in lines[2]
    assert "GS101" in lines[2]
    assert len(lines) == 4
    assert result.stderr == ""


def test_check_keeps_python_syntax_warnings_out_of_stderr(tmp_path):
    # `1if` and "\d" make Python's parser warn; the checker has nothing to add to what running the file shows.
    path = tmp_path / "warns.py"
    path.write_text('x = 1if True else 2\npattern = "\\d+"\n')
    result = run("check", str(path))
    assert result.returncode == 0
    assert result.stderr == ""


def test_check_select_and_ignore():
    path = str(CASES / "frozen_by_mistake.py")
    selected = json.loads(run("check", "--format", "json", "--select", "GS2", "--ignore", "GS206", path).stdout)
    assert [item["code"] for item in selected] == ["GS201"]
    prefixed = json.loads(run("check", "--format", "json", "--select", "gs206,GS101", path).stdout)
    assert [item["code"] for item in prefixed] == ["GS206"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "--select", "GS999", "x.py"], "unknown rule code 'GS999'"),
        (["check", "does-not-exist.py"], "path not found: does-not-exist.py"),
        (["check", "--format", "xml", "x.py"], "invalid choice"),
        ([], "usage"),
    ],
)
def test_usage_errors_exit_two(tmp_path, args, message):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_rule_prints_documentation():
    result = run("rule", "gs101")
    assert result.returncode == 0
    assert result.stdout.startswith("# lr-too-small (GS101)")


def test_module_entry_point_matches_console_script():
    result = subprocess.run([sys.executable, "-m", "gradsight", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("gradsight ")


def test_static_check_never_imports_torch(tmp_path):
    # The checker must work where torch is absent and must never import the user's code.
    probe = "import sys; from gradsight.cli import main; code = main(['check', sys.argv[1]]); assert 'torch' not in sys.modules and 'torchvision' not in sys.modules; sys.exit(code)"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", probe, str(CASES)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr


def test_rule_static_page_unchanged():
    from gradsight.static import rule_doc_path

    result = run("rule", "GS503")
    assert result.returncode == 0
    assert result.stdout == rule_doc_path("GS503").read_text(encoding="utf-8")


@pytest.mark.parametrize("query", ["GS909", "gs909", "tiny-update"])
def test_rule_prints_runtime_code(query):
    result = run("rule", query)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "# tiny-update (GS909)"
    assert "Default severity: warning." in lines
    assert "One optimizer step changes the weights by less than 1e-7 of their norm" in result.stdout
    assert "Thresholds: documented in docs/runtime-protocol.md, section Findings" in result.stdout


def test_rule_history_code_names_tools():
    result = run("rule", "GS912")
    assert result.returncode == 0
    assert result.stdout.startswith("# skipped-steps (GS912)\n")
    assert "reported by `gradsight run`;" in result.stdout
    assert "constants in gradsight/runtime/history.py" in result.stdout


def test_rule_unknown_lists_runtime_codes():
    result = run("rule", "GS999")
    assert result.returncode == 2
    assert "unknown rule 'GS999'" in result.stderr
    assert "GS701, GS901," in result.stderr
    assert result.stderr.rstrip().endswith("GS915, GS920")


def test_runtime_rules_match_findings():
    from gradsight.runtime import classify, distributed
    from gradsight.runtime.codes import RUNTIME_RULES

    for status, code in classify.CODES.items():
        assert RUNTIME_RULES[code].name == status
        assert RUNTIME_RULES[code].severity == classify.SEVERITIES[status]
    assert RUNTIME_RULES[classify.UNREGISTERED_LEAF].name == "unregistered-leaf"
    assert RUNTIME_RULES[distributed.REPLICAS_DIFFER].name == "replicas-diverged"
    assert {"GS911", "GS912", "GS913"} <= set(RUNTIME_RULES)
