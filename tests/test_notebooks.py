"""The generated copies: up to date, no solution code in the student copy, valid Python,
no outputs, Colab badges and install cell built from the one GitHub setting."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from lmlogits_grader.generate import (
    ASSIGNMENTS,
    generated_files,
    github_location,
    stale_files,
    student_copy,
)

REPO = Path(__file__).resolve().parents[1]
NAME = ASSIGNMENTS[0]
SOURCE = REPO / "autograder" / "source" / NAME / f"{NAME}.ipynb"
STUDENT = REPO / "notebooks" / f"{NAME}.ipynb"
SOLUTION = REPO / "solutions" / f"{NAME}.ipynb"


def _read(path):
    return nbformat.read(path, as_version=4)


def _solution_lines(nb) -> set[str]:
    """Lines found only inside the source's solution regions (hints excepted).

    A line that the source also shows outside the regions (``with torch.no_grad():`` is
    given in step 2) is scaffolding, not solution.
    """
    inside_lines, outside_lines = set(), set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif line.strip() and not line.strip().startswith("# HINT"):
                (inside_lines if inside else outside_lines).add(line.strip())
    return inside_lines - outside_lines


def test_committed_copies_are_what_the_source_generates():
    assert stale_files() == [], "run `make notebooks` and commit the result"


def test_a_stale_copy_is_detected(tmp_path):
    # Copy the repository's inputs, change the source, and the check must notice.
    for path, text in generated_files().items():
        target = tmp_path / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    assert stale_files(tmp_path) == []
    source = tmp_path / SOURCE.relative_to(REPO)
    source.write_text(source.read_text().replace("Step 1: tokenize", "Step 1: tokenise"))
    assert stale_files(tmp_path) == [tmp_path / STUDENT.relative_to(REPO),
                                     tmp_path / SOLUTION.relative_to(REPO)]


def test_student_copy_contains_no_solution_code():
    solution_lines = _solution_lines(_read(SOURCE))
    assert len(solution_lines) > 20  # the regions were found
    student = _read(STUDENT)
    student_lines = {line.strip() for cell in student.cells for line in cell.source.split("\n")}
    assert solution_lines & student_lines == set()


def test_leak_check_would_catch_a_leak():
    source = _read(SOURCE)
    leaky = student_copy(source, github_location(), NAME)
    leaky.cells[-1].source += "\nlast_token_logits = model_output.logits[0, -1, :]"
    student_lines = {line.strip() for cell in leaky.cells for line in cell.source.split("\n")}
    assert _solution_lines(source) & student_lines


@pytest.mark.parametrize("path", [STUDENT, SOLUTION], ids=["student", "solution"])
def test_every_code_cell_is_valid_python(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)  # a SyntaxError here fails the test


def test_student_blanks_keep_the_course_hints_and_raise():
    student = _read(STUDENT)
    step1 = next(c for c in student.cells if c.metadata["nbgrader"]["grade_id"] == "step1")
    assert 'batch = tokenizer(ph..., return_tensors="pt")' in step1.source
    assert "raise NotImplementedError" in step1.source
    sources = "\n".join(c.source for c in student.cells)
    for hint in ("model_output.lo...", ".sof...(dim=-1)", 'batch["in..."]'):
        assert hint in sources


@pytest.mark.parametrize("path", [SOURCE, STUDENT, SOLUTION], ids=["source", "student", "solution"])
def test_notebooks_are_committed_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_questions_are_the_same_in_both_copies():
    def questions(nb):
        return [c.source for c in nb.cells if re.search(r"\*\*Q\d\.\*\*", c.source)]

    student, solution = questions(_read(STUDENT)), questions(_read(SOLUTION))
    assert len(student) == 3 and student == solution
    assert "`-3`" in student[1]


def _badge_targets(text: str) -> list[str]:
    return re.findall(r"https://colab\.research\.google\.com/github/([^)\s\"]+)", text)


def test_badges_point_at_notebooks_of_this_repository():
    location = github_location()
    prefix = f"{location.owner}/{location.repository}/blob/{location.branch}/"
    texts = [STUDENT.read_text(), SOLUTION.read_text(), (REPO / "README.md").read_text()]
    targets = [target for text in texts for target in _badge_targets(text)]
    assert len(targets) >= 3  # one per notebook, and the README's
    for target in targets:
        assert target.startswith(prefix), target
        assert (REPO / target[len(prefix):]).is_file(), f"badge points at a missing {target}"
    first = _read(STUDENT).cells[0]
    assert first.cell_type == "markdown" and "colab-badge.svg" in first.source


def test_install_cell_uses_a_direct_reference_only_on_colab():
    location = github_location()
    install = _read(STUDENT).cells[2]
    assert "import google.colab" in install.source
    assert (
        f'"lmlogits-course @ git+https://github.com/{location.owner}/{location.repository}'
        f'@{location.branch}"' in install.source
    )
    assert "torch" not in install.source.split("package =")[1]  # does not reinstall torch
    namespace: dict = {}
    exec(install.source, namespace)  # outside Colab: runs, installs nothing
    assert namespace["ON_COLAB"] is False
