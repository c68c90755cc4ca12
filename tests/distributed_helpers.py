"""Run a script as two ranks of a torch.distributed job: two CPU processes on gloo, talking over
127.0.0.1 on a free port. Every process is bounded by a timeout and killed by its PID if it
outlives it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

GRADSIGHT = Path(sys.executable).parent / "gradsight"
SERVER = Path(__file__).resolve().parent.parent / "server"
TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def run_two_ranks(command_for_script, script: Path) -> list[subprocess.CompletedProcess]:
    """Start rank 0 and rank 1 with the env:// variables and wait for both, bounded by TIMEOUT_S."""
    port = free_port()
    processes = []
    for rank in (0, 1):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                   PYTHONPATH=str(SERVER))
        processes.append(subprocess.Popen(command_for_script(script), env=env, cwd=script.parent,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return results


# What libstdc++ prints when a thread is still running as the interpreter exits: torch 2.13's gloo
# backend sometimes does so after destroy_process_group(), with or without gradsight.
_EXIT_ABORT = "terminate called without an active exception"


def exit_codes(results: list[subprocess.CompletedProcess]) -> list[int | str]:
    """Return each rank's exit status, with "aborted at exit" in place of the abort described above."""
    codes: list[int | str] = []
    for result in results:
        aborted = result.returncode in (-6, 134) and _EXIT_ABORT in result.stderr
        codes.append("aborted at exit" if aborted else result.returncode)
    return codes


def gradsight_run(script: Path) -> list[str]:
    return [str(GRADSIGHT), "run", "--format", "json", "--steps", "3", str(script)]


def write(tmp_path: Path, source: str) -> Path:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    return script
