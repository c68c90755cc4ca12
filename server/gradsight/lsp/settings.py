"""Settings of the language server, read from the client's initializationOptions."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

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
    # Per-rule severities and thresholds from the editor, in the shape of [tool.gradsight]:
    # {"GS102": "error"} and {"lr-min": 1e-8}. They override the project's pyproject.toml.
    severity: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)

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

        for key in options.keys() - {"debounceMs", "select", "ignore", "severity", "thresholds"}:
            logger.warning("ignoring unknown initialization option %r", key)

        return cls(
            debounce_ms=_read_debounce_ms(options.get("debounceMs")),
            select=_read_codes(options, "select"),
            ignore=_read_codes(options, "ignore"),
            severity=_read_table(options, "severity"),
            thresholds=_read_table(options, "thresholds"),
        )

    def with_configuration(self, section: object) -> ServerSettings:
        """Apply the `gradsight` section of a workspace/didChangeConfiguration notification.

        An empty `select` list means "not set" there, because VS Code settings cannot be null.
        Keys that only the extension uses (interpreter, trace) are skipped.
        """
        if not isinstance(section, dict):
            return self
        select = _read_codes(section, "select")
        return replace(
            self,
            select=select or None,
            ignore=_read_codes(section, "ignore"),
            severity=_read_table(section, "severity"),
            thresholds=_read_table(section, "thresholds"),
        )

    def editor_overrides(self) -> dict[str, object]:
        """Return the settings that override pyproject.toml, as a [tool.gradsight]-shaped table."""
        table: dict[str, object] = {}
        if self.select is not None:
            table["select"] = list(self.select)
        if self.ignore:
            table["ignore"] = list(self.ignore)
        if self.severity:
            table["severity"] = dict(self.severity)
        if self.thresholds:
            table["thresholds"] = dict(self.thresholds)
        return table

    def describe(self) -> str:
        select = ", ".join(self.select) if self.select is not None else "all rules"
        ignore = ", ".join(self.ignore) if self.ignore else "none"
        severity = ", ".join(f"{code}={level}" for code, level in self.severity.items()) or "defaults"
        thresholds = ", ".join(f"{name}={value}" for name, value in self.thresholds.items()) or "defaults"
        return f"debounceMs={self.debounce_ms}, select: {select}, ignore: {ignore}, severity: {severity}, thresholds: {thresholds}"


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
    if isinstance(value, str):
        value = [value]  # "GS1,GS502", as on the command line
    if isinstance(value, list) and all(isinstance(code, str) for code in value):
        return tuple(part.strip() for code in value for part in code.split(",") if part.strip())

    logger.warning(
        "invalid initialization option %s=%r: expected a list of rule codes such as [\"GS101\"]; ignoring it",
        key,
        value,
    )
    return None


def _read_table(options: dict, key: str) -> dict:
    value = options.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)

    logger.warning("invalid setting %s=%r: expected an object such as {\"GS102\": \"error\"}; ignoring it", key, value)
    return {}
