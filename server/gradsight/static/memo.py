"""Results that depend on one node's subtree alone (or one statement's index), kept across edits by the node's identity.

The incremental parse (`incremental.py`) keeps the node objects of the top-level statements an
edit did not touch. A result computed from such a node's own subtree, without looking at its
parents or at the rest of the file, stays right for as long as the node lives. The checker
reuses it for the next version of the source instead of computing it again.

A memo keeps its nodes alive, so an id cannot be reused by another node while its entry is
there. Values are shared between analyses: no caller may modify them.

A full parse makes new nodes for every statement, so the entries of earlier trees can only
serve another file that is still edited incrementally. `incremental.parse` calls `clear_all`
after each full parse. Checking many files in a row (the CLI) then keeps the memos of one file
at a time. The language server loses the kept results of its other open files, which costs
one slower check of the next file edited.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Value = TypeVar("Value")

# Entries per memo; when it is full, the older half is dropped. Several open files of a few
# thousand lines fit.
DEFAULT_LIMIT = 20_000


class SubtreeMemo(Generic[Value]):
    """Call `compute(node)` once per node, and return the stored result for the same node after.

    Without `compute`, values are stored and read with `store` and `get` only.
    """

    def __init__(self, compute: Callable[[Any], Value] | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self._compute = compute
        self._limit = limit
        self._entries: dict[int, tuple[object, Value]] = {}
        self._lock = threading.Lock()
        _ALL.append(self)

    def __call__(self, node: object) -> Value:
        entry = self._entries.get(id(node))
        if entry is not None and entry[0] is node:
            return entry[1]
        value = self._compute(node)  # type: ignore[misc]
        self.store(node, value)
        return value

    def get(self, node: object, default: Any = None) -> Any:
        """Return the stored value for `node`, or `default` when there is none."""
        entry = self._entries.get(id(node))
        return entry[1] if entry is not None and entry[0] is node else default

    def store(self, node: object, value: Value) -> None:
        if len(self._entries) >= self._limit:
            with self._lock:
                # Dictionaries keep insertion order, so this drops the entries stored first.
                for key in list(self._entries)[: self._limit // 2]:
                    self._entries.pop(key, None)
        # One assignment needs no lock: the interpreter runs it whole.
        self._entries[id(node)] = (node, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_ALL: list[SubtreeMemo] = []


def clear_all() -> None:
    """Empty every memo."""
    for memo in _ALL:
        memo.clear()
