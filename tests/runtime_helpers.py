"""Helpers for the runtime probe tests: a plain JSON-RPC client for `gradsight lsp` over stdio,
and a runner that pauses a training script under debugpy and snapshots it as the extension does.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debugpy_client import DebugSession, line_after_backward

from gradsight.runtime.expressions import format_snapshot

RUNTIME_CASES = Path(__file__).parent / "cases" / "runtime"
RESPONSE_TIMEOUT_S = 30.0


class LspStdioClient:
    """A minimal LSP client that returns results as plain JSON, as the VS Code client sees them."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gradsight", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._next_id = 0
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.request("initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": None})
        self.notify("initialized", {})

    def request(self, method: str, params: Any, timeout: float = RESPONSE_TIMEOUT_S) -> Any:
        """Send a request and return its result; raise AssertionError on an error response."""
        self._next_id += 1
        request_id = self._next_id
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        while True:
            try:
                message = self._messages.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no response to {method} within {timeout} s; stderr: {self.stderr_text()[-2000:]}")
            if message.get("id") == request_id and "method" not in message:
                if "error" in message:
                    raise LspError(message["error"])
                return message.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        """Shut the server down, killing it by its PID if it does not exit in time."""
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            self._close_pipes()

    def _close_pipes(self) -> None:
        # The readers stop at end of file once the server has exited. Closing the pipes after
        # them keeps ResourceWarnings about unclosed files out of later tests.
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # stdin may fail to flush into a server that has already exited

    def stderr_text(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def _read_stdout(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if not line.strip():
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length is not None:
                self._messages.put(json.loads(stream.read(length)))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for chunk in iter(lambda: self.process.stderr.read1(65536), b""):
            self.stderr.append(chunk)


class LspError(AssertionError):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"LSP error {error.get('code')}: {error.get('message')}")
        self.error = error


@dataclass
class PausedCheck:
    """What one pause of a case script produced."""

    install: dict[str, Any]
    candidates: dict[str, Any]
    snapshot: dict[str, Any]
    fingerprints: list[str] = field(default_factory=list)
    frame_names: list[list[str]] = field(default_factory=list)


# Hashes the bytes of every parameter, gradient and optimizer state tensor, the requires_grad
# flags, train/eval modes, hook counts and both RNG states of the paused script.
FINGERPRINT_SOURCE = """
import hashlib, random, torch

def tensor_bytes(tensor):
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).tolist()) if flat.numel() else b""

def fingerprint(model, optimizer):
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(repr((name, parameter.requires_grad, parameter.grad is None)).encode())
        digest.update(tensor_bytes(parameter))
        if parameter.grad is not None:
            digest.update(tensor_bytes(parameter.grad))
    for name, module in model.named_modules():
        hooks = (len(module._forward_hooks), len(module._backward_hooks), len(module._forward_pre_hooks))
        digest.update(repr((name, module.training, hooks)).encode())
    for parameter, state in optimizer.state.items():
        for key, value in sorted(state.items()):
            digest.update(key.encode())
            digest.update(tensor_bytes(value) if isinstance(value, torch.Tensor) else repr(value).encode())
    digest.update(repr(optimizer.param_groups and [sorted((k, repr(v)) for k, v in g.items() if k != "params") for g in optimizer.param_groups]).encode())
    digest.update(tensor_bytes(torch.get_rng_state()))
    digest.update(repr(random.getstate()).encode())
    digest.update(repr(torch.is_grad_enabled()).encode())
    return digest.hexdigest()
"""
FINGERPRINT_EXPRESSION = (
    "(lambda namespace: (exec(%r, namespace), namespace['fingerprint'](model, optimizer))[1])({})" % FINGERPRINT_SOURCE
)
FRAME_NAMES_EXPRESSION = "__import__('json').dumps(sorted(globals()))"


def pause_and_snapshot(
    script: Path,
    expressions: dict[str, str],
    checks: int = 2,
    fingerprint: bool = False,
) -> list[PausedCheck]:
    """Run `script` under debugpy, pause after `backward()` on `checks` iterations and snapshot.

    Uses exactly the expressions of the `gradsight/probe` result, as the extension does. With
    `fingerprint`, the state of the script is hashed before and after the probe runs.
    """
    session = DebugSession(script)
    results: list[PausedCheck] = []
    try:
        session.start([line_after_backward(script)])
        for check in range(checks):
            frame_id = session.wait_stopped()
            before = _fingerprints(session, frame_id) if fingerprint else None
            install = session.evaluate_json(expressions["install"], frame_id)
            candidates = session.evaluate_json(expressions["findCandidates"], frame_id)
            model = candidates["models"][0]["expression"] if candidates.get("models") else "model"
            snapshot = session.evaluate_json(format_snapshot(expressions["snapshot"], model, None), frame_id)
            paused = PausedCheck(install, candidates, snapshot)
            if before is not None:
                after = _fingerprints(session, frame_id)
                paused.fingerprints = [before[0], after[0]]
                paused.frame_names = [before[1], after[1]]
            results.append(paused)
            if check + 1 < checks:
                session.resume()
    finally:
        session.close()
    return results


def _fingerprints(session: DebugSession, frame_id: int) -> tuple[str, list[str]]:
    return (
        session.evaluate(FINGERPRINT_EXPRESSION, frame_id),
        json.loads(session.evaluate(FRAME_NAMES_EXPRESSION, frame_id)),
    )
