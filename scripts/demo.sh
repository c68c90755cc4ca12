#!/usr/bin/env bash
# Set up .venv, then check the bundled example, a VGG-16 CIFAR-10 script whose learning rate is 1e-10.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo
echo "$ .venv/bin/gradsight check examples/"
status=0
.venv/bin/gradsight check examples/ || status=$?
# Status 1 means findings were reported, which is what this example is for.
if [ "$status" -eq 1 ]; then
    echo
    echo "demo: gradsight found the bug in the example (exit status 1 means findings were reported)."
    exit 0
fi
exit "$status"
