#!/usr/bin/env bash
# Builds dist/gradsight.vsix. The server's Python code and its pure-Python dependencies go into bundled/libs, so
# the extension runs with any Python >= 3.10 without a pip install. vsce then bundles the TypeScript through the
# `vscode:prepublish` script and writes the package.
#
# Environment:
#   GRADSIGHT_PACKAGE_PYTHON        Python that runs pip (default: .venv/bin/python if present, else python3).
#                                   Any version >= 3.8 works because the bundle is resolved for Python 3.10.
#   GRADSIGHT_PACKAGE_CHECK_PYTHON  Python 3.10 that test-imports the bundle (default: python3.10 on PATH, if any).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Oldest Python the server supports. Resolving dependencies for it brings in the backports (exceptiongroup,
# typing_extensions) that newer Pythons do not need but 3.10 does.
target_python_version=3.10
libs_dir=bundled/libs

if [[ -n "${GRADSIGHT_PACKAGE_PYTHON:-}" ]]; then
    python="$GRADSIGHT_PACKAGE_PYTHON"
elif [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
else
    python=python3
fi
echo "package-vsix: running pip with $("$python" --version 2>&1) ($python)"

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# Build the gradsight wheel from a clean copy of the sources. Building in place would reuse build/ and could
# carry files that were deleted from server/ into the wheel.
source_copy="$work_dir/source"
mkdir -p "$source_copy"
cp pyproject.toml README.md "$source_copy/"
if [[ -f LICENSE ]]; then
    cp LICENSE "$source_copy/"
fi
cp -R server "$source_copy/server"
find "$source_copy/server" \( -name '__pycache__' -o -name '*.egg-info' \) -prune -exec rm -rf {} +
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work_dir/wheels" "$source_copy"

wheels=("$work_dir"/wheels/gradsight-*.whl)
if [[ ${#wheels[@]} -ne 1 || ! -f "${wheels[0]}" ]]; then
    echo "package-vsix: expected one gradsight wheel in $work_dir/wheels, found: ${wheels[*]}" >&2
    exit 1
fi

# Arguments that make pip pick only pure-Python wheels (platform tag `any`) for Python 3.10, so one bundle serves
# every operating system and CPU.
pip_target_args=(
    --quiet
    --disable-pip-version-check
    --no-compile
    --target "$libs_dir"
    --only-binary=:all:
    --python-version "$target_python_version"
    --implementation py
    --abi none
    --platform any
)

rm -rf "$libs_dir"
mkdir -p "$libs_dir"
"$python" -m pip install "${pip_target_args[@]}" "${wheels[0]}"

# pip evaluated markers such as `python_version < "3.11"` for the Python running it, so add what Python 3.10
# needs on top. Each round can reveal the requirements of the packages added in the round before.
for round in 1 2 3 4 5; do
    missing_output="$("$python" scripts/package_missing_requirements.py --python-version "$target_python_version" "$libs_dir")"
    if [[ -z "$missing_output" ]]; then
        break
    fi
    if [[ $round -eq 5 ]]; then
        echo "package-vsix: requirements still missing for Python $target_python_version after $round rounds: $missing_output" >&2
        exit 1
    fi
    mapfile -t missing <<<"$missing_output"
    echo "package-vsix: adding requirements that Python $target_python_version needs: ${missing[*]}"
    "$python" -m pip install "${pip_target_args[@]}" --no-deps "${missing[@]}"
done

# The console script has a shebang for the Python that ran pip, which the extension never uses.
rm -rf "$libs_dir/bin"
find "$libs_dir" -name '__pycache__' -prune -exec rm -rf {} +

compiled="$(find "$libs_dir" -type f \( -name '*.so' -o -name '*.pyd' -o -name '*.dylib' -o -name '*.dll' \))"
if [[ -n "$compiled" ]]; then
    echo "package-vsix: $libs_dir must contain only pure Python, but has compiled files:" >&2
    echo "$compiled" >&2
    exit 1
fi

# Import the bundle with site-packages disabled (-S), so only bundled/libs can satisfy the imports. The import
# also runs on Python 3.10, the oldest supported version, when GRADSIGHT_PACKAGE_CHECK_PYTHON names one or a
# working python3.10 is on PATH.
smoke_test='import pygls.lsp.server, lsprotocol.types, cattrs, gradsight'
check_pythons=("$python")
if [[ -n "${GRADSIGHT_PACKAGE_CHECK_PYTHON:-}" ]]; then
    check_pythons+=("$GRADSIGHT_PACKAGE_CHECK_PYTHON")
elif python3.10 -c '' >/dev/null 2>&1; then
    check_pythons+=(python3.10)
fi
for check_python in "${check_pythons[@]}"; do
    PYTHONPATH="$libs_dir" PYTHONNOUSERSITE=1 "$check_python" -S -c "$smoke_test"
    echo "package-vsix: bundle imports on $("$check_python" --version 2>&1) ($check_python)"
done

mkdir -p dist
rm -f dist/gradsight.vsix
node_modules/.bin/vsce package --no-dependencies --allow-missing-repository --out dist/gradsight.vsix
echo "package-vsix: wrote dist/gradsight.vsix"
