"""List requirements that a `pip install --target` directory lacks on a given Python version.

pip evaluates environment markers such as `python_version < "3.11"` for the Python that runs it, even when
`--python-version` names another one. A bundle built by Python 3.11 for Python 3.10 therefore lacks the 3.10-only
backports (exceptiongroup for cattrs, for example). This script reads the metadata of every distribution in the
directory, evaluates the markers for the requested version and prints one missing requirement per line, so the
caller can install them. It exits with status 1 when an installed version does not satisfy a requirement.

Usage: python package_missing_requirements.py --python-version 3.10 bundled/libs
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
    from packaging.markers import default_environment
    from packaging.utils import canonicalize_name
except ImportError:
    # NOTE: pip's vendored copy is a private module, used only when the packaging Python lacks `packaging`.
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.utils import canonicalize_name


def marker_environment(python_version: str) -> dict[str, str]:
    """Return the marker environment of the running Python with its version replaced by `python_version`.

    `python_full_version` becomes `<python_version>.0`, so a marker on a patch release is evaluated for the first
    one of that minor version.
    """
    environment = dict(default_environment())
    environment["python_version"] = python_version
    environment["python_full_version"] = f"{python_version}.0"
    environment["extra"] = ""
    return environment


def find_problems(target: str, python_version: str) -> tuple[list[str], list[str]]:
    """Return the missing requirements and the version conflicts of the distributions in `target`."""
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions(path=[target])
    }
    environment = marker_environment(python_version)

    missing: dict[str, str] = {}
    conflicts: list[str] = []
    for dist in metadata.distributions(path=[target]):
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            version = installed.get(name)
            if version is None:
                missing[name] = f"{requirement.name}{requirement.specifier}"
            elif not requirement.specifier.contains(version, prereleases=True):
                conflicts.append(
                    f"{dist.metadata['Name']} requires {requirement}, but {requirement.name} {version} is installed"
                )
    return sorted(missing.values()), conflicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", required=True, help="target Python version, for example 3.10")
    parser.add_argument("target", help="directory that pip installed into with --target")
    args = parser.parse_args()

    missing, conflicts = find_problems(args.target, args.python_version)
    if conflicts:
        for conflict in conflicts:
            print(f"version conflict for Python {args.python_version}: {conflict}", file=sys.stderr)
        return 1
    for requirement in missing:
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
