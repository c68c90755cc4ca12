"""`gradsight run` as a user runs it, a real subprocess, on small scripts for the way a run ends
and for what the report then contains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gradsight

GRADSIGHT = Path(sys.executable).parent / "gradsight"
PACKAGE_FOLDER = str(Path(gradsight.__file__).parent)

OPTIMIZER_IN_LOOP = """
import torch
import torch.nn as nn

model = nn.Linear(10, 1)
for step in range(3000):
    x, y = torch.randn(8, 10), torch.randn(8, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
print("reached the end of the loop")
"""


def write_script(tmp_path: Path, source: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def run(script: Path, *options: str) -> subprocess.CompletedProcess:
    command = [str(GRADSIGHT), "run", *options, str(script)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=script.parent)


def run_json(script: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    completed = run(script, "--format", "json", *options)
    assert completed.stdout, f"no report on stdout; stderr: {completed.stderr[-2000:]}"
    return completed, json.loads(completed.stdout)


def test_optimizer_in_loop_stops_after_steps(tmp_path):
    completed = run(write_script(tmp_path, OPTIMIZER_IN_LOOP))
    assert completed.returncode == 0, completed.stderr
    assert "reached the end of the loop" not in completed.stdout
    assert "gradsight: stopped the script after 5 optimizer steps." in completed.stdout


def test_optimizer_in_loop_header_lists_optimizer_once(tmp_path):
    completed = run(write_script(tmp_path, OPTIMIZER_IN_LOOP))
    header = next(line for line in completed.stdout.splitlines() if line.startswith("Model "))
    assert header.count("Adam") == 1
    assert "; Adam lr 0.001 (5 instances);" in header


def test_optimizer_in_loop_note(tmp_path):
    completed = run(write_script(tmp_path, OPTIMIZER_IN_LOOP))
    assert (
        "note: `optimizer` (Adam) was built anew before most optimizer steps (5 instances for 5 steps), "
        "so its state (momentum, Adam's moment estimates) starts from zero each time"
    ) in completed.stdout


def test_optimizer_in_loop_json(tmp_path):
    _, report = run_json(write_script(tmp_path, OPTIMIZER_IN_LOOP), "--steps", "3")
    assert report["run"]["optimizerSteps"] == 3
    assert report["run"]["endedBy"] == "steps"
    optimizers = report["models"][0]["optimizers"]
    assert len(optimizers) == 1
    assert optimizers[0]["instances"] == 3


def test_optimizer_per_epoch_has_no_note(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Linear(10, 1)
        for epoch in range(2):
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            for step in range(4):
                optimizer.zero_grad()
                nn.functional.mse_loss(model(torch.randn(8, 10)), torch.randn(8, 1)).backward()
                optimizer.step()
    """)
    _, report = run_json(script, "--steps", "6")
    assert report["run"]["optimizerSteps"] == 6
    assert report["models"][0]["optimizers"][0]["instances"] == 2
    assert not [note for note in report["notes"] if "built anew" in note]


def test_steps_count_each_optimizer(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        generator = nn.Linear(4, 4)
        critic = nn.Linear(4, 1)
        generator_optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
        critic_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
        for step in range(100):
            critic_optimizer.zero_grad()
            critic(generator(torch.randn(8, 4)).detach()).mean().backward()
            critic_optimizer.step()
            generator_optimizer.zero_grad()
            (-critic(generator(torch.randn(8, 4))).mean()).backward()
            generator_optimizer.step()
            print("iteration", step, "done", flush=True)
    """)
    completed, report = run_json(script, "--steps", "4")
    assert report["run"]["optimizerSteps"] == 4
    assert report["run"]["endedBy"] == "steps"
    # The critic's fourth step, in the fourth iteration, stops the script: both optimizers got about four steps.
    assert re.findall(r"iteration \d+ done", completed.stderr) == ["iteration 0 done", "iteration 1 done", "iteration 2 done"]


FROZEN_MODEL = """
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
for param in model.parameters():
    param.requires_grad = False
model[2].requires_grad = True
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(10):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 4, (8,)))
    loss.backward()
    optimizer.step()
