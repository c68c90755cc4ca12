#!/usr/bin/env bash
# Create or update the Python environment in .venv with gradsight installed in editable mode.
# Usage: scripts/setup.sh [--test]   (--test also installs the test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: $python is missing or older than Python 3.10; set PYTHON=/path/to/python3.10+" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi

extras=""
if [ "${1:-}" = "--test" ]; then
    extras="[test]"
fi
echo "setup: installing gradsight${extras} into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
