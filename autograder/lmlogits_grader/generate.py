"""Generate the student and solution copies of each assignment from its one source.

The only hand-edited notebook of an assignment is ``autograder/source/<name>/<name>.ipynb``.
This module writes, from it:

- ``notebooks/<name>.ipynb``, the student copy: exactly what ``nbgrader
  generate_assignment`` releases (blanks with hints, hidden tests removed, checksums),
  with an "Open in Colab" badge;
- ``solutions/<name>.ipynb``, the solution copy: the source without nbgrader's markers,
  hint lines and hidden tests, with its own badge.

Two cells of the source are filled in from ``[tool.lmlogits.github]`` in pyproject.toml,
so that the repository's location is written in one place: the badge (tagged
``colab-badge``) and the Colab install cell (tagged ``colab-install``).

Usage: ``python -m lmlogits_grader.generate`` writes every copy;
``python -m lmlogits_grader.generate --check`` lists stale files and exits 1 if any.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ComputeChecksums,
    LockCells,
)

from lmlogits_grader.blanks import HintedBlanks, strip_hints

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / "autograder" / "source"
ASSIGNMENTS = ("013-lm-logits",)

_SOLUTION_MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
_HIDDEN_TESTS = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?",
    re.MULTILINE | re.DOTALL,
)
# The questions' mark schemes: in the source (so nbgrader's gradebook keeps them and
# formgrader shows them to graders), never in a copy students get.
_MARK_SCHEME = re.compile(
    r"\n*^[ \t]*### BEGIN MARK SCHEME[ \t]*\n.*?^[ \t]*### END MARK SCHEME[ \t]*(\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class GitHubLocation:
    owner: str
    repository: str
    branch: str
    distribution: str
    version: str

    def colab_url(self, path: str) -> str:
        return (
            f"https://colab.research.google.com/github/{self.owner}/{self.repository}"
            f"/blob/{self.branch}/{path}"
        )

    @property
    def release_tag(self) -> str:
        """The git tag of this version (``v`` + pyproject's version), which students get."""
        return f"v{self.version}"

    def pip_reference(self) -> str:
        """pip's direct-reference form, pinned to the release tag: never the bare
        registry name (another package), never a moving branch (a runtime that installed
        it once would keep an older commit of the same version)."""
        return (
            f"{self.distribution} @ git+https://github.com/{self.owner}/{self.repository}"
            f"@{self.release_tag}"
        )


def github_location(repo: Path = REPO) -> GitHubLocation:
    """Read the repository's GitHub location and version from pyproject.toml."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    github = pyproject["tool"]["lmlogits"]["github"]
    project = pyproject["project"]
    return GitHubLocation(
        github["owner"], github["repository"], github["branch"], project["name"],
        project["version"],
    )


def badge_markdown(location: GitHubLocation, path: str) -> str:
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({location.colab_url(path)})"
    )


def install_cell_source(location: GitHubLocation) -> str:
    """The notebook's first code cell: installs the helper package on Colab; elsewhere
    checks that it is installed, and says the one command that installs it if not."""
    return "\n".join(
        [
            "# The course's helper package, lmlogits, pinned to the release this notebook was",
            "# written for. On Colab it is installed from GitHub (Colab already has torch,",
            "# transformers and pandas, and pip keeps them as they are); elsewhere it must be",
            "# installed already, and this cell says how if it is not.",
            "import importlib.util",
            "import subprocess",
            "import sys",
            "",
            "# pip's direct-reference form: the bare name on the registry is another package",
            f'PACKAGE = "{location.pip_reference()}"',
            "try:",
            "    import google.colab  # noqa: F401  (importable on Colab only)",
            "    ON_COLAB = True",
            "except ImportError:",
            "    ON_COLAB = False",
            "",
            "if ON_COLAB:",
            "    pip = [sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\", PACKAGE]",
            "    installed = subprocess.run(pip, capture_output=True, text=True)",
            "    if installed.returncode != 0:",
            "        print(installed.stdout + installed.stderr)",
            "        raise RuntimeError(f\"pip could not install {PACKAGE} (see above)\")",
            "elif importlib.util.find_spec(\"lmlogits\") is None:",
            "    raise ModuleNotFoundError(",
            "        \"This notebook needs the course's helper package `lmlogits`, which is not \"",
            "        \"installed in this kernel's Python. Install it by running this in a cell, \"",
            "        f\"then restart the kernel:\\n    %pip install \\\"{PACKAGE}\\\"\"",
            "    )",
        ]
    )


def _tagged(nb, tag: str):
    return [cell for cell in nb.cells if tag in cell.get("metadata", {}).get("tags", [])]


def _set_generated_cells(nb, location: GitHubLocation, badge_path: str) -> None:
    for cell in _tagged(nb, "colab-badge"):
        cell.source = badge_markdown(location, badge_path)
    for cell in _tagged(nb, "colab-install"):
        cell.source = install_cell_source(location)


def _apply(nb, preprocessors) -> None:
    resources: dict = {}
    for preprocessor in preprocessors:
        nb, resources = preprocessor.preprocess(nb, resources)


def student_copy(source_nb, location: GitHubLocation, name: str):
    """What ``nbgrader generate_assignment`` releases, plus the Colab badge."""
    nb = copy.deepcopy(source_nb)
    _set_generated_cells(nb, location, f"notebooks/{name}.ipynb")
    # the same steps, in the same order, as nbgrader's GenerateAssignment (minus the
    # gradebook), with HintedBlanks in place of ClearSolutions
    _apply(
        nb,
        [
            LockCells(),
            HintedBlanks(),
            ClearOutput(),
            CheckCellMetadata(),
            ComputeChecksums(),
            ClearHiddenTests(),
            # the mark schemes sit in the questions' locked markdown cells, not in task
            # cells: nbgrader_config.py allows that too
            ClearMarkScheme(enforce_metadata=False),
            ComputeChecksums(),
            CheckCellMetadata(),
        ],
    )
    return nb


def solution_copy(source_nb, location: GitHubLocation, name: str):
    """The source with its answers in place, without markers, hints or hidden tests."""
    nb = copy.deepcopy(source_nb)
    _set_generated_cells(nb, location, f"solutions/{name}.ipynb")
    for cell in nb.cells:
        source = _MARK_SCHEME.sub("\n", _HIDDEN_TESTS.sub("", cell.source))
        lines = [line for line in source.split("\n") if not _SOLUTION_MARKERS.match(line)]
        cell.source = strip_hints("\n".join(lines)).strip("\n")
    _apply(nb, [ClearOutput()])
    return nb


README_START = "<!-- colab-links:start (generated by `make notebooks`) -->"
README_END = "<!-- colab-links:end -->"


def readme_with_links(text: str, location: GitHubLocation) -> str:
    """README text with its block of Colab links rewritten from the GitHub setting."""
    lines = [README_START]
    for name in ASSIGNMENTS:
        lines.append(
            f"- {name}: student notebook {badge_markdown(location, f'notebooks/{name}.ipynb')}"
            f" · solution {badge_markdown(location, f'solutions/{name}.ipynb')}"
        )
    lines.append(README_END)
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README.md lacks the markers {README_START!r} ... {README_END!r}")
    return pattern.sub(lambda _: "\n".join(lines), text)


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def generated_files(repo: Path = REPO) -> dict[Path, str]:
    """Every generated file (and the source, with its generated cells) and its text."""
    location = github_location(repo)
    files: dict[Path, str] = {}
    readme = repo / "README.md"
    files[readme] = readme_with_links(readme.read_text(encoding="utf-8"), location)
    for name in ASSIGNMENTS:
        source_path = repo / "autograder" / "source" / name / f"{name}.ipynb"
        source_nb = nbformat.read(source_path, as_version=4)
        _set_generated_cells(source_nb, location, f"notebooks/{name}.ipynb")
        _apply(source_nb, [ClearOutput()])
        files[source_path] = render(source_nb)
        files[repo / "notebooks" / f"{name}.ipynb"] = render(
            student_copy(source_nb, location, name)
        )
        files[repo / "solutions" / f"{name}.ipynb"] = render(
            solution_copy(source_nb, location, name)
        )
    return files


def stale_files(repo: Path = REPO) -> list[Path]:
    """Generated files whose committed text differs from what the source gives now."""
    return [
        path
        for path, text in generated_files(repo).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale copies")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(REPO)} (run `make notebooks`)")
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
