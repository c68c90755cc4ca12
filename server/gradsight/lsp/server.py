"""Wiring of the gradsight language server: LSP notifications in, published diagnostics out."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import sys
from collections.abc import Sequence

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from gradsight import __version__
from gradsight.findings import CheckResult
from gradsight.lsp.code_actions import code_actions
from gradsight.lsp.convert import LineIndex, check_result_to_diagnostics
from gradsight.lsp.document_settings import checker_settings
from gradsight.lsp.log_handler import ClientLogHandler, configure_logging
from gradsight.lsp.runtime_requests import register as register_runtime_requests
from gradsight.lsp.scheduler import AnalysisScheduler, DocumentSnapshot
from gradsight.lsp.settings import ServerSettings
from gradsight.static import check_source

logger = logging.getLogger(__name__)


class GradsightLanguageServer(LanguageServer):
    """A pygls LanguageServer with gradsight's settings and analysis scheduler."""

    def __init__(self, log_handler: ClientLogHandler | None = None) -> None:
        super().__init__(name="gradsight", version=__version__)
        self.log_handler = log_handler
        self.settings = ServerSettings()
        self.position_encoding: str = types.PositionEncodingKind.Utf16.value
        self.shutdown_requested = False
        # The text and result of each document's last check, for code actions. Written from worker threads,
        # one whole tuple at a time.
        self._last_results: dict[str, tuple[str, CheckResult]] = {}
        self.scheduler = AnalysisScheduler(
            read_document=self.read_document,
            analyse=self.analyse,
            publish=self.publish,
            debounce_seconds=self.settings.debounce_ms / 1000,
        )

    def configure(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._last_results.clear()
        self.scheduler.debounce_seconds = settings.debounce_ms / 1000

    def read_document(self, uri: str) -> DocumentSnapshot:
        document = self.workspace.get_text_document(uri)
        return DocumentSnapshot(source=document.source, version=document.version)

    def check(self, uri: str, source: str) -> CheckResult:
        result = check_source(source, settings=checker_settings(uri, self.settings))
        self._last_results[uri] = (source, result)
        return result

    def last_result(self, uri: str, source: str) -> CheckResult:
        """Return the result that the published diagnostics came from, or check now if the text changed since."""
        cached = self._last_results.get(uri)
        if cached is not None and cached[0] == source:
            return cached[1]
        return self.check(uri, source)

    def analyse(self, uri: str, source: str) -> list[types.Diagnostic]:
        """Check `source` and convert the result. Runs on a worker thread."""
        result = self.check(uri, source)
        if result.error is not None and result.error.kind != "syntax":
            error = result.error
            logger.warning("gradsight could not analyse %s: %s (%s error)", uri, error.message, error.kind)

        return check_result_to_diagnostics(result, uri, LineIndex(source, self.position_encoding))

    def publish(self, uri: str, version: int | None, diagnostics: Sequence[types.Diagnostic]) -> None:
        params = types.PublishDiagnosticsParams(uri=uri, diagnostics=list(diagnostics), version=version)
        self.text_document_publish_diagnostics(params)


def on_initialize(ls: GradsightLanguageServer, params: types.InitializeParams) -> None:
    if ls.log_handler is not None:
        ls.log_handler.attach(asyncio.get_running_loop(), ls)

    logger.info("gradsight language server %s started for client %s", __version__, _describe_client(params))
    ls.configure(ServerSettings.from_initialization_options(params.initialization_options))
    encoding = ls.workspace.position_encoding or types.PositionEncodingKind.Utf16
    ls.position_encoding = str(getattr(encoding, "value", encoding))
    logger.info("configuration: %s, position encoding %s", ls.settings.describe(), ls.position_encoding)


def on_did_open(ls: GradsightLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.scheduler.open(params.text_document.uri)


def on_did_change(ls: GradsightLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.scheduler.change(params.text_document.uri)


def on_did_save(ls: GradsightLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.scheduler.save(params.text_document.uri)


def on_did_close(ls: GradsightLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    ls._last_results.pop(params.text_document.uri, None)
    ls.scheduler.close(params.text_document.uri)


def on_did_change_configuration(ls: GradsightLanguageServer, params: types.DidChangeConfigurationParams) -> None:
    section = params.settings.get("gradsight") if isinstance(params.settings, dict) else None
    if section is None:
        return
    ls.configure(ls.settings.with_configuration(section))
    logger.info("configuration changed: %s", ls.settings.describe())
    # Re-check every open document with the new settings, at once.
    for uri in list(ls.workspace.text_documents):
        ls.scheduler.save(uri)


def on_code_action(ls: GradsightLanguageServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    source = document.source
    result = ls.last_result(uri, source)
    return code_actions(result, uri, source, LineIndex(source, ls.position_encoding), params)


def on_shutdown(ls: GradsightLanguageServer, params: None) -> None:
    logger.info("shutdown requested by the client")
    ls.shutdown_requested = True
    ls.scheduler.stop()


def on_exit(ls: GradsightLanguageServer, params: None) -> None:
    # pygls closes stdout right after this handler, so later records go to stderr.
    if ls.log_handler is not None:
        ls.log_handler.detach()


def create_server(log_handler: ClientLogHandler | None = None) -> GradsightLanguageServer:
    server = GradsightLanguageServer(log_handler)
    server.feature(types.INITIALIZE)(on_initialize)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(on_did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(on_did_change)
    server.feature(types.TEXT_DOCUMENT_DID_SAVE)(on_did_save)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(on_did_close)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(on_did_change_configuration)
    server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )(on_code_action)
    server.feature(types.SHUTDOWN)(on_shutdown)
    server.feature(types.EXIT)(on_exit)
    register_runtime_requests(server)
    return server


def run_stdio() -> None:
    """Serve LSP over stdin and stdout until the client sends `exit` or closes stdin.

    Raises SystemExit(1) when the connection ends without a `shutdown` request, as the LSP
    specification requires of the `exit` notification.
    """
    log_handler = configure_logging()
    original_stdout = sys.stdout
    protocol_stdout = original_stdout.buffer
    # A stray print() anywhere in the process would corrupt the JSON-RPC stream on stdout.
    sys.stdout = sys.stderr

    server = create_server(log_handler)
    logger.info(
        "starting gradsight language server %s (pid %d, Python %s)",
        __version__,
        os.getpid(),
        platform.python_version(),
    )
    try:
        server.start_io(sys.stdin.buffer, protocol_stdout)
    finally:
        log_handler.detach()
        sys.stdout = original_stdout

    if not server.shutdown_requested:
        logger.warning("gradsight language server stopped without a shutdown request from the client")
        raise SystemExit(1)

    logger.info("gradsight language server stopped")


def _describe_client(params: types.InitializeParams) -> str:
    client = params.client_info
    if client is None:
        return "(client sent no name)"
    if client.version is None:
        return client.name

    return f"{client.name} {client.version}"
