"""The instructor's commands as the README gives them: `make demo`, `make grade`,
`make autograde`, `make grade-export` (after a manual grade), on a course folder of the
test's own (COURSE=), and the CSVs they write, read back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import courses
import nbformat
import pytest

from lmlogits_grader import course, export, grade_folder, submissions

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.autograde


def test_demo_says_which_model_then_grades_the_sample_class(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LMLOGITS_MODEL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-hub-cache")  # distilgpt2 cached or not
    result = subprocess.run(
        # one worker: one zygote to start (two workers are tested in test_parallel.py)
        [sys.executable, "-m", "lmlogits_grader.demo", "--course", str(tmp_path / "demo"),
         "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # offline here (HF_HUB_OFFLINE=1, nothing cached): the built-in model, said first
    assert lines[0].startswith("Model: built-in offline model 'tiny'")
    rows = {line.split()[0]: line.split() for line in lines if line[:1].isalpha()}
    assert rows["ada"][-2:] == ["17/17", "17/23"]  # correct; Q1-Q3 await a person
    assert rows["dara"][-2] == "8/17"  # reads the global phrase
    assert (tmp_path / "demo" / "grades.csv").is_file()
    feedback = tmp_path / "demo" / "feedback" / "ada" / course.ASSIGNMENT
    assert (feedback / f"{course.ASSIGNMENT}.html").is_file()


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_demo_refuses_a_bad_worker_count(tmp_path, capsys, workers):
    from lmlogits_grader import demo

    with pytest.raises(SystemExit) as stopped:
        demo.main(["--course", str(tmp_path / "demo"), "--workers", workers])
    assert stopped.value.code == 2
    assert f"--workers must be a positive integer, got {workers}" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_make_grade_runs_the_folder_grader_with_its_options(tmp_path):
    # what `make grade` runs (make -n: printed, not run); the run itself is tested below
    # in this process, and `make autograde` (same options) end to end
    result = _make("grade", tmp_path / "course", "-n", SUBMISSIONS=str(tmp_path / "in"),
                   WORKERS="3")
    assert result.returncode == 0, result.stderr
    recipe = result.stdout.replace("\\\n", " ")  # the recipe's continued lines, joined
    (line,) = [" ".join(line.split()) for line in recipe.splitlines() if "grade_folder" in line]
    assert line.endswith(f'-m lmlogits_grader.grade_folder "{tmp_path / "in"}" '
                         f'--course "{tmp_path / "course"}" --workers 3')
    refused = _make("grade", tmp_path / "course", "-n")
    assert refused.returncode != 0
    assert "give the folder of notebooks: make grade SUBMISSIONS=" in refused.stderr


def test_grading_a_folder_of_collected_notebooks(tmp_path, capsys):
    collected = tmp_path / "download"
    collected.mkdir()
    nbformat.write(submissions.make_submission("correct"), collected / "alice.ipynb")
    nbformat.write(submissions.make_submission("off_by_one"), collected / "bob.IPYNB")
    (collected / "notes.txt").write_text("not a notebook")
    nbformat.write(submissions.make_submission("correct"), collected / "Bad Name.ipynb")
    root = course.new_course(tmp_path / "course")
    status = grade_folder.main([str(collected), "--course", str(root), "--workers", "1"])
    assert status == 0
    rows = {r["student_id"]: r for r in course.read_csv(root / "grades.csv")}
    assert set(rows) == {"alice", "bob"}
    assert float(rows["alice"]["score"]) == 17
    assert float(rows["bob"]["score"]) == 13  # off by one: 4 points for the wrong tokens
    out = capsys.readouterr().out
    assert "Grades CSV:" in out
    # a file name that is not a student id reaches the final table, with a rename
    table_end = out[out.index("Not graded"):]
    assert "Bad Name.ipynb: not a usable student id" in table_end
    assert "rename it to 'Bad_Name.ipynb'" in table_end
    assert max(len(line) for line in _table_and_legend(out)) <= 100
    assert (root / "feedback" / "bob" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.html").is_file()


def test_grading_a_missing_folder_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"`SUBMISSIONS` must be a folder of notebooks, got"):
        grade_folder.collect(tmp_path / "nowhere", tmp_path)


def test_grading_a_folder_without_notebooks_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no notebooks \(\*\.ipynb\) found in"):
        grade_folder.collect(tmp_path / "empty", tmp_path)


def _table_and_legend(out: str) -> list[str]:
    """The grade table's lines and its legend (what must fit 100 columns)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("student "))
    end = next(i for i, line in enumerate(lines) if "= not in the gradebook." in line)
    return lines[start:end + 1]


def _make(target: str, root: Path, *options: str, **variables: str) -> subprocess.CompletedProcess:
    """``make target COURSE=root ...`` in the repository, as an instructor types it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    arguments = [f"COURSE={root}", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(["make", "--no-print-directory", *options, target, *arguments],
                          cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def autograded(tmp_path_factory):
    """`make autograde COURSE=...` on submissions already in the course's submitted/."""
    root = courses.generated_course(tmp_path_factory.mktemp("make") / "course")
    for student, kind in {"alice": "correct", "bob": "off_by_one"}.items():
        course.submit(root, student, submissions.make_submission(kind))
    result = _make("autograde", root, WORKERS="1")
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result.stdout, result.stderr


