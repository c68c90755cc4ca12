"""`gradsight run` on findings that need many training steps: dead ReLU units (GS911), steps
that a GradScaler skips (GS912) and gradient clipping that cuts every step (GS913).

Each script in tests/cases/run_history trains a small model on random data on the CPU. The
command-line tests run the real `gradsight run`; the others call `run_script` in this process.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gradsight.runtime import history
from gradsight.runtime.run import run_script

CASES = Path(__file__).parent / "cases" / "run_history"
GRADSIGHT = Path(sys.executable).parent / "gradsight"


def run_cli(script: Path, *options: str) -> subprocess.CompletedProcess:
    command = [str(GRADSIGHT), "run", *options, str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=script.parent)


@functools.cache
def json_report(case: str) -> tuple[int, dict]:
    """Return the exit status and JSON report of `gradsight run --format json` on a case."""
    completed = run_cli(CASES / case, "--format", "json")
    assert completed.stdout, f"{case}: no report; stderr: {completed.stderr[-2000:]}"
    return completed.returncode, json.loads(completed.stdout)


@functools.cache
def text_report(case: str) -> subprocess.CompletedProcess:
    return run_cli(CASES / case)


def findings_with(report: dict, code: str) -> list[dict]:
    return [finding for finding in report["findings"] if finding["code"] == code]


def write_script(tmp_path, source: str) -> str:
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


def codes(result) -> set[str]:
    return {finding["code"] for finding in result.report.findings}


# The command line, on the case scripts.


def test_dead_relu_is_gs911():
    status, report = json_report("dead_relu.py")
    [finding] = findings_with(report, "GS911")
    assert finding["layer"] == "act"
    assert finding["severity"] == "warning"
    assert finding["path"] == str((CASES / "dead_relu.py").resolve())
    assert finding["line"] == 11  # self.act = nn.ReLU()
    assert "act (ReLU): 32 of 32 units output 0 for all 80 inputs seen" in finding["message"]
    assert status == 1


def test_nan_under_scaler_is_gs912():
    status, report = json_report("nan_under_scaler.py")
    [finding] = findings_with(report, "GS912")
    assert finding["layer"] == "optimizer"
    assert finding["line"] == 20  # scaler.step(optimizer)
    assert "the GradScaler skipped 16 of 16 optimizer steps" in finding["message"]
    assert "the gradients are not finite in themselves" in finding["message"]
    assert report["run"]["endedBy"] == "skipped"
    assert report["run"]["skippedSteps"] == 16
    assert report["run"]["optimizerSteps"] == 0
    assert status == 1


def test_clip_too_low_is_gs913():
    status, report = json_report("clip_too_low.py")
    [finding] = findings_with(report, "GS913")
    assert finding["layer"] == ""
    assert finding["line"] == 15  # torch.nn.utils.clip_grad_norm_(...)
    assert finding["message"].startswith("clip_grad_norm_(max_norm=0.001) cut the gradient to a tenth or less on 5 of 5 steps")
    assert "scaler.unscale_" not in finding["message"]
    assert status == 1


@pytest.mark.parametrize("case", ["healthy_relu.py", "amp_calibrating.py", "clip_sensible.py"])
def test_healthy_case_is_quiet(case):
    status, report = json_report(case)
    assert [f for f in report["findings"] if f["severity"] in ("warning", "error")] == []
    assert status == 0


def test_calibrating_scaler_skipped_early_steps():
    # The case must really skip steps at the start, or the quiet report above proves nothing.
    _, report = json_report("amp_calibrating.py")
    assert report["run"]["skippedSteps"] >= 1
    assert report["run"]["optimizerSteps"] == 5
    assert report["run"]["endedBy"] == "steps"


def test_scaled_gradients_reported_unscaled():
    # The scale is 2**127 at the start: read as they are, the gradients would look exploding.
    _, report = json_report("amp_calibrating.py")
    grad_norms = [layer["gradNorm"] for layer in report["models"][0]["layers"]]
    assert all(0 < norm < 1e3 for norm in grad_norms), grad_norms


@pytest.mark.parametrize("case, line", [
    ("dead_relu.py", "dead_relu.py:11: GS911 warning: act (ReLU): 32 of 32 units"),
    ("nan_under_scaler.py", "nan_under_scaler.py:20: GS912 warning: optimizer (Adam): the GradScaler skipped 16 of 16"),
    ("clip_too_low.py", "clip_too_low.py:15: GS913 warning: clip_grad_norm_(max_norm=0.001)"),
])
def test_text_report_shows_finding(case, line):
    completed = text_report(case)
    assert completed.returncode == 1
    assert line in completed.stdout


def test_text_report_says_skipped_steps_stopped_script():
    completed = text_report("nan_under_scaler.py")
    assert "gradsight: stopped the script after 16 optimizer steps that the GradScaler skipped." in completed.stdout


# Dead units (GS911), in this process.


def test_dead_relu_in_sequential_names_previous_layer(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        nn.init.constant_(model[0].bias, -20.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(10):
            loss = model(torch.randn(8, 6)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    [finding] = [f for f in result.report.findings if f["code"] == "GS911"]
    assert finding["layer"] == "1"
    assert finding["line"] == 5
    assert "the layer before it, 0 (Linear)," in finding["message"]


def test_dead_conv_channels_counted_per_position(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
        nn.init.constant_(model[0].bias, -50.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(10):
            loss = model(torch.randn(4, 3, 6, 6)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    [finding] = [f for f in result.report.findings if f["code"] == "GS911"]
    assert "1 (ReLU6): 288 of 288 units output 0 for all 12 inputs seen" in finding["message"]


def test_dead_units_need_enough_inputs(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        nn.init.constant_(model[0].bias, -20.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(10):
            loss = model(torch.randn(2, 6)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)  # 6 inputs: fewer than DEAD_UNITS_MIN_INPUTS
    assert "GS911" not in codes(result)


def test_shared_relu_with_changing_shapes_is_folded(tmp_path):
    # One ReLU module used after two layers of different widths, and images of two sizes.
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv_1 = nn.Conv2d(3, 8, 3, padding=1)
                self.conv_2 = nn.Conv2d(8, 4, 3, padding=1)
                self.relu = nn.ReLU()

            def forward(self, x):
                return self.relu(self.conv_2(self.relu(self.conv_1(x)))).mean(dim=(1, 2, 3))

        torch.manual_seed(0)
        model = Net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(10):
            size = 8 if step % 2 else 6
            loss = model(torch.randn(8, 3, size, size)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=4)
    assert result.outcome.ended_by == "steps"
    assert "GS911" not in codes(result)


def test_first_forward_under_inference_mode(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
        with torch.inference_mode():
            model(torch.randn(8, 6))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(10):
            loss = model(torch.randn(8, 6)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    assert result.outcome.ended_by == "steps"
    assert not result.report.has_problems, result.report.findings


def test_functional_relu_is_not_tracked(tmp_path):
    # F.relu runs no module, so no forward hook is called for it: a documented blind spot.
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        layer = nn.Linear(6, 16)
        head = nn.Linear(16, 1)
        nn.init.constant_(layer.bias, -20.0)
        optimizer = torch.optim.SGD([*layer.parameters(), *head.parameters()], lr=0.01)
        for step in range(10):
            loss = head(F.relu(layer(torch.randn(8, 6)))).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    """)
    result = run_script(script, [], steps=3)
    assert "GS911" not in codes(result)


