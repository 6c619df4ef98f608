"""Parallel grading gives serial nbgrader's grades, resumes after a kill, survives loops."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lmlogits_grader import course, parallel, submissions

pytestmark = pytest.mark.autograde

CLASS = {
    "amy": "correct",
    "ben": "global_phrase",
    "cat": "kills_kernel",
    "dan": "duplicated_cells",
    "eve": "deleted_test_cell",
    "fay": "returns_logits",
}


def _course_with(tmp_path_factory, name: str, students: dict[str, str]) -> Path:
    root = course.new_course(tmp_path_factory.mktemp(name))
    course.generate(course.api_for(root))
    for student, kind in students.items():
        course.submit(root, student, submissions.make_submission(kind))
    return root


def _csv_without_timestamps(root: Path) -> list[dict[str, str]]:
    rows = course.read_csv(course.export_csv(root, root / "grades.csv"))
    return sorted(({k: v for k, v in row.items() if k != "timestamp"} for row in rows),
                  key=lambda row: row["student_id"])


@pytest.fixture(scope="module")
def serial_grades(tmp_path_factory):
    root = _course_with(tmp_path_factory, "serial", CLASS)
    assert course.autograde(course.api_for(root), CLASS, progress=False) == dict.fromkeys(
        CLASS, True
    )
    return course.cell_grades(root), _csv_without_timestamps(root)


@pytest.mark.parametrize("warm", [True, False], ids=["warm-kernels", "fresh-kernels"])
def test_parallel_grades_equal_serial_grades(tmp_path_factory, serial_grades, warm):
    root = _course_with(tmp_path_factory, "parallel", CLASS)
    outcome = parallel.grade_in_parallel(
        root, list(CLASS), workers=2, progress=False, warm=warm
    )
    assert outcome == dict.fromkeys(CLASS, True)
    assert course.cell_grades(root) == serial_grades[0]
    assert _csv_without_timestamps(root) == serial_grades[1]
    # the rubric still holds, so the comparison is not between two wrong answers
    assert sum(g.score for g in course.cell_grades(root)["amy"].values()) == 17


def test_killed_run_resumes_to_the_same_grades(tmp_path_factory, serial_grades):
    root = _course_with(tmp_path_factory, "killed", CLASS)
    command = [sys.executable, "-m", "lmlogits_grader.parallel", "--course", str(root),
               "--workers", "2"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    journal = root / "autograded" / parallel.JOURNAL
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run: main, workers, kernels
    process.wait()
    recorded_before = parallel.recorded_students(root)
    assert 2 <= len(recorded_before) < len(CLASS)

    outcome = parallel.grade_in_parallel(root, list(CLASS), workers=2, progress=False)
    assert set(outcome) == set(CLASS) - recorded_before  # nothing regraded
    assert all(outcome.values())
    assert course.cell_grades(root) == serial_grades[0]
    assert _csv_without_timestamps(root) == serial_grades[1]


def test_a_changed_submission_is_graded_again(tmp_path_factory):
    students = {"amy": "correct", "ben": "correct"}
    root = _course_with(tmp_path_factory, "resubmit", students)
    assert set(parallel.grade_in_parallel(root, list(students), 2, progress=False)) == {
        "amy", "ben"}
    course.submit(root, "ben", submissions.make_submission("ignores_k"))  # a new version
    outcome = parallel.grade_in_parallel(root, list(students), 2, progress=False)
    assert outcome == {"ben": True}
    assert course.cell_grades(root)["ben"]["test_returns_k_rows"].score == 0


@pytest.mark.parametrize("warm", [True, False], ids=["warm-kernels", "fresh-kernels"])
def test_an_endless_loop_does_not_hold_up_the_class(tmp_path_factory, warm):
    students = {"loop": "infinite_loop", "ann": "correct", "bob": "correct", "col": "correct"}
    root = _course_with(tmp_path_factory, "loop", students)
    outcome = parallel.grade_in_parallel(root, list(students), workers=2, progress=False,
                                         warm=warm)
    assert outcome == dict.fromkeys(students, True)
    grades = course.cell_grades(root)
    for student in ("ann", "bob", "col"):
        auto = sum(g.score for name, g in grades[student].items() if name.startswith("test_"))
        assert auto == 17
    assert grades["loop"]["test_matches_reference"].score == 0
    # the timeout's interrupt reached the sandboxed kernel, which went on to the next cell
    executed = nbformat.read(root / "autograded" / "loop" / course.ASSIGNMENT
                             / f"{course.ASSIGNMENT}.ipynb", as_version=4)
    plot = submissions._cell(executed, "plot")
    assert [o.get("ename") for o in plot.outputs if o.output_type == "error"][0] == (
        "KeyboardInterrupt")


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_bad_worker_counts_are_rejected(tmp_path, workers):
    with pytest.raises(ValueError, match=r"`workers` must be a positive integer, got"):
        parallel.grade_in_parallel(tmp_path, ["x"], workers=workers)


def test_csv_helper_reads_what_nbgrader_writes(tmp_path):
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["student_id", "score"], ["amy", "17.0"]])
    assert course.read_csv(path) == [{"student_id": "amy", "score": "17.0"}]
