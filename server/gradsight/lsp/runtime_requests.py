"""LSP requests of "Check Gradients while debugging": probe expressions in, layer reports out.

`gradsight/probe` returns the expressions that the extension evaluates in the paused frame.
`gradsight/analyzeSnapshot` classifies one probe snapshot, and `gradsight/endSession` drops the
stored snapshot of a debug session. docs/runtime-protocol.md describes the protocol.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import attrs
from pygls import uris
from pygls.exceptions import JsonRpcInvalidParams

from gradsight.lsp.convert import LineIndex
from gradsight.runtime.expressions import probe_expressions
from gradsight.runtime.locate import SourceSpan
from gradsight.runtime.report import build_report

logger = logging.getLogger(__name__)

PROBE = "gradsight/probe"
ANALYZE_SNAPSHOT = "gradsight/analyzeSnapshot"
END_SESSION = "gradsight/endSession"
RUNTIME_METHODS = (PROBE, ANALYZE_SNAPSHOT, END_SESSION)


@attrs.define
class _PlainRequestMessage:
    """A request whose params stay plain JSON (pygls turns unknown params into namedtuples)."""

    id: Any
    method: str
    jsonrpc: str
    params: Any = None


class RuntimeSessions:
    """The previous snapshot of each debug session, for comparing two checks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: dict[str, tuple[dict[str, Any], int]] = {}

    def swap(self, session_id: str, snapshot: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
        """Store `snapshot` and return the session's previous one and this check's number."""
        with self._lock:
            previous, count = self._previous.get(session_id, (None, 0))
            self._previous[session_id] = (snapshot, count + 1)
        return previous, count + 1

    def end(self, session_id: str) -> None:
        with self._lock:
            self._previous.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._previous)


def register(server) -> None:
    """Register the runtime requests on a pygls LanguageServer."""
    sessions = RuntimeSessions()
    server.runtime_sessions = sessions
    _keep_params_plain(server)

    @server.feature(PROBE)
    def on_probe(ls, params: Any) -> dict[str, str]:
        return probe_expressions().to_json()

    # A snapshot of 4,000 parameter tensors took about 0.7 s to analyze on the development
    # machine, so the request runs on the thread pool instead of blocking the event loop.
    @server.feature(ANALYZE_SNAPSHOT)
    @server.thread()
    def on_analyze_snapshot(ls, params: Any) -> dict[str, Any]:
        return analyze_snapshot(ls, sessions, plain_json(params))

    @server.feature(END_SESSION)
    def on_end_session(ls, params: Any) -> None:
        session_id = plain_json(params).get("sessionId") if params is not None else None
        if isinstance(session_id, str):
            sessions.end(session_id)
            logger.info("runtime session %s ended", session_id)


def analyze_snapshot(ls, sessions: RuntimeSessions, params: dict[str, Any]) -> dict[str, Any]:
    """Classify the snapshot in `params` and return the report with LSP locations."""
    session_id = params.get("sessionId") if isinstance(params, dict) else None
    snapshot = params.get("snapshot") if isinstance(params, dict) else None
    problem = None
    if not isinstance(session_id, str) or not isinstance(snapshot, dict):
        problem = "gradsight/analyzeSnapshot needs params with a string sessionId and a snapshot object"
    elif "error" in snapshot or "chunked" in snapshot:
        problem = "the snapshot is a probe error or an unread chunked result, not a snapshot payload"
    elif not isinstance(snapshot.get("parameters"), list):
        problem = "the snapshot has no parameters list: send the parsed payload of the probe's snapshot expression"
    if problem is not None:
        logger.warning("invalid gradsight/analyzeSnapshot params for session %r: %s", session_id, problem)
        raise JsonRpcInvalidParams(problem)

    previous, check_number = sessions.swap(session_id, snapshot)
    source_uris = [uri for uri in params.get("sourceUris") or [] if isinstance(uri, str)]
    sources = _read_sources(ls, source_uris, snapshot.get("classFiles") or [])
    model_expression = params.get("modelExpression")
    report = build_report(
        snapshot,
        previous,
        sources,
        check_number=check_number,
        model_expression=model_expression if isinstance(model_expression, str) else None,
    )

    encoding = getattr(ls, "position_encoding", "utf-16")
    line_indexes: dict[str, LineIndex] = {}

    def location(span: SourceSpan | None) -> dict[str, Any] | None:
        if span is None:
            return None
        index = line_indexes.setdefault(span.source, LineIndex(sources[span.source], encoding))
        start = index.position(span.line, span.column)
        end = index.position(span.end_line, span.end_column)
        return {
            "uri": span.source,
            "range": {
                "start": {"line": start.line, "character": start.character},
                "end": {"line": end.line, "character": end.character},
            },
        }

    for entry in report.layers + report.findings:
        entry["location"] = location(entry["location"])
    logger.info(
        "runtime session %s check %d: %d layers, %d findings",
        session_id,
        check_number,
        len(report.layers),
        len(report.findings),
    )
    return {"model": report.model, "layers": report.layers, "findings": report.findings, "notes": report.notes}


def plain_json(value: Any) -> Any:
    """Turn pygls's namedtuple params back into dicts and lists."""
    if hasattr(value, "_asdict"):
        return {key: plain_json(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    return value


def _keep_params_plain(server) -> None:
    """Keep the params of the runtime requests as parsed JSON.

    pygls 2.1 turns the params of a method that lsprotocol does not know into namedtuples, one
    new namedtuple class per object, which takes seconds for a snapshot of 10,000 parameters.
    """
    protocol = server.protocol
    converter = getattr(protocol, "_converter", None)
    if converter is None:
        logger.warning("pygls protocol has no converter: runtime request params arrive as namedtuples")
        return
    converter.register_structure_hook(_PlainRequestMessage, lambda obj, cls: cls(**obj))
    default_message_type = protocol.get_message_type

    def message_type(method: str):
        return _PlainRequestMessage if method in RUNTIME_METHODS else default_message_type(method)

    protocol.get_message_type = message_type


def _read_sources(ls, source_uris: list[str], class_files: list[Any]) -> dict[str, str]:
    """Read each source by URI: from the open editor when it is open, else from disk."""
    uris_to_read = list(source_uris)
    for pair in class_files:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[1], str):
            uris_to_read.append(uris.from_fs_path(pair[1]) or pair[1])

    sources: dict[str, str] = {}
    for uri in dict.fromkeys(uris_to_read):
        text = _open_document_text(ls, uri)
        if text is None:
            path = uris.to_fs_path(uri)
            try:
                text = Path(path).read_text(encoding="utf-8") if path else None
            except (OSError, UnicodeDecodeError) as error:
                logger.info("cannot read %s for locating layers: %s", uri, error)
        if text is not None:
            sources[uri] = text
    return sources


def _open_document_text(ls, uri: str) -> str | None:
    documents = getattr(getattr(ls, "workspace", None), "text_documents", {})
    document = documents.get(uri) if isinstance(documents, dict) else None
    return document.source if document is not None else None