def test_dead_units_threshold():
    assert history.DeadUnits("ReLU", dead=58, units=64, inputs=8).reported
    assert not history.DeadUnits("ReLU", dead=57, units=64, inputs=8).reported
    assert not history.DeadUnits("ReLU", dead=64, units=64, inputs=7).reported


# Skipped steps (GS912), in this process.

AMP_LOOP = """
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
for step in range(100):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(16, 8)).float().pow(2).mean()
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
"""


def test_infinite_init_scale_advises_lower_scale(tmp_path):
    script = write_script(tmp_path, AMP_LOOP.replace("INIT_SCALE", "float('inf')"))
    result = run_script(script, [], steps=20)
    [finding] = [f for f in result.report.findings if f["code"] == "GS912"]
    assert "skipped 20 of 20 optimizer steps" in finding["message"]
    assert "its scale went from inf to inf" in finding["message"]
    assert "lower init_scale" in finding["message"]
    assert result.outcome.ended_by == "skipped"


def test_default_scale_on_cpu_skips_nothing(tmp_path):
    # bfloat16 autocast keeps float32 gradients, which the default scale 2**16 does not overflow.
    script = write_script(tmp_path, AMP_LOOP.replace("INIT_SCALE", "2.0**16"))
    result = run_script(script, [], steps=5)
    assert result.report.run["skippedSteps"] == 0
    assert not result.report.has_problems, result.report.findings


