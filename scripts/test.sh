#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run every test suite:
# Python (analysis core, CLI, language server over stdio), the extension's TypeScript unit
# tests, and the end-to-end test in a real VS Code (code-server, headless Chromium).
# The end-to-end set-up installs Debian packages (chromium) with apt-get, so it runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test

echo
echo "== Python tests (analysis core, CLI, language server)"
.venv/bin/python -m pytest

echo
echo "== Extension unit tests (TypeScript)"
npm ci --no-audit --no-fund
npm run lint
npm test

echo
echo "== Extension package"
npm run package

echo
echo "== End-to-end test in code-server"
GRADSIGHT_VSIX="$PWD/dist/gradsight.vsix" bash tests/e2e/run.sh
