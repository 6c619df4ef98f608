"""Collect: file names checked before anything is copied, files repaired or marked broken,
edited grading metadata restored from the released notebook."""

from __future__ import annotations

import json

import nbformat
import pytest

from lmlogits_grader import collect, course, submissions


@pytest.fixture(scope="module")
def released_course(tmp_path_factory):
    root = course.new_course(tmp_path_factory.mktemp("collect") / "course")
    course.generate(course.api_for(root))
    return root


def _correct_json() -> str:
    return nbformat.writes(submissions.make_submission("correct"))


@pytest.mark.parametrize(
    ("name", "student"),
    [("alice.ipynb", "alice"), ("UPPER.IPYNB", "UPPER"), ("a.b-c_d.Ipynb", "a.b-c_d")],
)
def test_usable_names_give_the_student_id(name, student):
    assert collect.student_id(name) == (student, "")


@pytest.mark.parametrize(
    "name", ["..ipynb", "...ipynb", ".hidden.ipynb", "Bad Name.ipynb", "a/b.ipynb",
             "..\\x.ipynb", ".ipynb", "notes.txt", "x" * 101 + ".ipynb"],
)
def test_unusable_names_are_refused_with_a_reason(name):
    student, reason = collect.student_id(name)
    assert student is None and reason


def _collect(tmp_path, root, files: dict[str, bytes]):
    download = tmp_path / "download"
    download.mkdir()
    for name, data in files.items():
        (download / name).write_bytes(data)
    return collect.collect(download, root, course.ASSIGNMENT)


def _submitted(root, student):
    path = root / "submitted" / student / course.ASSIGNMENT / f"{course.ASSIGNMENT}.ipynb"
    return nbformat.read(path, as_version=4)


def test_a_class_download_with_broken_and_odd_files(tmp_path, released_course):
    root = released_course
    good = _correct_json()
    stray_byte = good.replace("Batch of 1", "Batch \u00e9 of 1").encode().replace(
        "\u00e9".encode(), b"\xff")
    surrogate = good.replace("Batch of 1", "Batch \\udcff of 1").encode()
    result = _collect(tmp_path, root, {
        "good.ipynb": good.encode(),
        "UPPER.IPYNB": good.encode(),
        "..ipynb": good.encode(),
        "stray.ipynb": stray_byte,
        "surrogate.ipynb": surrogate,
        "empty.ipynb": b"",
        "invalid.ipynb": b'{"cells": [',
        "notebookless.ipynb": b'{"hello": "world"}',
        "latin1.ipynb": "no JSON at all: \u00e9t\u00e9".encode("latin-1"),
    })
    assert sorted(result.students) == sorted([
        "good", "UPPER", "stray", "surrogate", "empty", "invalid", "notebookless", "latin1"])
    assert set(result.skipped) == {"..ipynb"}
    assert result.broken == {
        "empty": "the file is empty",
        "invalid": "not a notebook: the file is not valid JSON (line 1)",
        "notebookless": "not a notebook: no list of cells",
        "latin1": "not a notebook: the file is not valid JSON (line 1)",
    }
    assert result.notes["stray"] == "bytes that are not UTF-8 replaced"
    assert result.notes["surrogate"] == "characters that are not valid Unicode replaced"
    repaired = _submitted(root, "stray")
    assert any("Batch \ufffd of 1" in cell.source for cell in repaired.cells)
    broken = _submitted(root, "empty")
    assert broken.metadata[collect.BROKEN_KEY] == "the file is empty"
    assert "could not be graded" in broken.cells[0].source
    assert collect.load_notes(root)["empty"] == "the file is empty"


def test_edited_grading_metadata_is_restored(tmp_path, released_course):
    nb = submissions.make_submission("correct")
    submissions._cell(nb, "test_step1").metadata.nbgrader["grade_id"] = "renamed"
    submissions._cell(nb, "test_step2").metadata.nbgrader["grade"] = False
    submissions._cell(nb, "q1").metadata.nbgrader["points"] = 50
    nb.metadata["lmlogits_probes"] = {"answers": "forged"}
    result = _collect(tmp_path, released_course, {"edited.ipynb": nbformat.writes(nb).encode()})
    assert result.notes["edited"] == "grading metadata of 3 cells restored from the assignment"
    restored = _submitted(released_course, "edited")
    grade_ids = [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in restored.cells]
    assert "test_step1" in grade_ids and "renamed" not in grade_ids
    assert submissions._cell(restored, "test_step2").metadata.nbgrader["grade"] is True
    assert submissions._cell(restored, "q1").metadata.nbgrader["points"] == 2
    assert "lmlogits_probes" not in restored.metadata


def test_two_files_for_one_student_keep_the_first(tmp_path, released_course):
    good = _correct_json().encode()
    result = _collect(tmp_path, released_course, {"Ann.ipynb": good, "ann.IPYNB": good})
    assert result.students == ["Ann"]
    assert "a second file" in result.skipped["ann.IPYNB"]


def test_notebooks_already_submitted_are_prepared_in_place(tmp_path, released_course):
    folder = released_course / "submitted" / "inplace" / course.ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / f"{course.ASSIGNMENT}.ipynb").write_bytes(b"\x00\x01 not json")
    result = collect.prepare_submitted(released_course, ["inplace"], course.ASSIGNMENT)
    assert result.broken["inplace"].startswith("not a notebook")
    assert (folder / f"{course.ASSIGNMENT}.ipynb.original").read_bytes() == b"\x00\x01 not json"
    again = collect.prepare_submitted(released_course, ["inplace"], course.ASSIGNMENT)
    assert again.broken == result.broken  # judged from the original, not the placeholder
    assert json.loads((folder / f"{course.ASSIGNMENT}.ipynb").read_text())["cells"]
