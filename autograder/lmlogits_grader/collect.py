"""Collect: files in, student ids and gradable notebooks out; a broken file gets a reason.

``collect(folder, root)`` reads every ``<student_id>.ipynb`` of a folder (an LMS
download, renamed) and writes each student's notebook to
``root/submitted/<student>/<assignment>/``, after:

- **checking the file name before anything is copied**: the extension in any case
  (``.IPYNB``), a student id of letters, digits, ``_``, ``.`` and ``-`` that is not ``.``
  or ``..`` and does not start with a dot; other names are listed as skipped, with the
  reason;
- **repairing what can be repaired**: bytes that are not UTF-8 and lone surrogate
  escapes are replaced (U+FFFD / "?"), an old notebook format is upgraded, and the
  nbgrader metadata of every cell the assignment released (matched by cell id) is
  restored from the released notebook, so a student who edited a cell's "solution",
  "grade" or "grade_id" is graded as the assignment intends;
- **keeping a broken file deliberate**: a file that is empty or not a notebook is
  replaced by the released notebook marked broken; the grader then runs nothing and
  scores every cell 0, and the reason goes to the grade table, the CSV and the feedback.

Notes per student (repairs and reasons) are kept in ``root/collect-notes.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

BROKEN_KEY = "lmlogits_broken"  # notebook metadata: why this submission cannot be graded
NOTES_FILE = "collect-notes.json"
SKIPPED_FILE = "collect-skipped.json"  # files of the last collection not graded
_STUDENT_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
MAX_BYTES = 50 * 1024 * 1024


@dataclass
class Collected:
    """What ``collect`` did: graded students, their notes, and files it skipped."""

    students: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # student -> repairs or reason
    broken: dict[str, str] = field(default_factory=dict)  # student -> why it cannot be graded
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why


def suggested_name(file_name: str) -> str | None:
    """A file name that would be a usable student id (``Bad Name.ipynb`` ->
    ``Bad_Name.ipynb``), or None when nothing usable is left."""
    stem = file_name[: -len(".ipynb")] if file_name.lower().endswith(".ipynb") else file_name
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")[:100]
    return f"{stem}.ipynb" if stem and _STUDENT_ID.match(stem) else None


def student_id(file_name: str) -> tuple[str | None, str]:
    """The student id a file name gives, or None and why not."""
    if not file_name.lower().endswith(".ipynb"):
        return None, "not a notebook file (*.ipynb)"
    stem = file_name[: -len(".ipynb")]
    if stem in ("", ".", "..") or stem.startswith(".") or not _STUDENT_ID.match(stem):
        return None, (
            "not a usable student id (letters, digits, '_', '.', '-'; not starting with '.')"
        )
    return stem, ""


def _replace_bad_text(value):
    """Every string of a parsed notebook as valid UTF-8 (lone surrogates become '?')."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_replace_bad_text(v) for v in value]
    if isinstance(value, dict):
        return {_replace_bad_text(k): _replace_bad_text(v) for k, v in value.items()}
    return value


