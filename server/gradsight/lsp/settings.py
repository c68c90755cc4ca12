"""Settings of the language server, read from the client's initializationOptions."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_MS = 300


@dataclass(frozen=True)
class ServerSettings:
    """Server settings.

    `debounce_ms` is the delay in milliseconds between the last edit of a document and its
    analysis. `select` and `ignore` are rule codes or prefixes passed on to the static checker.
    """

    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] | None = None

    @classmethod
    def from_initialization_options(cls, options: object) -> ServerSettings:
        """Read `{"debounceMs": int, "select": [str], "ignore": [str]}`, all keys optional.

        An invalid value is logged as a warning and replaced by its default, so that a typo in the
        editor's configuration never stops the server from starting.
        """
        if options is None:
            return cls()
        if not isinstance(options, dict):
            logger.warning("initializationOptions must be an object, got %r; using default settings", options)
            return cls()

        for key in options.keys() - {"debounceMs", "select", "ignore"}:
            logger.warning("ignoring unknown initialization option %r", key)

        return cls(
            debounce_ms=_read_debounce_ms(options.get("debounceMs")),
            select=_read_codes(options, "select"),
            ignore=_read_codes(options, "ignore"),
        )

    def describe(self) -> str:
        select = ", ".join(self.select) if self.select is not None else "all rules"
        ignore = ", ".join(self.ignore) if self.ignore else "none"
        return f"debounceMs={self.debounce_ms}, select: {select}, ignore: {ignore}"


def _read_debounce_ms(value: object) -> int:
    if value is None:
        return DEFAULT_DEBOUNCE_MS

    # JSON numbers arrive as int or float. bool is an int subclass but no valid delay.
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if is_number and math.isfinite(value) and value >= 0:
        return round(value)

    logger.warning(
        "invalid initialization option debounceMs=%r: expected a number of milliseconds >= 0; using %d",
        value,
        DEFAULT_DEBOUNCE_MS,
    )
    return DEFAULT_DEBOUNCE_MS


def _read_codes(options: dict, key: str) -> tuple[str, ...] | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(code, str) for code in value):
        return tuple(value)

    logger.warning(
        "invalid initialization option %s=%r: expected a list of rule codes such as [\"GS101\"]; ignoring it",
        key,
        value,
    )
    return None
