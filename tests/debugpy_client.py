"""A small Debug Adapter Protocol client that runs a script under debugpy and evaluates in it.

It does what VS Code does for "Check Gradients while debugging": start the script with
`python -m debugpy --listen 127.0.0.1:PORT --wait-for-client`, attach, set a breakpoint, wait for
the stop and send `evaluate` requests with `context: "repl"` and `format: {"rawString": true}`.
Every wait has a time-out, and `close()` ends the process it started by its PID.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


class DapError(RuntimeError):
    """A request failed, or an expected message did not arrive in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


class DebugSession:
    """One debuggee process under debugpy and one DAP connection to its adapter."""

    def __init__(self, script: Path, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self.script = Path(script).resolve()
        self.port = free_port()
        environment = dict(os.environ)
        environment.update(env or {})
        # One thread per process keeps the runtime suite fast on a 2-core CI machine.
        environment.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen(
            [python, "-m", "debugpy", "--listen", f"127.0.0.1:{self.port}", "--wait-for-client", str(self.script)],
            cwd=self.script.parent,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._output_reader = threading.Thread(target=self._read_output, daemon=True)
        self._output_reader.start()
        self._socket = self._connect()
        self._sequence = 0
        self._responses: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._condition = threading.Condition()
        self._reader = threading.Thread(target=self._read_messages, daemon=True)
        self._reader.start()
        self.thread_id: int | None = None

    # Set-up.

    def start(self, breakpoint_lines: list[int]) -> None:
        """Attach, set breakpoints in the script and let it run to the first one."""
        self.request("initialize", {
            "clientID": "gradsight-tests", "adapterID": "debugpy", "linesStartAt1": True,
            "columnsStartAt1": True, "pathFormat": "path", "supportsVariableType": True,
        })
        attach = self.send("attach", {"justMyCode": True, "redirectOutput": False})
        self.wait_event("initialized")
        self.request("setBreakpoints", {
            "source": {"path": str(self.script)},
            "breakpoints": [{"line": line} for line in breakpoint_lines],
        })
        self.request("configurationDone", {})
        self.wait_response(attach)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Wait for the next `stopped` event and return the id of the top frame."""
        event = self.wait_event("stopped", timeout)
        self.thread_id = event["body"].get("threadId")
        trace = self.request("stackTrace", {"threadId": self.thread_id, "startFrame": 0, "levels": 1})
        return trace["body"]["stackFrames"][0]["id"]

    def resume(self) -> None:
        self.request("continue", {"threadId": self.thread_id})

    def evaluate(self, expression: str, frame_id: int, timeout: float = REQUEST_TIMEOUT_S) -> str:
        """Evaluate in the paused frame as the REPL does and return the raw string result."""
        response = self.request(
            "evaluate",
            {"expression": expression, "frameId": frame_id, "context": "repl", "format": {"rawString": True}},
            timeout,
        )
        return response["body"]["result"]

    def evaluate_json(self, expression: str, frame_id: int) -> Any:
        """Evaluate a probe expression and parse its JSON, reading chunked payloads piece by piece."""
        from gradsight.runtime.expressions import format_read_chunk, probe_expressions

        result = json.loads(self.evaluate(expression, frame_id))
        if isinstance(result, dict) and "chunked" in result:
            chunked = result["chunked"]
            template = probe_expressions().read_chunk
            pieces = [
                self.evaluate(format_read_chunk(template, chunked["token"], index), frame_id)
                for index in range(chunked["count"])
            ]
            result = json.loads("".join(pieces))
        return result

    # Messages.

    def send(self, command: str, arguments: dict[str, Any]) -> int:
        self._sequence += 1
        message = {"seq": self._sequence, "type": "request", "command": command, "arguments": arguments}
        body = json.dumps(message).encode("utf-8")
        self._socket.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._sequence

    def request(self, command: str, arguments: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        return self.wait_response(self.send(command, arguments), timeout)

    def wait_response(self, sequence: int, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._condition:
            while sequence not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DapError(f"no response to request {sequence} within {timeout} s; output: {self.tail()}")
                self._condition.wait(remaining)
            response = self._responses.pop(sequence)
        if not response.get("success"):
            raise DapError(f"{response.get('command')} failed: {response.get('message')} {response.get('body')}")
        return response

    def wait_event(self, name: str, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DapError(f"no {name!r} event within {timeout} s; output: {self.tail()}")
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.get("event") == name:
                return event
            if event.get("event") == "terminated":
                raise DapError(f"the debuggee ended while waiting for {name!r}; output: {self.tail()}")

    def tail(self) -> str:
        return "".join(self.output)[-2000:]

    # Tear-down.

    def close(self) -> None:
        """Disconnect and end the debuggee process group that this session started."""
        try:
            self.send("disconnect", {"terminateDebuggee": True})
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        else:
            # The adapter runs in its own process inside the same process group.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._socket.close()
        # The output reader stops at end of file; close the pipe after it.
        self._output_reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.process.kill()
                    raise DapError(f"debugpy did not listen on port {self.port}; output: {self.tail()}") from None
                time.sleep(0.1)

    def _read_messages(self) -> None:
        self._socket.settimeout(None)
        stream = self._socket.makefile("rb")
        try:
            while True:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length is None:
                    continue
                message = json.loads(stream.read(length))
                if message.get("type") == "response":
                    with self._condition:
                        self._responses[message["request_seq"]] = message
                        self._condition.notify_all()
                elif message.get("type") == "event":
                    self._events.put(message)
        except (OSError, ValueError):
            return

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.output.append(line.decode("utf-8", "replace"))


def line_after_backward(script: Path) -> int:
    """Return the 1-based number of the line after the first line that ends with `.backward()`."""
    for number, line in enumerate(Path(script).read_text().splitlines(), start=1):
        if line.rstrip().endswith(".backward()"):
            return number + 1
    raise ValueError(f"no line ending with .backward() in {script}")
