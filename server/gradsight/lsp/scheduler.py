"""When to analyse open documents: debouncing, a worker thread pool and dropping stale results.

Every public method runs on the server's event loop thread. Only `analyse` runs on a worker
thread, with a snapshot of the document text, so the event loop keeps handling requests while a
slow analysis runs. The two share the GIL, so requests can still slow down meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lsprotocol import types

logger = logging.getLogger(__name__)

# The checker is pure Python and holds the GIL, so more threads add no throughput. A few let a
# small document be analysed while a large one is still running.
_MAX_WORKERS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class DocumentSnapshot:
    source: str
    version: int | None


@dataclass(eq=False)
class _DocumentState:
    """Scheduling state of one open document."""

    # Incremented on every open and change. A result is published only if the revision it was
    # computed for is still current. Unlike the client's version number, a revision also
    # distinguishes two openings of the same document.
    revision: int = 0
    debounce_timer: asyncio.TimerHandle | None = None
    running: bool = False
    rerun_requested: bool = False

    def cancel_debounce_timer(self) -> None:
        if self.debounce_timer is not None:
            self.debounce_timer.cancel()
            self.debounce_timer = None


class AnalysisScheduler:
    """Schedules the analysis of open documents and publishes the results that are still current.

    At most one analysis per document runs at a time. A request that arrives while one runs is
    remembered and served with the latest text once it finishes.
    """

    def __init__(
        self,
        *,
        read_document: Callable[[str], DocumentSnapshot],
        analyse: Callable[[str, str], Sequence[types.Diagnostic]],
        publish: Callable[[str, int | None, Sequence[types.Diagnostic]], None],
        debounce_seconds: float,
    ) -> None:
        self.debounce_seconds = debounce_seconds
        self._read_document = read_document
        self._analyse = analyse
        self._publish = publish
        self._documents: dict[str, _DocumentState] = {}
        self._executor = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="gradsight-analysis")
        self._stopped = False

    def open(self, uri: str) -> None:
        """Analyse a newly opened document at once."""
        previous = self._documents.pop(uri, None)
        if previous is not None:
            previous.cancel_debounce_timer()

        state = _DocumentState(revision=1)
        self._documents[uri] = state
        self._start(uri, state)

    def change(self, uri: str) -> None:
        """Analyse a changed document once no further change arrived for `debounce_seconds`."""
        state = self._documents.get(uri)
        if state is None:
            logger.warning("ignoring a change of %s, which is not open", uri)
            return

        state.revision += 1
        state.cancel_debounce_timer()
        if self.debounce_seconds <= 0:
            self._start(uri, state)
            return

        loop = asyncio.get_running_loop()
        state.debounce_timer = loop.call_later(self.debounce_seconds, self._start_after_debounce, uri, state)

    def save(self, uri: str) -> None:
        """Analyse a saved document at once, in place of any analysis still waiting for its debounce."""
        state = self._documents.get(uri)
        if state is None:
            logger.warning("ignoring the save of %s, which is not open", uri)
            return

        state.cancel_debounce_timer()
        self._start(uri, state)

    def close(self, uri: str) -> None:
        """Forget a closed document and clear its diagnostics in the client."""
        state = self._documents.pop(uri, None)
        if state is not None:
            state.cancel_debounce_timer()

        self._publish(uri, None, [])

    def stop(self) -> None:
        """Cancel pending analyses. An analysis already running finishes, but its result is dropped."""
        self._stopped = True
        for state in self._documents.values():
            state.cancel_debounce_timer()

        self._documents.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_after_debounce(self, uri: str, state: _DocumentState) -> None:
        state.debounce_timer = None
        self._start(uri, state)

    def _start(self, uri: str, state: _DocumentState) -> None:
        if self._stopped or self._documents.get(uri) is not state:
            return
        if state.running:
            state.rerun_requested = True
            return

        snapshot = self._read_document(uri)
        revision = state.revision
        state.running = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._analyse_safely, uri, snapshot)
        future.add_done_callback(lambda done: self._finish(uri, state, revision, snapshot.version, done))

    def _analyse_safely(self, uri: str, snapshot: DocumentSnapshot) -> Sequence[types.Diagnostic] | None:
        """Run on a worker thread. Return None when the analysis failed, after logging why."""
        started = time.perf_counter()
        try:
            diagnostics = self._analyse(uri, snapshot.source)
        except Exception:
            logger.exception(
                "analysis of %s (version %s) failed, which is a bug in gradsight: please report it with "
                "this traceback. The diagnostics published before stay in place.",
                uri,
                snapshot.version,
            )
            return None

        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug(
            "analysed %s (version %s) in %.0f ms: %d diagnostics",
            uri,
            snapshot.version,
            elapsed_ms,
            len(diagnostics),
        )
        return diagnostics

    def _finish(
        self,
        uri: str,
        state: _DocumentState,
        revision: int,
        version: int | None,
        done: asyncio.Future[Sequence[types.Diagnostic] | None],
    ) -> None:
        state.running = False
        if done.cancelled() or self._documents.get(uri) is not state:
            return

        diagnostics = done.result()
        if state.revision != revision:
            logger.debug("dropping the result for %s (version %s): the document changed since", uri, version)
        elif diagnostics is not None:
            self._publish(uri, version, diagnostics)

        if state.rerun_requested:
            state.rerun_requested = False
            self._start(uri, state)
