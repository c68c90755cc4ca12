"""Run the gradsight language server with a checker that fails or stalls on marked documents.

Tests start this script in place of `python -m gradsight lsp` to check how the server handles an
exception from the analysis core and an analysis that takes long. Every document goes to the real
checker, after the delay if it carries SLOW_MARKER.
"""

from __future__ import annotations

import time

import gradsight.lsp.server as server_module
from gradsight.static import check_source

RAISE_MARKER = "# lsp-test: make the checker raise"
SLOW_MARKER = "# lsp-test: make the checker slow"
SLOW_ANALYSIS_S = 1.5


def check_source_or_raise(source: str, **options):
    if RAISE_MARKER in source:
        raise RuntimeError("simulated failure of the static checker")
    if SLOW_MARKER in source:
        time.sleep(SLOW_ANALYSIS_S)

    return check_source(source, **options)


if __name__ == "__main__":
    server_module.check_source = check_source_or_raise
    server_module.run_stdio()
