"""Logging for the language server: records go to the client's LSP log, never to stdout."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, TextIO

from lsprotocol import types

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer


class ClientLogHandler(logging.Handler):
    """Log handler that sends each record to the client as a `window/logMessage` notification.

    pygls writes to its transport without a lock, so records from worker threads are handed to
    the event loop, which sends them. Until `attach` and after `detach` records go to `fallback`
    (stderr), because stdout carries JSON-RPC.
    """

    def __init__(self, fallback: TextIO, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._fallback = logging.StreamHandler(fallback)
        self._fallback.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: LanguageServer | None = None

    def attach(self, loop: asyncio.AbstractEventLoop, server: LanguageServer) -> None:
        self._loop = loop
        self._server = server

    def detach(self) -> None:
        self._loop = None
        self._server = None

    def emit(self, record: logging.LogRecord) -> None:
        loop = self._loop
        if loop is None:
            self._fallback.handle(record)
            return

        try:
            message = self.format(record)
            loop.call_soon_threadsafe(self._send, record, message)
        except RuntimeError:
            # call_soon_threadsafe raises RuntimeError once the event loop is closed, as it is
            # while the server stops.
            self._fallback.handle(record)
        except Exception:
            self.handleError(record)

    def _send(self, record: logging.LogRecord, message: str) -> None:
        server = self._server
        if server is None:
            self._fallback.handle(record)
            return

        params = types.LogMessageParams(type=_message_type(record.levelno), message=message)
        server.window_log_message(params)


def _message_type(level: int) -> types.MessageType:
    if level >= logging.ERROR:
        return types.MessageType.Error
    if level >= logging.WARNING:
        return types.MessageType.Warning
    if level >= logging.INFO:
        return types.MessageType.Info
    return types.MessageType.Log


def configure_logging(level: int = logging.INFO) -> ClientLogHandler:
    """Send gradsight's log records to the client and pygls' warnings to stderr.

    pygls logs every message it sends at INFO level, and forwarding those records to the client
    would send a log message about each log message, so pygls' loggers stay off the LSP log.
    """
    client_handler = ClientLogHandler(fallback=sys.stderr)
    client_handler.setFormatter(logging.Formatter("%(message)s"))
    gradsight_logger = logging.getLogger("gradsight")
    gradsight_logger.addHandler(client_handler)
    gradsight_logger.setLevel(level)
    gradsight_logger.propagate = False

    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    pygls_logger = logging.getLogger("pygls")
    pygls_logger.addHandler(stderr_handler)
    pygls_logger.setLevel(logging.WARNING)

    return client_handler
