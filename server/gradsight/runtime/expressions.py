"""The Python expressions that a debugger front end evaluates to run the probe in a paused frame.

Each expression is a single expression, so evaluating it binds no name in the user's frame, and
each returns a JSON string (see docs/runtime-protocol.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gradsight.runtime import probe

PROBE_PATH = Path(probe.__file__)
MODULE_NAME = probe.MODULE_NAME

_MODULE = f"__import__('sys').modules[{MODULE_NAME!r}]"


@dataclass(frozen=True)
class ProbeExpressions:
    version: str
    install: str
    find_candidates: str
    snapshot: str
    read_chunk: str

    def to_json(self) -> dict[str, str]:
        return {
            "version": self.version,
            "install": self.install,
            "findCandidates": self.find_candidates,
            "snapshot": self.snapshot,
            "readChunk": self.read_chunk,
        }


@cache
def probe_expressions() -> ProbeExpressions:
    """Build the expressions for the probe source shipped with this gradsight."""
    source = PROBE_PATH.read_text(encoding="utf-8")
    version = f"{probe.PROBE_API}+{hashlib.sha256(source.encode()).hexdigest()[:12]}"
    return ProbeExpressions(
        version=version,
        install=_install_expression(source, version),
        find_candidates=f"{_MODULE}.find_candidates_json(globals(), locals())",
        snapshot=f"{_MODULE}.snapshot_json(lambda: ({{model}}), lambda: ({{optimizer}}), globals(), locals())",
        read_chunk=f"{_MODULE}.read_chunk({{token}}, {{index}})",
    )


def format_snapshot(template: str, model: str, optimizer: str | None) -> str:
    """Substitute the model and optimizer expressions the way the extension does."""
    return template.replace("{model}", model).replace("{optimizer}", optimizer or "None")


def format_read_chunk(template: str, token: str, index: int) -> str:
    import json

    return template.replace("{token}", json.dumps(token)).replace("{index}", str(index))


def _install_expression(source: str, version: str) -> str:
    # The lambda's parameters are its only names, so nothing is written into the paused frame.
    # A probe of another version is replaced by a fresh module object.
    return (
        "(lambda sys, types, source, version: ("
        "sys.modules[{name!r}] if getattr(sys.modules.get({name!r}), 'PROBE_VERSION', None) == version "
        "else (lambda module: (setattr(module, 'PROBE_VERSION', version), "
        "exec(compile(source, '<gradsight probe>', 'exec'), module.__dict__), "
        "sys.modules.__setitem__({name!r}, module), module)[-1])(types.ModuleType({name!r}))"
        ").install_report())(__import__('sys'), __import__('types'), {source!r}, {version!r})"
    ).format(name=MODULE_NAME, source=source, version=version)