def read_notebook(path: Path) -> tuple[NotebookNode | None, list[str]]:
    """Parse a submitted file; ``(notebook, repairs)`` or ``(None, [reason])``."""
    size = path.stat().st_size
    if size == 0:
        return None, ["the file is empty"]
    if size > MAX_BYTES:
        return None, [f"the file is {size:,} bytes, more than a notebook can be"]
    raw = path.read_bytes()
    repairs = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        repairs.append("bytes that are not UTF-8 replaced")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        line = getattr(error, "lineno", None)
        return None, ["not a notebook: the file is not valid JSON"
                      + (f" (line {line})" if line else "")]
    cleaned = _replace_bad_text(data)
    if cleaned != data:
        repairs.append("characters that are not valid Unicode replaced")
    if not isinstance(cleaned, dict) or not isinstance(cleaned.get("cells"), list):
        return None, ["not a notebook: no list of cells"]
    try:
        nb = nbformat.reads(json.dumps(cleaned), as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # nbformat raises several kinds for malformed notebooks
        return None, [f"not a notebook: {type(error).__name__}"]
    return nb, repairs


def restore_metadata(nb: NotebookNode, released: NotebookNode) -> int:
    """Give every released cell (by id) its released nbgrader metadata; count the fixes."""
    by_id = {cell.get("id"): cell for cell in released.cells if cell.get("id")}
    fixed = 0
    for cell in nb.cells:
        original = by_id.get(cell.get("id"))
        if original is None or cell.cell_type != original.cell_type:
            continue
        wanted = original.metadata.get("nbgrader")
        if wanted is not None and cell.metadata.get("nbgrader") != wanted:
            cell.metadata["nbgrader"] = json.loads(json.dumps(wanted))
            fixed += 1
    nb.metadata = NotebookNode({
        key: nb.metadata[key] for key in _KEPT_NOTEBOOK_METADATA if key in nb.metadata
    })
    return fixed


def broken_notebook(released: NotebookNode, reason: str) -> NotebookNode:
    """The released notebook, marked so that the grader runs nothing and scores 0."""
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    note = nbformat.v4.new_markdown_cell(
        f"**This submission could not be graded:** {reason}. Every test scores 0; "
        "ask your instructor to look at the file you handed in."
    )
    nb.cells.insert(0, note)
    nb.metadata[BROKEN_KEY] = reason
    return nb


def collect(folder: Path, root: Path, assignment: str) -> Collected:
    """Copy ``folder/<student>.ipynb`` files into ``root/submitted`` (see the module doc)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`SUBMISSIONS` must be a folder of notebooks, got {str(folder)!r}")
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(".ipynb"))
    if not files:
        raise ValueError(f"no notebooks (*.ipynb) found in {str(folder)!r}")
    released = _released(root, assignment)
    result = Collected()
    seen: dict[str, str] = {}
    for path in files:
        student, why = student_id(path.name)
        if student is None:
            rename = suggested_name(path.name)
            result.skipped[path.name] = why + (f"; rename it to {rename!r}" if rename else "")
            continue
        if student.lower() in seen:
            result.skipped[path.name] = f"a second file for student {seen[student.lower()]!r}"
            continue
        if not path.is_file() or path.is_symlink():
            result.skipped[path.name] = "not a regular file"
            continue
        seen[student.lower()] = student
        nb, notes = prepare(path, released)
        if BROKEN_KEY in nb.metadata:
            result.broken[student] = nb.metadata[BROKEN_KEY]
        target = root / "submitted" / student / assignment
        if target.is_symlink() or target.parent.is_symlink():
            raise ValueError(f"refusing to write through a symbolic link: {target}")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target / f"{assignment}.ipynb")
        result.students.append(student)
        if notes:
            result.notes[student] = "; ".join(notes)
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    save_notes(root, result.students, result.notes)
    (root / SKIPPED_FILE).write_text(json.dumps(result.skipped, indent=1, sort_keys=True))
    return result


def _released(root: Path, assignment: str) -> NotebookNode:
    return nbformat.read(root / "release" / assignment / f"{assignment}.ipynb", as_version=4)


def prepare(path: Path, released: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """A gradable notebook from a submitted file, and notes on what was done to it."""
    nb, notes = read_notebook(path)
    if nb is None:
        return broken_notebook(released, notes[0]), notes
    fixed = restore_metadata(nb, released)
    if fixed:
        notes.append(f"grading metadata of {fixed} cells restored from the assignment")
    return nb, notes


def prepare_submitted(root: Path, students: list[str], assignment: str) -> Collected:
    """``prepare`` the notebooks already in ``root/submitted`` (``make autograde``).

    A notebook that needs a repair is rewritten in place; the file as handed in is
    kept beside it as ``<assignment>.ipynb.original``.
    """
    released = _released(root, assignment)
    result = Collected()
    for student in students:
        path = root / "submitted" / student / assignment / f"{assignment}.ipynb"
        original = path.with_name(path.name + ".original")
        source = original if original.is_file() else path
        if not source.is_file():
            result.skipped[student] = "no notebook in the submitted folder"
            continue
        nb, notes = prepare(source, released)
        if nbformat.writes(nb) != source.read_bytes().decode("utf-8", errors="replace"):
            if source == path:
                shutil.copy(path, original)
            nbformat.write(nb, path)
        if BROKEN_KEY in nb.metadata:
            result.broken[student] = nb.metadata[BROKEN_KEY]
        if notes:
            result.notes[student] = "; ".join(notes)
        result.students.append(student)
    save_notes(root, result.students, result.notes)
    return result


def save_notes(root: Path, students: list[str], notes: dict[str, str]) -> None:
    """Record the notes of ``students`` (a student collected again loses old notes)."""
    path = root / NOTES_FILE
    old = load_notes(root)
    for student in students:
        old.pop(student, None)
    old.update(notes)
    path.write_text(json.dumps(old, indent=1, sort_keys=True))


def load_skipped(root: Path) -> dict[str, str]:
    """The files the last collection did not grade: ``{file name: why}``."""
    try:
        skipped = json.loads((root / SKIPPED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}


def load_notes(root: Path) -> dict[str, str]:
    path = root / NOTES_FILE
    try:
        notes = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in notes.items()} if isinstance(notes, dict) else {}
