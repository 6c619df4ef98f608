"""The environment files agree with each other and never name the wrong package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_distribution_name_is_not_the_unrelated_registry_package():
    assert _pyproject()["project"]["name"] == "lmlogits-course"


def test_conda_environment_lists_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["offline"])
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {line for line in pip_section if not line.startswith("-e")}
    assert listed == expected
    assert "-e ." in pip_section


def test_dev_requirements_pin_torch_to_the_cpu_build():
    lines = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines
    for line in lines:
        if line and not line.startswith(("#", "-")):
            assert "==" in line, f"unpinned development requirement: {line}"


# `pip install lmlogits` would fetch an unrelated package from the registry.
BARE_NAME = re.compile(r"(pip install[^\n]*?\s|^\s*-?\s*)lmlogits(\s|$|\[|=|<|>)", re.MULTILINE)


def test_bare_name_pattern_catches_the_mistakes_it_is_for():
    assert BARE_NAME.search("!pip install -q lmlogits")
    assert BARE_NAME.search("  - lmlogits>=0.1")
    assert not BARE_NAME.search("pip install 'lmlogits-course @ git+https://x/y@main'")
    assert not BARE_NAME.search("import lmlogits")


def test_nothing_installs_lmlogits_by_its_bare_registry_name():
    bare = BARE_NAME
    files = [REPO / name for name in ("Makefile", "requirements-dev.txt", "environment.yml")]
    files += list(REPO.glob("requirements*.txt")) + list((REPO / "notebooks").glob("*.ipynb"))
    files += list((REPO / "solutions").glob("*.ipynb")) + [REPO / "README.md"]
    for path in files:
        if path.exists():
            assert not bare.search(path.read_text()), f"{path} installs the bare name 'lmlogits'"
    project = _pyproject()["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    assert "lmlogits" not in names


def test_every_public_name_of_the_package_resolves():
    import lmlogits

    for name in lmlogits.__all__:
        assert getattr(lmlogits, name) is not None, name
