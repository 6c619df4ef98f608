"""Does installing the course package change a package that Colab preinstalls?

``make test-colab`` runs, in each Colab snapshot's environment, before the package is
installed there::

    python -m pip install --dry-run --quiet --report report.json .
    python tests/pip_report_check.py report.json

pip's report lists what it would install. This script compares that list with what the
environment has (``importlib.metadata``) and exits 1, naming each package, when the
install would replace a preinstalled package's version or add any package besides ours.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata

OURS = "lmlogits-course"


def canonical(name: str) -> str:
    """PEP 503's normalised form: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def problems(report: dict, installed: dict[str, str]) -> list[str]:
    """What the install would change: one line per package, empty when nothing."""
    found = []
    for item in report.get("install", []):
        name = canonical(item["metadata"]["name"])
        version = item["metadata"]["version"]
        if name == OURS:
            continue
        if name in installed:
            found.append(f"{name}: {installed[name]} would be replaced by {version}")
        else:
            found.append(f"{name}: {version} would be added (not preinstalled)")
    if not any(canonical(i["metadata"]["name"]) == OURS for i in report.get("install", [])):
        found.append(f"{OURS} is not in the report: was the right thing installed?")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/pip_report_check.py REPORT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as file:
        report = json.load(file)
    found = problems(report, installed_versions())
    for line in found:
        print(f"pip dry run: {line}")
    if not found:
        print(f"pip dry run: installing {OURS} changes no preinstalled package")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
