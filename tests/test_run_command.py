"""`gradsight run` as a user runs it, a real subprocess, on small scripts for the way a run ends
and for what the report then contains."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

GRADSIGHT = Path(sys.executable).parent / "gradsight"

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


def test_steps_count_all_optimizers(tmp_path):
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
    # The fourth step is the generator's in the second iteration, so that iteration never ends.
    assert re.findall(r"iteration \d+ done", completed.stderr) == ["iteration 0 done"]
