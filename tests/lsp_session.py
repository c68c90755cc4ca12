"""A test client that drives the real gradsight language server as a subprocess over stdio.

pytest has no asyncio support in this project's test extra, so each test passes an async
scenario to `run_scenario`, which runs it with a fresh server in its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

SERVER_COMMAND = (sys.executable, "-m", "gradsight", "lsp")

# Upper bounds for waits, far above what a healthy server needs, so that a slow CI machine does
# not fail a test but a lost notification does.
NOTIFICATION_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
SCENARIO_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Publication:
    """One textDocument/publishDiagnostics notification and when the client received it."""

    params: types.PublishDiagnosticsParams
    received_at: float

    @property
    def uri(self) -> str:
        return self.params.uri

    @property
    def version(self) -> int | None:
        return self.params.version

    @property
    def diagnostics(self) -> Sequence[types.Diagnostic]:
        return self.params.diagnostics


@dataclass
class LspSession:
    """A started and initialized server, with everything it has sent to the client."""

    client: LanguageClient
    initialize_result: types.InitializeResult | None = None
    publications: list[Publication] = field(default_factory=list)
    log_messages: list[types.LogMessageParams] = field(default_factory=list)
    stderr_chunks: list[bytes] = field(default_factory=list)
    stderr_reader: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def process(self) -> asyncio.subprocess.Process:
        process = self.client._server
        assert process is not None, "the server process was not started"
        return process

    @property
    def stderr(self) -> str:
        return b"".join(self.stderr_chunks).decode("utf-8", "replace")

    def record_publication(self, params: types.PublishDiagnosticsParams) -> None:
        self.publications.append(Publication(params, time.monotonic()))
        self._arrived.set()

    def record_log_message(self, params: types.LogMessageParams) -> None:
        self.log_messages.append(params)
        self._arrived.set()

    # Notifications to the server.

    def open_document(self, uri: str, text: str, version: int = 1) -> None:
        item = types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def replace_text(self, uri: str, version: int, text: str) -> None:
        """Send a didChange that replaces the whole text."""
        change = types.TextDocumentContentChangeWholeDocument(text=text)
        self._send_changes(uri, version, [change])

    def edit_text(
        self, uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str
    ) -> None:
        """Send an incremental didChange. Positions are 0-based (line, UTF-16 column)."""
        change = types.TextDocumentContentChangePartial(
            range=types.Range(
                start=types.Position(line=start[0], character=start[1]),
                end=types.Position(line=end[0], character=end[1]),
            ),
            text=text,
        )
        self._send_changes(uri, version, [change])

    def save_document(self, uri: str) -> None:
        identifier = types.TextDocumentIdentifier(uri=uri)
        self.client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=identifier))

    def close_document(self, uri: str) -> None:
        identifier = types.TextDocumentIdentifier(uri=uri)
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=identifier))

    def _send_changes(
        self, uri: str, version: int, changes: list[types.TextDocumentContentChangeEvent]
    ) -> None:
        identifier = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
        params = types.DidChangeTextDocumentParams(text_document=identifier, content_changes=changes)
        self.client.text_document_did_change(params)

    # Waiting for what the server sends.

    async def wait_for_publication(
        self,
        uri: str,
        *,
        version: int | None = None,
        since: int = 0,
        timeout: float = NOTIFICATION_TIMEOUT_S,
    ) -> Publication:
        """Wait for a publication for `uri` (and `version`, if given) at index `since` or later."""

        def matches(publication: Publication) -> bool:
            return publication.uri == uri and (version is None or publication.version == version)

        def find() -> Publication | None:
            return next(filter(matches, self.publications[since:]), None)

        description = f"diagnostics for {uri}" + (f" version {version}" if version is not None else "")
        return await self._wait_for(find, description, timeout)

    async def wait_for_log_message(
        self, predicate: Callable[[types.LogMessageParams], bool], timeout: float = NOTIFICATION_TIMEOUT_S
    ) -> types.LogMessageParams:
        def find() -> types.LogMessageParams | None:
            return next(filter(predicate, self.log_messages), None)

        return await self._wait_for(find, "a log message", timeout)

    async def _wait_for(self, find: Callable[[], object | None], description: str, timeout: float):
        deadline = time.monotonic() + timeout
        while (found := find()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {description}; "
                    f"received publications: {self._describe_publications()}; server stderr:\n{self.stderr}"
                )

            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

        return found

    def _describe_publications(self) -> str:
        summary = [
            (publication.uri.rsplit("/", 1)[-1], publication.version, [d.code for d in publication.diagnostics])
            for publication in self.publications
        ]
        return repr(summary)

    # Ending the session.

    async def shutdown_and_exit(self) -> int:
        """Send shutdown and exit as an editor does, and return the server's exit status."""
        await asyncio.wait_for(self.client.shutdown_async(None), SHUTDOWN_TIMEOUT_S)
        self.client.exit(None)
        return await asyncio.wait_for(self.process.wait(), SHUTDOWN_TIMEOUT_S)


async def start_session(
    initialization_options: object = None,
    *,
    command: Sequence[str] = SERVER_COMMAND,
    capabilities: types.ClientCapabilities | None = None,
) -> LspSession:
    client = LanguageClient("gradsight-tests", "1.0")
    session = LspSession(client)

    # pygls marks handlers with attributes, which a bound method cannot take.
    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_publish_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        session.record_publication(params)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log_message(params: types.LogMessageParams) -> None:
        session.record_log_message(params)


    await client.start_io(*command)
    session.stderr_reader = asyncio.create_task(_collect(session.process.stderr, session.stderr_chunks))
    params = types.InitializeParams(
        capabilities=capabilities or types.ClientCapabilities(),
        client_info=types.ClientInfo(name="gradsight-tests", version="1.0"),
        initialization_options=initialization_options,
        process_id=None,
    )
    initialize = client.initialize_async(params)
    session.initialize_result = await asyncio.wait_for(initialize, NOTIFICATION_TIMEOUT_S)
    client.initialized(types.InitializedParams())
    return session


async def _collect(stream: asyncio.StreamReader | None, chunks: list[bytes]) -> None:
    # Reading stderr keeps its pipe from filling up and blocking the server.
    if stream is None:
        return
    while chunk := await stream.read(65536):
        chunks.append(chunk)


async def end_session(session: LspSession) -> None:
    """Stop the server: by shutdown and exit if it still runs, by killing its process otherwise."""
    process = session.process
    if process.returncode is None:
        try:
            await session.shutdown_and_exit()
        except Exception:
            if process.returncode is None:
                process.kill()
                await process.wait()

    await asyncio.wait_for(session.client.stop(), SHUTDOWN_TIMEOUT_S)


def run_scenario(
    scenario: Callable[[LspSession], Awaitable[None]],
    initialization_options: object = None,
    **start_options,
) -> None:
    """Start a server, run `scenario` against it and stop the server, even when the scenario fails."""

    async def main() -> None:
        session = await start_session(initialization_options, **start_options)
        try:
            await asyncio.wait_for(scenario(session), SCENARIO_TIMEOUT_S)
        finally:
            await end_session(session)

    asyncio.run(main())


def find_position(text: str, needle: str) -> tuple[int, str, int]:
    """Return the 0-based line number, the line text and the code-point column of `needle`."""
    for line_number, line in enumerate(text.splitlines()):
        column = line.find(needle)
        if column >= 0:
            return line_number, line, column

    raise ValueError(f"{needle!r} not found in the test document")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def document_uri(directory: Path, name: str) -> str:
    return (directory / name).as_uri()