def test_make_autograde_grades_the_submitted_folder_in_a_narrow_table(autograded):
    root, out, log = autograded
    rows = {r["student_id"]: r for r in course.read_csv(root / "grades.csv")}
    assert {k: float(v["score"]) for k, v in rows.items()} == {"alice": 17, "bob": 13}
    assert max(len(line) for line in _table_and_legend(out)) <= 100
    header = next(line for line in out.splitlines() if line.startswith("student"))
    assert header.split()[1:6] == ["s1", "s2", "s3", "s4", "s5"]
    assert "glob: check_global_vars" in out  # the legend of the short names
    assert "Loading weights" not in out + log  # no progress bars in the grading log


def test_per_cell_and_canvas_csvs_read_back(autograded):
    root, _, _ = autograded
    cells = {r["student_id"]: r for r in course.read_csv(root / "grades-per-cell.csv")}
    assert cells["alice"]["test_matches_reference"] == "4"
    assert cells["bob"]["test_matches_reference"] == "0"
    assert cells["bob"]["test_works_without_notebook_globals"] == "3"
    assert cells["alice"]["q1"] == ""  # nobody has graded it yet
    assert cells["alice"]["awaiting_manual_grading"] == "q1 q2 q3"
    assert (cells["alice"]["automatic"], cells["alice"]["max_score"]) == ("17", "23")
    canvas = course.read_csv(root / "grades-canvas.csv")
    assert list(canvas[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert canvas[0]["Student"] == "Points Possible" and canvas[0][course.ASSIGNMENT] == "23"
    by_login = {row["SIS Login ID"]: row for row in canvas[1:]}
    assert {k: v[course.ASSIGNMENT] for k, v in by_login.items()} == {"alice": "17", "bob": "13"}


def test_a_canvas_roster_maps_ids_and_reports_who_is_missing(autograded, tmp_path, capsys):
    root, _, _ = autograded
    roster = tmp_path / "canvas-export.csv"
    roster.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (11)\n"
        "Points Possible,,,,,10\n"
        '"Lovelace, Ada",101,S001,alice,Section A,9\n')
    path = export.canvas_csv(root, tmp_path / "canvas.csv", course.ASSIGNMENT,
                             title="LM logits (42)", roster=roster)
    rows = course.read_csv(path)
    assert rows[1] == {"Student": "Lovelace, Ada", "ID": "101", "SIS User ID": "S001",
                       "SIS Login ID": "alice", "Section": "Section A",
                       "LM logits (42)": "17"}
    assert len(rows) == 2  # bob is not in the roster: left out, and said so
    assert "NOT IN THE CANVAS ROSTER bob" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`roster` must be a Canvas gradebook export"):
        export.canvas_csv(root, tmp_path / "x.csv", course.ASSIGNMENT, roster=root / "grades.csv")


def test_make_grade_export_after_a_manual_grade(autograded):
    from nbgrader.api import Gradebook

    root, _, _ = autograded
    feedback = root / "feedback" / "alice" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.html"
    before = feedback.stat().st_mtime_ns
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "lm-logits") as gradebook:
        grade = gradebook.find_grade("q1", course.ASSIGNMENT, course.ASSIGNMENT, "alice")
        grade.manual_score, grade.needs_manual_grade = 2, False
        gradebook.db.commit()
    result = _make("grade-export", root)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["student_id"]: r for r in course.read_csv(root / "grades.csv")}
    assert float(rows["alice"]["score"]) == 19
    cells = {r["student_id"]: r for r in course.read_csv(root / "grades-per-cell.csv")}
    assert cells["alice"]["q1"] == "2" and cells["alice"]["awaiting_manual_grading"] == "q2 q3"
    canvas = {r["SIS Login ID"]: r for r in course.read_csv(root / "grades-canvas.csv")}
    assert canvas["alice"][course.ASSIGNMENT] == "19"
    assert feedback.stat().st_mtime_ns > before  # the feedback was made again
    html = feedback.read_text()
    assert re.search(r'<a name="q1"></a>.*?Score: 2\.0 / 2\.0', html, re.S)
    assert "(Score: 19 of the 19 points graded so far; 4 points awaiting grading)" in html


def test_export_without_a_gradebook_says_so(tmp_path, capsys):
    root = course.new_course(tmp_path / "fresh")
    assert grade_folder.main(["--export-only", "--course", str(root)]) == 2
    assert "no gradebook in" in capsys.readouterr().err
    assert not (root / "gradebook.db").exists()  # and did not make an empty one
    with pytest.raises(SystemExit):
        grade_folder.main(["--export-only", "--course", str(tmp_path / "not-a-course")])
    assert "is not a course folder" in capsys.readouterr().err
