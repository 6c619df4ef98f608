"""Record: the resume fingerprint covers the grader itself, a grade changed behind the
grader's back is reported and not exported, and grading refuses to run unsandboxed
unless told to."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lmlogits_grader import course, grade_folder, record, sandbox, submissions


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """amy on time, bob a day late, in a course where a late notebook scores 0
    (nbgrader's LateSubmissionPlugin), autograded by plain serial nbgrader."""
    from nbgrader.api import Gradebook

    root = course.new_course(tmp_path_factory.mktemp("record") / "course")
    with open(root / "nbgrader_config.py", "a") as config:
        config.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    api = course.api_for(root)
    course.generate(api)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "lm-logits") as gradebook:
        gradebook.update_or_create_assignment(course.ASSIGNMENT, duedate="2026-11-02 09:00:00 UTC")
    handed_in = {"amy": "2026-11-01 10:00:00 UTC", "bob": "2026-11-03 10:00:00 UTC"}
    for student, kind in {"amy": "correct", "bob": "off_by_one"}.items():
        folder = course.submit(root, student, submissions.make_submission(kind)).parent
        (folder / "timestamp.txt").write_text(handed_in[student])
    assert course.autograde(api, ["amy", "bob"], progress=False) == {"amy": True, "bob": True}
    return root


def test_the_fingerprint_covers_the_model_and_the_grader_code(tmp_path):
    import lmlogits

    model = tmp_path / "model"
    shutil.copytree(lmlogits.resolve_model(), model)
    before = record._grader_digest(str(model))
    (model / "config.json").write_text((model / "config.json").read_text() + " ")
    record._grader_digest.cache_clear()
    assert record._grader_digest(str(model)) != before
    code = tmp_path / "code"
    code.mkdir()
    (code / "checks.py").write_text("A = 1\n")
    first = hashlib.sha256()
    record._digest_folder(first, code, tmp_path)
    (code / "checks.py").write_text("A = 2\n")
    second = hashlib.sha256()
    record._digest_folder(second, code, tmp_path)
    assert first.hexdigest() != second.hexdigest()


