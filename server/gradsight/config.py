"""Settings of the static checker, read from `[tool.gradsight]` in pyproject.toml.

    [tool.gradsight]
    select = ["GS1", "GS2"]          # codes or prefixes to report (default: every rule)
    ignore = ["GS201"]               # codes or prefixes never reported
    [tool.gradsight.severity]
    GS102 = "error"                  # per-rule severity: error, warning, information or hint
    [tool.gradsight.thresholds]
    lr-min = 1e-6

The editor may override any of these (the `gradsight.*` settings in VS Code).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gradsight.findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigError(ValueError):
    """An invalid value in `[tool.gradsight]` or in the editor settings."""


@dataclass(frozen=True)
class Thresholds:
    """Numeric limits of the rules. Field names are the TOML keys with `_` for `-`."""

    # GS101: a learning rate at or below this is too small.
    lr_min: float = 1e-6
    # GS102: learning rates above these are too large.
    sgd_lr_max: float = 1.0
    adam_lr_max: float = 0.1
    # GS502: a Normalize std at or below this amplifies inputs too much.
    std_floor: float = 0.1
    # GS107: a gradient-clipping maximum at or below this stops learning.
    grad_clip_min: float = 1e-4
    # GS105: a weight decay at or above this erases the weights with any optimizer.
    weight_decay_max: float = 1.0
    # GS105: an L2 penalty added to the gradient (SGD, Adam: not AdamW) at or above this dominates it.
    coupled_weight_decay_max: float = 0.1


@dataclass(frozen=True)
class Settings:
    """Checker settings: rule selection, per-rule severities and thresholds."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    severity: Mapping[str, Severity] = field(default_factory=dict)
    thresholds: Thresholds = Thresholds()
    # The pyproject.toml the settings came from, for messages; None for defaults.
    source: Path | None = None

    def merged(self, **overrides) -> Settings:
        """Return a copy with the non-None overrides applied (`severity` and thresholds merge key by key)."""
        values = {}
        for name, value in overrides.items():
            if value is None:
                continue
            if name == "severity":
                value = {**self.severity, **value}
            elif name == "thresholds":
                value = dataclasses.replace(self.thresholds, **value) if isinstance(value, dict) else value
            values[name] = value
        return dataclasses.replace(self, **values)


DEFAULT_SETTINGS = Settings()
_THRESHOLD_NAMES = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(Thresholds)}


def parse_codes(values: Iterable[str], where: str) -> tuple[str, ...]:
    """Normalise rule codes or prefixes and reject the ones that match no rule."""
    from gradsight.static.rules.catalog import RULES

    codes = []
    for value in values:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected rule codes as strings, got {value!r}")
        for part in value.split(","):
            code = part.strip().upper()
            if not code:
                continue
            if not any(known.startswith(code) for known in RULES):
                raise ConfigError(f"{where}: unknown rule code {code!r}; known codes: {', '.join(sorted(RULES))}")
            codes.append(code)
    return tuple(codes)


def parse_settings(table: Mapping[str, object], where: str, base: Settings = DEFAULT_SETTINGS) -> Settings:
    """Build Settings from a `[tool.gradsight]` table (or the same shape from editor settings)."""
    known = {"select", "ignore", "severity", "thresholds"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {', '.join(unknown)}; expected one of: {', '.join(sorted(known))}")

    select = table.get("select")
    ignore = table.get("ignore")
    if select is not None and not isinstance(select, list):
        raise ConfigError(f"{where}: `select` must be a list of rule codes, got {select!r}")
    if ignore is not None and not isinstance(ignore, list):
        raise ConfigError(f"{where}: `ignore` must be a list of rule codes, got {ignore!r}")

    severity: dict[str, Severity] = {}
    raw_severity = table.get("severity") or {}
    if not isinstance(raw_severity, Mapping):
        raise ConfigError(f"{where}: `severity` must be a table of CODE = \"level\", got {raw_severity!r}")
    for code, level in raw_severity.items():
        (normalised,) = parse_codes([code], f"{where}: severity") or (code,)
        try:
            severity[normalised] = Severity.parse(str(level))
        except ValueError as error:
            raise ConfigError(f"{where}: severity of {code}: {error}") from None

    thresholds: dict[str, float] = {}
    raw_thresholds = table.get("thresholds") or {}
    if not isinstance(raw_thresholds, Mapping):
        raise ConfigError(f"{where}: `thresholds` must be a table, got {raw_thresholds!r}")
    for key, value in raw_thresholds.items():
        name = _THRESHOLD_NAMES.get(str(key).replace("_", "-"))
        if name is None:
            raise ConfigError(f"{where}: unknown threshold {key!r}; known thresholds: {', '.join(sorted(_THRESHOLD_NAMES))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where}: threshold {key} must be a non-negative number, got {value!r}")
        thresholds[name] = float(value)

    return base.merged(
        select=parse_codes(select, f"{where}: select") if select is not None else None,
        ignore=parse_codes(ignore, f"{where}: ignore") if ignore is not None else None,
        severity=severity or None,
        thresholds=thresholds or None,
    )


def find_pyproject(start: Path) -> Path | None:
    """Return the nearest pyproject.toml with a `[tool.gradsight]` table, searching from `start` upwards."""
    directory = start if start.is_dir() else start.parent
    for candidate_dir in [directory, *directory.parents]:
        candidate = candidate_dir / "pyproject.toml"
        if candidate.is_file():
            try:
                if "tool" in _read_toml(candidate) and "gradsight" in _read_toml(candidate)["tool"]:
                    return candidate
            except ConfigError:
                return candidate  # Let load_settings report the parse error.
    return None


def load_settings(path: Path) -> Settings:
    """Read the settings of `[tool.gradsight]` in a pyproject.toml file."""
    data = _read_toml(path)
    table = data.get("tool", {}).get("gradsight", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: [tool.gradsight] must be a table")
    return dataclasses.replace(parse_settings(table, str(path)), source=path)


def settings_for(path: Path) -> Settings:
    """Return the settings that apply to a file: its nearest configured pyproject.toml, or the defaults."""
    pyproject = find_pyproject(path.resolve())
    return load_settings(pyproject) if pyproject is not None else DEFAULT_SETTINGS


_TOML_CACHE: dict[tuple[Path, float], dict] = {}


def _read_toml(path: Path) -> dict:
    try:
        key = (path, path.stat().st_mtime)
        if key not in _TOML_CACHE:
            with path.open("rb") as handle:
                _TOML_CACHE[key] = tomllib.load(handle)
        return _TOML_CACHE[key]
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
