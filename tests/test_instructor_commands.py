"""The instructor's commands: `make demo` and grading a folder of collected notebooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lmlogits_grader import course, grade_folder, submissions

pytestmark = pytest.mark.autograde


def test_demo_says_which_model_then_grades_the_sample_class(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LMLOGITS_MODEL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-hub-cache")  # distilgpt2 cached or not
    result = subprocess.run(
        [sys.executable, "-m", "lmlogits_grader.demo", "--course", str(tmp_path / "demo")],
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


def test_grading_a_folder_of_collected_notebooks(tmp_path, capsys):
    collected = tmp_path / "download"
    collected.mkdir()
    nbformat.write(submissions.make_submission("correct"), collected / "alice.ipynb")
    nbformat.write(submissions.make_submission("off_by_one"), collected / "bob.ipynb")
    (collected / "notes.txt").write_text("not a notebook")
    root = course.new_course(tmp_path / "course")
    assert grade_folder.main([str(collected), "--course", str(root), "--workers", "2"]) == 0
    rows = {r["student_id"]: r for r in course.read_csv(root / "grades.csv")}
    assert set(rows) == {"alice", "bob"}
    assert float(rows["alice"]["score"]) == 17
    assert float(rows["bob"]["score"]) == 13  # off by one: 4 points for the wrong tokens
    assert "Grades CSV:" in capsys.readouterr().out
    assert (root / "feedback" / "bob" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.html").is_file()


def test_grading_a_missing_folder_names_it(tmp_path):
    with pytest.raises(ValueError, match=r"`SUBMISSIONS` must be a folder of notebooks, got"):
        grade_folder.collect(tmp_path / "nowhere", tmp_path)


def test_grading_a_folder_without_notebooks_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no notebooks \(\*\.ipynb\) found in"):
        grade_folder.collect(tmp_path / "empty", tmp_path)