def test_a_new_gradebook_is_stamped_with_the_revision_alembic_prints(tmp_path):
    from nbgrader.dbutil import _temp_alembic_ini

    # what nbgrader.api.get_alembic_version runs (course.py reads it in-process instead)
    alembic = Path(sys.executable).parent / "alembic"
    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
        printed = subprocess.check_output([str(alembic), "-c", ini, "heads"], text=True)
    head = printed.split("\n")[0].split(" ")[0]
    assert len(head) >= 8 and course.alembic_head() == head
    root = course.new_course(tmp_path / "course")
    course.generate(course.api_for(root))
    with sqlite3.connect(root / "gradebook.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_graded_students_are_in_the_ledger(graded):
    assert record.recorded_students(graded, course.ASSIGNMENT) == {"amy", "bob"}
    assert record.changed_behind_our_back(graded, course.ASSIGNMENT) == {}


def _rows(root, student):
    """Every gradebook row grading writes for ``student``: (cell, auto score, needs
    manual grade) per grade, (cell, auto comment) per comment, the timestamp, the late
    penalty."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "lm-logits") as gradebook:
        notebook = gradebook.find_submission_notebook(course.ASSIGNMENT, course.ASSIGNMENT,
                                                      student)
        grades = sorted((g.name, g.auto_score, g.needs_manual_grade) for g in notebook.grades)
        comments = sorted((c.name, c.auto_comment) for c in notebook.comments)
        timestamp = gradebook.find_submission(course.ASSIGNMENT, student).timestamp
        penalty = notebook.late_submission_penalty
    return grades, comments, timestamp, penalty


def test_the_recorder_writes_what_nbgrader_autograde_writes(graded, tmp_path):
    from nbgrader.api import Gradebook

    root = tmp_path / "course"
    shutil.copytree(graded, root, symlinks=True)
    expected = {student: _rows(graded, student) for student in ("amy", "bob")}
    # the submissions as the workers leave them, then gone from the gradebook
    executed = {}
    for student in expected:
        executed[student] = tmp_path / "executed" / student
        shutil.copytree(root / "autograded" / student / course.ASSIGNMENT, executed[student])
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "lm-logits") as gradebook:
        for student in expected:
            gradebook.remove_submission(course.ASSIGNMENT, student)
    with record.Recorder(root, course.ASSIGNMENT) as recorder:
        scores = {student: recorder.record(student, executed[student]) for student in expected}
    for student in expected:
        assert _rows(root, student) == expected[student]
        assert scores[student] == {name: score for name, score, _ in expected[student][0]}
    assert scores["amy"] != scores["bob"]  # a correct and a wrong function
    # nbgrader's own late penalty: none on time; late, the whole score (penalty "zero")
    assert expected["amy"][3] is None
    assert expected["bob"][3] == sum(score for _, score, _ in expected["bob"][0] if score) > 0


def test_a_recording_that_fails_writes_nothing(graded, tmp_path):
    root = tmp_path / "course"
    shutil.copytree(graded, root, symlinks=True)
    before = _rows(root, "amy")
    broken = tmp_path / "executed"
    shutil.copytree(root / "autograded" / "bob" / course.ASSIGNMENT, broken)
    (broken / f"{course.ASSIGNMENT}.ipynb").write_text("{ not json")
    with record.Recorder(root, course.ASSIGNMENT) as recorder, pytest.raises(ValueError):
        recorder.record("amy", broken)
    assert _rows(root, "amy") == before


def test_the_quick_metadata_check_rejects_what_nbgraders_rejects(graded):
    import copy

    from nbgrader.preprocessors import CheckCellMetadata

    from lmlogits_grader.nbgrader_plugins import QuickCheckCellMetadata

    released = nbformat.read(
        graded / "release" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.ipynb", as_version=4)
    cells = released.cells
    grades = [i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade")]
    graded_cell = grades[0]
    written_answer = next(i for i in grades if cells[i].cell_type == "markdown")

    def corrupted(change, cell=graded_cell):
        nb = copy.deepcopy(released)
        change(nb.cells[cell].metadata.nbgrader)
        return nb

    cases = {
        "as released": released,
        "points not a number": corrupted(lambda m: m.update(points="many")),
        "unknown key": corrupted(lambda m: m.update(extra=1)),
        "old schema": corrupted(lambda m: m.update(schema_version=1)),
        "grade id missing": corrupted(lambda m: m.pop("grade_id")),
        # nbgrader's own rule beyond the schema: a graded markdown cell is a solution
        "markdown grade cell": corrupted(lambda m: m.update(solution=False), written_answer),
    }
    outcomes = {}
    for name, nb in cases.items():
        for check in (CheckCellMetadata(), QuickCheckCellMetadata()):
            try:
                check.preprocess(copy.deepcopy(nb), {})
                outcomes.setdefault(name, []).append("valid")
            except Exception as error:  # the same error from both
                outcomes.setdefault(name, []).append(type(error).__name__)
    assert outcomes.pop("as released") == ["valid", "valid"]
    for name, (nbgraders, ours) in outcomes.items():
        assert nbgraders != "valid" and ours == nbgraders, name


def test_a_grade_changed_behind_the_graders_back_is_reported_not_exported(graded, capsys):
    from nbgrader.api import Gradebook

    # what a process with access to the gradebook could do after grading
    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gradebook:
        grade = gradebook.find_grade("test_matches_reference", course.ASSIGNMENT,
                                     course.ASSIGNMENT, "bob")
        assert grade.auto_score == 0
        grade.auto_score = 4
        gradebook.db.commit()
    problems = record.changed_behind_our_back(graded, course.ASSIGNMENT)
    assert set(problems) == {"bob"} and "test_matches_reference" in problems["bob"]
    rows = course.read_csv(course.export_csv(graded, graded / "grades.csv"))
    assert [row["student_id"] for row in rows] == ["amy"]
    assert "NOT EXPORTED bob" in capsys.readouterr().err


def test_grading_refuses_to_run_unsandboxed_unless_told(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    monkeypatch.delenv(sandbox.MODE_ENV, raising=False)
    assert "bubblewrap is not installed" in sandbox.bwrap_problem()
    with pytest.raises(sandbox.SandboxUnavailable, match="pass --no-sandbox"):
        sandbox.require()
    monkeypatch.setenv(sandbox.MODE_ENV, "off")
    sandbox.require()  # told to: no error


def test_an_unsandboxed_run_says_so_first_and_last(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(sandbox.MODE_ENV, "bwrap")
    folder = tmp_path / "download"
    folder.mkdir()
    nbformat.write(submissions.make_submission("correct"), folder / "cy.ipynb")
    root = course.new_course(tmp_path / "course")
    status = grade_folder.main([str(folder), "--course", str(root), "--workers", "1",
                                "--no-sandbox"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert lines[0] == sandbox.UNSANDBOXED_WARNING
    assert lines[-1] == sandbox.UNSANDBOXED_WARNING
    assert float(course.read_csv(root / "grades.csv")[0]["score"]) == 17
