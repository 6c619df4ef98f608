"""The generated copies: up to date, no solution code in the student copy, valid Python,
no outputs, Colab badges and install cell built from the one GitHub setting."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import course_figures
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


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


BLANKS = ("step1", "step2", "step3", "step4", "step5", "predict_next_tokens")


def test_every_blank_has_hints_and_raises():
    student = _read(STUDENT)
    for grade_id in BLANKS:
        source = _cell(student, grade_id).source
        assert "raise NotImplementedError" in source, grade_id
        hints = [line for line in source.split("\n") if line.strip().startswith("#")]
        assert hints, f"{grade_id} has no hint"


# What each step asks the student to find out, written the way the solution writes it
# (spaces ignored): no hint, visible test or text of the student copy may contain it.
KEY_EXPRESSIONS = {
    "step1": ['tokenizer(phrase,return_tensors="pt")', 'batch["input_ids"]'],
    "step2": ["model(**batch)"],
    "step3": ["[0,-1"],
    "step4": ["softmax(dim=-1)", ".argmax()"],
    "step5": ["topk(last_token_logits,k=10)", "[most_likely_tokens.indices]",
              "most_likely_tokens.indices"],
}


def _without_spaces(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_key_expressions_are_the_solutions():
    # the list is real: every expression is in the solution of its own step
    solution = _read(SOLUTION)
    for grade_id, expressions in KEY_EXPRESSIONS.items():
        source = _without_spaces(_cell(solution, grade_id).source)
        for expression in expressions:
            assert expression in source, (grade_id, expression)


def test_no_hint_or_visible_test_gives_a_step_away():
    student = _without_spaces("\n".join(c.source for c in _read(STUDENT).cells))
    for grade_id, expressions in KEY_EXPRESSIONS.items():
        for expression in expressions:
            assert expression not in student, (grade_id, expression)


def test_the_give_away_check_would_catch_the_old_hints():
    leaky = _read(STUDENT)
    _cell(leaky, "step3").source += "\n# HINT last_token_logits = model_output.lo...[0, -1, :]"
    text = _without_spaces("\n".join(c.source for c in leaky.cells))
    assert any(expression in text for expression in KEY_EXPRESSIONS["step3"])


def test_each_blank_is_explained_above_it():
    # a student reading only the markdown finds what each blank needs
    student = _read(STUDENT)
    explained = {
        "step1_md": ['return_tensors="pt"', '"input_ids"', "Ġ", "decode"],
        "step2_md": ["**", "keyword arguments", "torch.no_grad()", ".logits"],
        "step3_md": ["batch", "position", "vocabulary", "index is 0", "-1", ":"],
        "step4_md": ["softmax", "Tensor.argmax", "dim", "int(...)"],
        "step5_md": ["torch.topk", "keeps the order", "probabilities[ids]", ".tolist()"],
        "intro": ["*tokens*", "*logit*", "tokenization notebook", "generate"],
    }
    for grade_id, words in explained.items():
        text = _cell(student, grade_id).source
        for word in words:
            assert word in text, (grade_id, word)


# the notebook's written "expected" figures, and the figures the hub tests check
def _expected_tables(text: str) -> dict[str, list[tuple[str, float]]]:
    """The markdown table of the three phrases: {phrase: [(token, probability), ...]}."""
    lines = [line for line in text.split("\n") if line.startswith("|")]
    phrases = re.findall(r'`"([^"]+)"`', lines[0])
    tables: dict[str, list[tuple[str, float]]] = {phrase: [] for phrase in phrases}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        for phrase, (token, probability) in zip(phrases, zip(cells[::2], cells[1::2], strict=True),
                                                strict=True):
            tables[phrase].append((ast.literal_eval(token.strip("`")), float(probability)))
    return tables


def test_written_figures_are_the_course_figures():
    student = _read(STUDENT)
    tables = _expected_tables(_cell(student, "expected_md").source)
    assert set(tables) == set(course_figures.TOP5)
    for phrase, rows in tables.items():
        expected = course_figures.TOP5[phrase]
        assert [token for token, _ in rows] == [token for token, _ in expected], phrase
        for (_, written), (_, published) in zip(rows, expected, strict=True):
            assert abs(written - published) <= 0.5e-4 + 1e-9, phrase
    step5 = _cell(student, "step5_md").source
    written = re.findall(r"`('[^`]*')` (\d\.\d{4})", step5)
    assert [(ast.literal_eval(t), float(p)) for t, p in written] == [
        (token, round(probability, 4)) for token, probability in
        course_figures.TOP5[course_figures.PHRASE]
    ]
    ids = ", ".join(f"{i:4d}" for i in course_figures.INPUT_IDS).strip()
    assert f"tensor([[ {ids}]])" in _cell(student, "step1_md").source
    tokens = ", ".join(f"`{token!r}`" for token in course_figures.TOKENS)
    assert tokens in _cell(student, "step1_md").source
    shape = "(" + ", ".join(str(n) for n in course_figures.LOGITS_SHAPE) + ")"
    assert f"`logits shape: {shape}`" in _cell(student, "step2_md").source
    assert f"`last_token_logits.shape == ({course_figures.VOCABULARY},)`" in _cell(
        student, "step3_md").source
    line = (f"Most likely next token: {course_figures.ARGMAX_TOKEN!r} (id "
            f"{course_figures.ARGMAX_ID}), probability {course_figures.ARGMAX_PROBABILITY:.2%}")
    assert f"`{line}`" in _cell(student, "step4_md").source
    load = _cell(student, "load_md").source
    assert f"Vocabulary size: {course_figures.VOCABULARY:,} tokens" in load
    assert f"Parameters: {course_figures.PARAMETERS:,}" in load


def test_written_input_ids_are_gpt2s(tiny_tokenizer):
    # the offline model uses GPT-2's own tokenizer: the ids can be checked here
    ids = tiny_tokenizer(course_figures.PHRASE)["input_ids"]
    assert ids == course_figures.INPUT_IDS
    assert [tiny_tokenizer.decode(i) for i in ids] == course_figures.TOKENS
    assert tiny_tokenizer.decode(course_figures.ARGMAX_ID) == course_figures.ARGMAX_TOKEN


# the questions and their mark schemes
MARK_SCHEME = re.compile(r"### BEGIN MARK SCHEME\n(.*?)\n### END MARK SCHEME", re.DOTALL)


def test_each_question_has_a_mark_scheme_worth_its_points():
    source = _read(SOURCE)
    for number in (1, 2, 3):
        schemes = MARK_SCHEME.findall(_cell(source, f"q{number}_md").source)
        assert len(schemes) == 1, number
        points = _cell(source, f"q{number}").metadata["nbgrader"]["points"]
        assert f"{points} points" in schemes[0], number
        assert sum(int(n) for n in re.findall(r"(\d) point for", schemes[0])) == points


def test_q3_asks_what_its_mark_scheme_rewards():
    source = _read(SOURCE)
    question, scheme = _cell(source, "q3_md").source.split("### BEGIN MARK SCHEME")
    assert "a few different ways" in question and "don't have to write any code" in question
    assert "decisions" in question and "decisions" in scheme
    assert "at least two ways" in scheme and "No code is expected" in scheme


@pytest.mark.parametrize("path", [STUDENT, SOLUTION], ids=["student", "solution"])
def test_no_mark_scheme_in_a_copy_students_get(path):
    text = path.read_text()
    assert "MARK SCHEME" not in text and "Mark scheme" not in text
    assert "graders only" not in text


@pytest.mark.parametrize("path", [SOURCE, STUDENT, SOLUTION], ids=["source", "student", "solution"])
def test_notebooks_are_committed_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_questions_are_the_same_in_both_copies():
    def questions(nb):
        return [c.source.strip() for c in nb.cells if re.search(r"\*\*Q\d\.\*\*", c.source)]

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


def test_install_cell_pins_the_release_of_this_version():
    location = github_location()
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    install = _read(STUDENT).cells[2]
    assert "import google.colab" in install.source
    assert (
        f'PACKAGE = "lmlogits-course @ git+https://github.com/{location.owner}/'
        f'{location.repository}@v{version}"' in install.source
    )
    assert "torch" not in install.source.split("PACKAGE =")[1].split("\n")[0]
    namespace: dict = {}
    exec(install.source, namespace)  # outside Colab, with lmlogits installed: nothing to do
    assert namespace["ON_COLAB"] is False


def _run_install_cell(tmp_path, google_colab: str | None, pip: str | None):
    """Run the install cell in a plain Python without lmlogits (-I: no site folders of
    ours), with a stand-in ``google.colab`` and ``pip`` when given."""
    source = _cell(_read(STUDENT), "colab_install").source
    if google_colab is not None:
        (tmp_path / "google").mkdir()
        (tmp_path / "google" / "__init__.py").write_text("")
        (tmp_path / "google" / "colab.py").write_text(google_colab)
    if pip is not None:
        (tmp_path / "pip").mkdir()
        (tmp_path / "pip" / "__init__.py").write_text("")
        (tmp_path / "pip" / "__main__.py").write_text(pip)
    script = tmp_path / "cell.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n" + source)
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    return subprocess.run([str(base_python), "-I", str(script)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)


def test_off_colab_a_missing_package_names_the_command(tmp_path):
    result = _run_install_cell(tmp_path, google_colab=None, pip=None)
    assert result.returncode != 0
    assert "ModuleNotFoundError: This notebook needs the course's helper package" in result.stderr
    location = github_location()
    assert f'%pip install "{location.pip_reference()}"' in result.stderr


def test_on_colab_pip_failure_shows_pips_message(tmp_path):
    failing_pip = "import sys\nprint('ERROR: no such tag v9', file=sys.stderr)\nsys.exit(1)\n"
    result = _run_install_cell(tmp_path, google_colab="", pip=failing_pip)
    assert result.returncode != 0
    assert "ERROR: no such tag v9" in result.stdout  # printed for the student
    assert "RuntimeError: pip could not install" in result.stderr


def test_on_colab_pip_success_is_quiet(tmp_path):
    result = _run_install_cell(tmp_path, google_colab="", pip="import sys\nsys.exit(0)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