"""


def traceback_frames(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]


def python_traceback_frames(script: Path) -> list[str]:
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=script.parent)
    assert completed.returncode == 1
    return traceback_frames(completed.stderr)


def test_backward_error_traceback_as_python(tmp_path):
    script = write_script(tmp_path, FROZEN_MODEL)
    completed = run(script)
    assert completed.returncode == 1
    assert "RuntimeError: element 0 of tensors does not require grad" in completed.stderr
    assert PACKAGE_FOLDER not in completed.stderr
    assert "runpy" not in completed.stderr
    assert traceback_frames(completed.stderr) == python_traceback_frames(script)


def test_optimizer_error_traceback_as_python(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        layers = [nn.Linear(4, 4), nn.Linear(4, 1)]
        model = nn.Module()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    """)
    completed = run(script)
    assert "ValueError: optimizer got an empty parameter list" in completed.stderr
    assert PACKAGE_FOLDER not in completed.stderr
    assert "runpy" not in completed.stderr
    assert traceback_frames(completed.stderr) == python_traceback_frames(script)


def test_backward_error_frozen_model_notes(tmp_path):
    completed = run(write_script(tmp_path, FROZEN_MODEL))
    assert "gradsight: the script raised an exception in backward()." in completed.stdout
    assert (
        "note: The script raised an exception in backward() (its traceback is above); "
        "the report covers what ran before it."
    ) in completed.stdout
    assert "note: Every parameter had requires_grad=False when backward() raised" in completed.stdout
    assert "No backward pass ran" not in completed.stdout
    assert completed.stdout.rstrip().endswith("No problems found before the exception (2 information findings).")


def test_backward_error_trainable_model_notes(tmp_path):
    script = write_script(tmp_path, FROZEN_MODEL.replace("param.requires_grad = False", "pass")
                          .replace("loss.backward()", "loss.detach().backward()"))
    completed = run(script)
    assert "RuntimeError: element 0 of tensors does not require grad" in completed.stderr
    assert "note: The script raised an exception in backward()" in completed.stdout
    assert "Every parameter had requires_grad=False" not in completed.stdout


def test_exception_note_names_stderr_in_json(tmp_path):
    completed, report = run_json(write_script(tmp_path, FROZEN_MODEL))
    assert completed.returncode == 1
    assert report["run"]["endedBy"] == "exception"
    assert (
        "The script raised an exception in backward() (its traceback is on standard error); "
        "the report covers what ran before it."
    ) in report["notes"]
    assert not [note for note in report["notes"] if "above" in note]


def test_exception_outside_backward_note(tmp_path):
    script = write_script(tmp_path, OPTIMIZER_IN_LOOP.replace("optimizer.step()", "optimizer.step()\n    raise KeyError('label')"))
    completed = run(script)
    assert "gradsight: the script raised an exception." in completed.stdout
    assert "note: The script raised an exception (its traceback is above); the report covers what ran before it." in completed.stdout
    _, report = run_json(script)
    assert "The script raised an exception (its traceback is on standard error); the report covers what ran before it." in report["notes"]


def test_lbfgs_stopped_inside_step(tmp_path):
    script = write_script(tmp_path, """
        import torch
        import torch.nn as nn

        model = nn.Linear(3, 1)
        inputs = torch.randn(50, 3)
        targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5]])
        optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20)


        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            return loss


        for epoch in range(5):
            optimizer.step(closure)
    """)
    completed = run(script)
    assert completed.returncode == 0, completed.stderr
    assert "gradsight: stopped the script after 5 backward passes, inside the first optimizer.step() call." in completed.stdout
    assert "no optimizer step was seen" not in completed.stdout
    assert "No optimizer step ran" not in completed.stdout
    assert "note: No optimizer step had finished: the script was stopped inside its first optimizer.step() call" in completed.stdout


def test_backward_without_step_wording(tmp_path):
    script = write_script(tmp_path, OPTIMIZER_IN_LOOP.replace("    optimizer.step()\n", ""))
    completed = run(script, "--steps", "2")
    assert "gradsight: stopped the script after 2 backward passes (no optimizer step was seen)." in completed.stdout
    assert "note: No optimizer step ran: the report covers the gradients only, not the updates." in completed.stdout


def test_usage_shows_script_args_optional():
    completed = subprocess.run([str(GRADSIGHT), "run"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    usage, error = completed.stderr.splitlines()[-2:]
    assert usage == "usage: gradsight run [-h] [--steps N] [--format {text,json}] SCRIPT [-- SCRIPT_ARGS ...]"
    assert error == "gradsight run: error: the following arguments are required: SCRIPT"


def test_help_shows_script_args_optional():
    completed = subprocess.run([str(GRADSIGHT), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: gradsight run [-h] [--steps N] [--format {text,json}] SCRIPT [-- SCRIPT_ARGS ...]\n")
