"""`gradsight run --format json` on the runtime cases: every expected finding is reported, with
its source line, and the healthy script gets no warning. Runs the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNTIME_CASES = Path(__file__).parent / "cases" / "runtime"
EXPECTED = json.loads((RUNTIME_CASES / "expected.json").read_text())["cases"]
GRADSIGHT = Path(sys.executable).parent / "gradsight"


def run_json(script: Path, *options: str) -> tuple[int, dict]:
    command = [str(GRADSIGHT), "run", "--format", "json", *options, str(script)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=script.parent)
    assert completed.stdout, f"no report on stdout; stderr: {completed.stderr[-2000:]}"
    return completed.returncode, json.loads(completed.stdout)


@pytest.fixture(scope="module")
def results():
    return {case: run_json(RUNTIME_CASES / case) for case in EXPECTED}


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_expected_findings(results, case):
    _, report = results[case]
    layers = [layer for model in report["models"] for layer in model["layers"]]
    for expected in EXPECTED[case]:
        codes = _as_list(expected["code"])
        matching = [f for f in report["findings"] if f["code"] in codes and expected["layer"] in f["layer"]]
        assert matching, f"{case}: no finding with code {codes} on layer {expected['layer']!r}: {report['findings']}"
        if "severity" in expected:
            assert {f["severity"] for f in matching} == {expected["severity"]}
        statuses = {layer["status"] for layer in layers if expected["layer"] in layer["name"]}
        assert statuses & set(_as_list(expected["status"])), f"{case}: statuses {statuses}"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_exit_status(results, case):
    status, report = results[case]
    serious = any(f["severity"] in ("warning", "error") for f in report["findings"])
    assert status == (1 if serious else 0)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_findings_have_source_lines(results, case):
    _, report = results[case]
    for finding in report["findings"]:
        assert set(finding) == {"code", "severity", "message", "layer", "path", "line"}
        assert finding["path"] == str((RUNTIME_CASES / case).resolve())
        assert isinstance(finding["line"], int)


def test_healthy_case_has_no_warning(results):
    status, report = results["healthy_vgg.py"]
    assert status == 0
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
    assert {layer["status"] for model in report["models"] for layer in model["layers"]} == {"ok"}


def test_run_stops_after_requested_steps(results):
    _, report = results["healthy_vgg.py"]
    assert report["run"]["endedBy"] == "steps"
    assert report["run"]["optimizerSteps"] == 5
    assert report["models"][0]["steps"] == [0, 4]


def test_frozen_layer_located_at_definition(results):
    _, report = results["frozen_layer.py"]
    finding = next(f for f in report["findings"] if f["code"] == "GS920")
    # self.layer_4 = nn.Linear(64, 5) is line 14 of the script.
    assert finding["line"] == 14


def test_cleared_before_step_is_unchanged(results):
    _, report = results["cleared_before_step.py"]
    assert {layer["status"] for layer in report["models"][0]["layers"]} == {"unchanged"}


def test_text_report_shows_table_and_findings():
    completed = subprocess.run(
        [str(GRADSIGHT), "run", "--steps", "2", "frozen_layer.py"],
        capture_output=True, text=True, timeout=120, cwd=RUNTIME_CASES,
    )
    assert completed.returncode == 0
    lines = completed.stdout.splitlines()
    assert any(line.split() == ["layer", "type", "status", "grad", "norm", "update", "ratio", "lr"] for line in lines)
    assert any(line.split()[:3] == ["layer_4", "Linear", "frozen"] for line in lines)
    assert "frozen_layer.py:14: GS920 information: layer_4" in completed.stdout
    assert "stopped the script after 2 optimizer steps" in completed.stdout


def test_missing_script_is_usage_error(tmp_path):
    completed = subprocess.run([str(GRADSIGHT), "run", str(tmp_path / "absent.py")], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "script not found" in completed.stderr


def test_zero_steps_is_usage_error():
    completed = subprocess.run([str(GRADSIGHT), "run", "--steps", "0", "healthy_vgg.py"],
                               capture_output=True, text=True, timeout=60, cwd=RUNTIME_CASES)
    assert completed.returncode == 2
    assert "--steps must be 1 or more, not 0" in completed.stderr


def test_json_keeps_script_output_off_stdout(tmp_path):
    script = tmp_path / "noisy.py"
    script.write_text("import sys\nprint('hello from the script')\nprint(sys.argv[1:])\n")
    status, report = run_json(script, "--steps", "1")
    assert status == 0
    assert report["models"] == []
    assert report["run"]["endedBy"] == "end"


def test_script_arguments_after_separator(tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import sys\nprint(sys.argv[1:])\n")
    completed = subprocess.run([str(GRADSIGHT), "run", str(script), "--", "--lr", "0.1"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert completed.stdout.splitlines()[0] == "['--lr', '0.1']"


def test_script_exception_exits_1(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text("raise RuntimeError('out of data')\n")
    completed = subprocess.run([str(GRADSIGHT), "run", str(script)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 1
    assert "RuntimeError: out of data" in completed.stderr
    assert "gradsight: the script raised an exception." in completed.stdout
