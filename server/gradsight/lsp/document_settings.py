"""Checker settings for one document: its project's pyproject.toml, overridden by the editor's settings."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

from gradsight.config import DEFAULT_SETTINGS, ConfigError, Settings, parse_settings, settings_for
from gradsight.lsp.settings import ServerSettings

logger = logging.getLogger(__name__)


def document_path(uri: str) -> Path | None:
    """Return the file system path of a `file:` URI, or None for other schemes (untitled documents)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def checker_settings(uri: str, editor: ServerSettings) -> Settings:
    """Return the settings to check document `uri` with.

    An invalid pyproject.toml or editor setting is logged and skipped, so that a typo never
    turns the checks off.
    """
    base = DEFAULT_SETTINGS
    path = document_path(uri)
    if path is not None:
        try:
            base = settings_for(path)
        except ConfigError as error:
            logger.warning("ignoring the gradsight configuration for %s: %s", uri, error)

    overrides = editor.editor_overrides()
    if not overrides:
        return base
    try:
        return parse_settings(overrides, "editor settings (gradsight.*)", base=base)
    except ConfigError as error:
        logger.warning("ignoring invalid editor settings for %s: %s", uri, error)
        return base