def test_disabled_scaler_is_not_recorded(tmp_path):
    script = write_script(tmp_path, AMP_LOOP.replace('"cpu", init_scale=INIT_SCALE', '"cpu", enabled=False'))
    result = run_script(script, [], steps=3)
    assert result.outcome.ended_by == "steps"
    assert "GS912" not in codes(result)


def test_fused_optimizer_skips_seen_through_found_inf(tmp_path):
    # A fused Adam applies the scaler's verdict inside its own step, which always runs.
    source = (CASES / "nan_under_scaler.py").read_text().replace("lr=1e-3)", "lr=1e-3, fused=True)")
    script = write_script(tmp_path, source)
    result = run_script(script, [], steps=5)
    [finding] = [f for f in result.report.findings if f["code"] == "GS912"]
    assert "skipped 5 of 5 optimizer steps" in finding["message"]


class _Scaler:
    """Stands in for a GradScaler in the message of a recorded history."""

    def get_scale(self) -> float:
        return 1024.0


@pytest.mark.parametrize("skipped, reported", [
    ([True] * 5, True),                                 # nothing ran yet
    ([True] * 4, False),                                # too few steps to judge
    ([True] * 8 + [False] * 5, False),                  # calibration, then every step ran
    ([True, True, False, True, True, False, True, True], True),  # 4 of 6 after calibration
    ([False, True] * 5, False),                         # half, not most
])
def test_skipped_steps_rule(skipped, reported):
    scaler_history = history.ScalerHistory()
    scaler = _Scaler()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for flag in skipped:
        scaler_history.record(scaler, optimizer, not flag, None)
    found = scaler_history.findings(lambda optimizer: "optimizer")
    assert bool(found) == reported


# Clipping (GS913), in this process.


def test_clip_imported_by_name_is_recorded(tmp_path):
    source = (CASES / "clip_too_low.py").read_text()
    source = source.replace("import torch.nn as nn\n", "import torch.nn as nn\nfrom torch.nn.utils import clip_grad_norm_\n")
    source = source.replace("torch.nn.utils.clip_grad_norm_(", "clip_grad_norm_(")
    result = run_script(write_script(tmp_path, source), [], steps=5)
    [finding] = [f for f in result.report.findings if f["code"] == "GS913"]
    assert finding["line"] == 16


def test_clip_of_scaled_gradients_mentions_unscale(tmp_path):
    script = write_script(tmp_path, AMP_LOOP.replace("INIT_SCALE", "2.0**16").replace(
        "    scaler.step(optimizer)", "    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    scaler.step(optimizer)"))
    result = run_script(script, [], steps=5)
    [finding] = [f for f in result.report.findings if f["code"] == "GS913"]
    assert "call scaler.unscale_(optimizer) before clipping" in finding["message"]


def test_clip_needs_enough_calls(tmp_path):
    result = run_script(str(CASES / "clip_too_low.py"), [], steps=4)
    assert "GS913" not in codes(result)


def test_hooks_of_history_removed_after_run():
    scaler_step, scaler_scale = torch.amp.GradScaler.step, torch.amp.GradScaler.scale
    clip, clip_in_module = torch.nn.utils.clip_grad_norm_, torch.nn.utils.clip_grad.clip_grad_norm_
    run_script(str(CASES / "clip_too_low.py"), [], steps=2)
    assert torch.amp.GradScaler.step is scaler_step
    assert torch.amp.GradScaler.scale is scaler_scale
    assert torch.nn.utils.clip_grad_norm_ is clip
    assert torch.nn.utils.clip_grad.clip_grad_norm_ is clip_in_module


def test_hardswish_negative_outputs_are_alive():
    tracker = history.DeadUnitTracker()
    hardswish = torch.nn.Hardswish()
    tracker.observe("negative", hardswish, hardswish(torch.full((16, 4), -1.0)))
    tracker.observe("zero", hardswish, hardswish(torch.full((16, 4), -5.0)))
    counts = tracker.read()
    assert counts["negative"].dead == 0
    assert counts["zero"].dead == 4


def test_changing_length_folds_to_features():
    tracker = history.DeadUnitTracker()
    relu = torch.nn.ReLU()
    features = torch.tensor([1.0, 0.0, 2.0, 0.0])
    tracker.observe("act", relu, features.expand(8, 6, 4))  # (batch, length, features)
    tracker.observe("act", relu, features.expand(8, 5, 4))
    counts = tracker.read()["act"]
    assert counts.units == 4
    assert counts.dead == 2
    assert counts.inputs == 16
