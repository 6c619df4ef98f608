"""Record: the resume fingerprint covers the grader itself, a grade changed behind the
grader's back is reported and not exported, and grading refuses to run unsandboxed
unless told to."""

from __future__ import annotations

import hashlib
import shutil

import nbformat
import pytest

from lmlogits_grader import course, grade_folder, record, sandbox, submissions


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = course.new_course(tmp_path_factory.mktemp("record") / "course")
    api = course.api_for(root)
    course.generate(api)
    for student, kind in {"amy": "correct", "bob": "off_by_one"}.items():
        course.submit(root, student, submissions.make_submission(kind))
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


def test_graded_students_are_in_the_ledger(graded):
    assert record.recorded_students(graded, course.ASSIGNMENT) == {"amy", "bob"}
    assert record.changed_behind_our_back(graded, course.ASSIGNMENT) == {}


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
