#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test

echo
echo "== Python tests (analysis core, CLI, language server)"
.venv/bin/python -m pytest
