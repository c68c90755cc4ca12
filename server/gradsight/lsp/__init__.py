"""The gradsight language server: publishes the static checker's findings as LSP diagnostics."""

from gradsight.lsp.server import run_stdio

__all__ = ["run_stdio"]
