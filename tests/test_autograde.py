"""nbgrader end to end: one class of synthetic submissions, every score asserted exactly.

The expected points below are worked out by hand from the rubric (README "Rubric"),
one row per kind of submission, not computed by the grading code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmlogits_grader import course, submissions
from lmlogits_grader.checks import HIDDEN_PHRASES

pytestmark = pytest.mark.autograde

STEPS = ["test_step1", "test_step2", "test_step3", "test_step4", "test_step5"]
FUNCTION_TESTS = [
    "test_returns_k_rows",          # 2 points
    "test_matches_reference",       # 4
    "test_returns_probabilities",   # 1
    "test_no_global_vars",          # 2
    "test_works_without_notebook_globals",  # 3
]

# kind: points for the five function tests, in FUNCTION_TESTS order (steps 1-5 are right
# in every kind: each earns 1). None: the cell was deleted, 0 and flagged for a person.
EXPECTED = {
    "correct": (2, 4, 1, 2, 3),
    # batch.input_ids, torch.softmax, topk on probabilities, .tolist() columns
    "alternative": (2, 4, 1, 2, 3),
    # reads the notebook's phrase: the visible example still looks right
    "global_phrase": (2, 0, 1, 0, 0),
    # reads the notebook's last_token_probabilities
    "global_probabilities": (2, 0, 1, 0, 0),
    # not a DataFrame: the same with or without the notebook's variables, so the
    # global-variable checks are earned (each mistake costs once)
    "returns_list": (0, 0, 0, 2, 3),
    "returns_dict": (0, 0, 0, 2, 3),
    "wrong_columns": (0, 0, 0, 2, 3),
    # logits[0, -2]: right form, wrong tokens
    "off_by_one": (2, 0, 1, 2, 3),
    "returns_logits": (2, 0, 0, 2, 3),
    # always 10 rows
    "ignores_k": (0, 0, 1, 2, 3),
    # every call raises: not written yet, no function points at all
    "raises": (0, 0, 0, 0, 0),
    # the released stub (raise NotImplementedError) left as it is
    "unwritten": (0, 0, 0, 0, 0),
    # builds the table but forgets to return it
    "returns_none": (0, 0, 0, 0, 0),
    # never returns: stopped by the timeouts; its code reads no globals
    "infinite_loop": (0, 0, 0, 2, 0),
    # os._exit in the function: the kernel dies at the first call, after step 5; the
    # global-variable rule is judged on the submitted source, which reads no globals
    "kills_kernel": (0, 0, 0, 2, 0),
    # prints to stderr, warns, and triggers a torch warning: costs nothing
    "warns": (2, 4, 1, 2, 3),
    # the function's cell does not compile: predict_next_tokens is undefined
    "syntax_error": (0, 0, 0, 0, 0),
    # test_matches_reference deleted: that cell only scores 0
    "deleted_test_cell": (2, None, 1, 2, 3),
    # ignores k, and replaced two test cells by `pass`: the tests are restored
    "edited_test_cells": (0, 0, 1, 2, 3),
    # answer cells moved to the top and the plot to the end: graded by id, not place
    "moved_cells": (2, 4, 1, 2, 3),
    # test_step1 pasted twice: graded once, batch goes on
    "duplicated_cells": (2, 4, 1, 2, 3),
    # reads the global phrase and patches every checker to pass: gains nothing
    "cheats_checks": (2, 0, 1, 0, 0),
    # correct code, Q1-Q3 left as released
    "blank_answers": (2, 4, 1, 2, 3),
}


@pytest.fixture(scope="module")
def graded_class(every_kind_graded):
    """A course with every kind of submission, autograded once, with feedback
    (tests/conftest.py: graded once per session, the browser tests read its pages).

    nbgrader autograde runs in two parallel workers (tests/test_parallel.py shows that
    this gives serial nbgrader's grades); the regrading test below runs it serially.
    """
    return every_kind_graded.root, every_kind_graded.api, every_kind_graded.outcome, \
        every_kind_graded.grades


def test_every_kind_of_submission_is_in_the_test():
    assert set(EXPECTED) == set(submissions.KINDS)


def test_no_submission_crashes_the_batch(graded_class):
    _, _, outcome, grades = graded_class
    assert outcome == {kind: True for kind in EXPECTED}
    assert set(grades) == set(EXPECTED)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_cell_gets_its_deliberate_score(graded_class, kind):
    grades = graded_class[3][kind]
    got_steps = [grades[cell].score for cell in STEPS]
    assert got_steps == [1, 1, 1, 1, 1]
    got = tuple(
        None if grades[cell].needs_manual_grade else grades[cell].score for cell in FUNCTION_TESTS
    )
    assert got == EXPECTED[kind]
    for cell in FUNCTION_TESTS:
        if grades[cell].needs_manual_grade:  # a deleted cell: 0 until a person decides
            assert grades[cell].score == 0


def test_written_answers_wait_for_a_person_unless_unchanged(graded_class):
    grades = graded_class[3]
    for question in ("q1", "q2", "q3"):
        assert grades["correct"][question].needs_manual_grade
        assert grades["blank_answers"][question].score == 0
        assert not grades["blank_answers"][question].needs_manual_grade
        assert grades["correct"][question].max_score == 2


def _feedback_html(root: Path, student: str) -> str:
    return course.feedback_page(root, student).read_text()


def _page_without_times(root: Path, student: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\d[ T][\d:.]+", "<time>", _feedback_html(root, student))


def test_feedback_for_some_students_is_theirs_alone_and_as_made_one_by_one(graded_class,
                                                                          monkeypatch):
    from lmlogits_grader import feedback as readable

    root, api, _, _ = graded_class
    chosen, untouched = ["correct", "off_by_one"], "global_phrase"
    page = {kind: course.feedback_page(root, kind) for kind in [*chosen, untouched]}
    before = {kind: path.stat().st_mtime_ns for kind, path in page.items()}
    course.feedback(api, chosen)  # one nbgrader run for both
    for kind in chosen:
        assert page[kind].stat().st_mtime_ns != before[kind], kind
    assert page[untouched].stat().st_mtime_ns == before[untouched]
    batched = {kind: _page_without_times(root, kind) for kind in chosen}
    for kind in chosen:  # nbgrader once per student: the same pages
        api.generate_feedback(course.ASSIGNMENT, kind)
        readable.rewrite(root, kind, course.ASSIGNMENT)
        assert _page_without_times(root, kind) == batched[kind], kind

    # a page the one run did not write (nbgrader stops a batch on some errors) is made
    # by a run for that student alone
    one_by_one = api.generate_feedback
    monkeypatch.setattr(api, "generate_feedback", lambda assignment, student: None
                        if student == "*" else one_by_one(assignment, student))
    page["correct"].unlink()
    written = page["off_by_one"].stat().st_mtime_ns
    course.feedback(api, chosen)
    assert _page_without_times(root, "correct") == batched["correct"]
    assert page["off_by_one"].stat().st_mtime_ns != written


def test_feedback_explains_without_revealing_hidden_tests(graded_class):
    root = graded_class[0]
    html = _feedback_html(root, "global_phrase")
    assert "hidden phrases give a different top-k" in html
    assert "check_global_vars" in html
    for secret in ("BEGIN HIDDEN TESTS", "run_check", "lmlogits_grader", *HIDDEN_PHRASES[1:]):
        assert secret not in html, secret
    assert "the same tokens and probabilities as the" in html  # the test's name


def test_feedback_of_a_correct_submission_shows_full_marks(graded_class):
    html = _feedback_html(graded_class[0], "correct")
    # 17 of 17 automatic points; Q1-Q3 (6 points) are not graded yet, not "0 / 2"
    assert "(Score: 17 of the 17 points graded so far; 6 points awaiting grading)" in html
    for question in ("q1", "q2", "q3"):
        assert re.search(rf'<a href="#{question}">Written response</a> \(<span '
                         r'class="awaiting-grading">awaiting grading</span>, 2 points\)', html)
    assert "Score: 0.0 / 2.0" not in html
    # the 1-point cells (steps 1-5, probabilities), in the list and at the cells
    assert html.count("Score: 1.0 / 1.0") == 6 * 2
    assert "white-space: pre-wrap" in html  # messages wrap instead of scrolling


def _export(root: Path, name: str) -> dict[str, dict[str, str]]:
    rows = course.read_csv(course.export_csv(root, root / name))
    return {row["student_id"]: row for row in rows}


def test_grades_csv_and_manual_grades(graded_class):
    from nbgrader.api import Gradebook

    root = graded_class[0]
    rows = _export(root, "a.csv")
    assert set(rows) == set(EXPECTED)
    assert float(rows["correct"]["score"]) == 17
    assert float(rows["kills_kernel"]["score"]) == 7
    assert float(rows["correct"]["max_score"]) == 23
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("q1", course.ASSIGNMENT, course.ASSIGNMENT, "correct")
        grade.manual_score = 2
        grade.needs_manual_grade = False
        gradebook.db.commit()
    rows = _export(root, "b.csv")
    assert float(rows["correct"]["score"]) == 19


def test_the_export_is_what_nbgrader_export_writes(graded_class, tmp_path):
    """course.nbgrader_export runs nbgrader's exporter in this process; the command's
    CSV must be the same, row for row, manual grades included."""
    root = graded_class[0]
    ours = course.nbgrader_export(root, tmp_path / "ours.csv")
    subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "export", "--to",
                    str(tmp_path / "theirs.csv"), "--log-level=ERROR"], cwd=root, check=True)
    theirs = course.read_csv(tmp_path / "theirs.csv")
    assert len(theirs) == len(EXPECTED) and {"score", "max_score"} <= set(theirs[0])
    assert course.read_csv(ours) == theirs


def test_an_endless_loop_is_interrupted_cell_by_cell(graded_class):
    import nbformat

    from lmlogits_grader import submissions as made

    executed = nbformat.read(graded_class[0] / "autograded" / "infinite_loop" / course.ASSIGNMENT
                             / f"{course.ASSIGNMENT}.ipynb", as_version=4)
    # the timeout's interrupt reached the sandboxed kernel, which went on to the next cell
    plot = made._cell(executed, "plot")
    errors = [o.get("ename") for o in plot.outputs if o.output_type == "error"]
    assert errors[:1] == ["KeyboardInterrupt"]


def test_autograding_again_serially_changes_nothing(graded_class):
    # serial nbgrader over the parallel run's gradebook; tests/test_parallel.py compares
    # serial and parallel grades on a whole class
    root, api, _, before = graded_class
    again = ["global_phrase", "deleted_test_cell"]
    assert course.autograde(api, again, progress=False) == {kind: True for kind in again}
    after = course.cell_grades(root)
    for kind in EXPECTED:
        for cell in STEPS + FUNCTION_TESTS:
            assert after[kind][cell] == before[kind][cell], (kind, cell)
