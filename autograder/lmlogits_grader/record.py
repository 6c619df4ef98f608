"""Record: write judged notebooks into nbgrader's gradebook, and keep a ledger of it.

- :func:`record_api` / :func:`record`: the main process lets nbgrader's own
  ``SaveAutoGrades`` write a notebook that a worker already executed and judged
  (the course's autograde steps minus ``ClearOutput``, ``Execute`` and the ``Judge``).
- the **journal** (``autograded/.parallel-journal``): one line per recorded student
  with the *fingerprint* of everything the grade depends on (the submitted files, the
  assignment's source and config, the grader's own code, the student package and the
  reference model) and the automatic scores the grader recorded. A rerun skips a
  student whose fingerprint is unchanged and who is in the gradebook; anything else is
  graded again.
- :func:`changed_behind_our_back`: at export, the gradebook's automatic scores are
  compared with the journal; a student whose scores changed after the grader recorded
  them is reported and left out of the CSV (manual scores are the instructor's and
  are not compared).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

JOURNAL = ".parallel-journal"
EXECUTED = ".parallel-executed"  # staging: executed notebooks waiting to be recorded


def journal_path(root: Path) -> Path:
    return root / "autograded" / JOURNAL


def _digest_folder(digest, folder: Path, relative_to: Path) -> None:
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(relative_to)).encode() + b"\0" + path.read_bytes())


@functools.lru_cache(maxsize=4)
def _grader_digest(model_folder: str) -> str:
    """The grader's code, the student package and the model's files (once per process)."""
    import lmlogits
    import lmlogits_grader

    digest = hashlib.sha256()
    for package in (lmlogits_grader, lmlogits):
        folder = Path(package.__file__).parent
        _digest_folder(digest, folder, folder.parent)
    _digest_folder(digest, Path(model_folder), Path(model_folder))
    return digest.hexdigest()


def grader_digest() -> str:
    import lmlogits

    return _grader_digest(str(Path(lmlogits.resolve_model()).resolve()))


def submission_digest(root: Path, student: str, assignment: str) -> str:
    """A fingerprint of what a grade depends on: the student's submitted files, the
    assignment's source and config, and the grader itself (code and model)."""
    digest = hashlib.sha256()
    for folder in (root / "submitted" / student / assignment, root / "source" / assignment):
        _digest_folder(digest, folder, root)
    digest.update((root / "nbgrader_config.py").read_bytes())
    digest.update(grader_digest().encode())
    return digest.hexdigest()[:16]


def _gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'gradebook.db'}")


def submitted_grades(root: Path, assignment: str):
    """``(student id, nbgrader Grade rows)`` for every graded submission in the gradebook."""
    from nbgrader.api import MissingEntry

    if not (root / "gradebook.db").exists():
        return
    with _gradebook(root) as gradebook:
        for student in gradebook.students:
            try:
                notebook = gradebook.find_submission_notebook(assignment, assignment, student.id)
            except MissingEntry:
                continue
            yield student.id, list(notebook.grades)


def auto_scores(root: Path, assignment: str) -> dict[str, dict[str, float | None]]:
    """Every student's automatic score per graded cell, as the gradebook holds it now."""
    return {
        student: {g.name: None if g.auto_score is None else float(g.auto_score) for g in grades}
        for student, grades in submitted_grades(root, assignment)
    }


def journal(root: Path) -> dict[str, tuple[str, dict]]:
    """``{student: (fingerprint, recorded automatic scores)}``, the latest line of each."""
    path = journal_path(root)
    entries: dict[str, tuple[str, dict]] = {}
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) < 2:
            continue
        try:
            scores = json.loads(parts[2]) if len(parts) == 3 else {}
        except ValueError:
            scores = {}
        entries[parts[0]] = (parts[1], scores if isinstance(scores, dict) else {})
    return entries


def recorded_students(root: Path, assignment: str) -> set[str]:
    """Students whose current submission is graded: in the journal with the same
    fingerprint, and present in the gradebook."""
    entries = journal(root)
    if not entries:
        return set()
    in_gradebook = auto_scores(root, assignment)
    return {
        student for student, (digest, _) in entries.items()
        if student in in_gradebook and digest == submission_digest(root, student, assignment)
    }


def mark_recorded(root: Path, student: str, assignment: str) -> None:
    """Append the student's fingerprint and recorded automatic scores to the journal."""
    scores = auto_scores(root, assignment).get(student, {})
    path = journal_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"{student} {submission_digest(root, student, assignment)} "
    line += json.dumps(scores, sort_keys=True, separators=(",", ":"))
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def changed_behind_our_back(root: Path, assignment: str) -> dict[str, str]:
    """Students whose automatic scores in the gradebook differ from what was recorded."""
    now = auto_scores(root, assignment)
    changed = {}
    for student, (_, recorded) in journal(root).items():
        if not recorded or student not in now:
            continue
        differing = sorted(
            cell for cell in set(recorded) | set(now[student])
            if recorded.get(cell) != now[student].get(cell)
        )
        if differing:
            changed[student] = (
                "automatic scores changed in the gradebook after grading: " + ", ".join(differing)
            )
    return changed


def record_api(root: Path):
    """An API whose autograde records an executed notebook without running it again:
    the course's own autograde steps (nbgrader_config.py), minus ClearOutput, Execute and
    the Judge: the worker already executed and judged it."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.preprocessors import ClearOutput, Execute
    from traitlets.config.loader import PyFileConfigLoader

    from lmlogits_grader.judge import Judge

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.submitted_directory = EXECUTED
    for steps in ("sanitize_preprocessors", "autograde_preprocessors"):
        configured = config.Autograde[steps]
        config.Autograde[steps] = [
            step for step in configured if not issubclass(step, (ClearOutput, Execute, Judge))
        ]
    return NbGraderAPI(config=config)


def record(api, root: Path, student: str, executed: Path, assignment: str) -> bool:
    """Main process: write one executed submission's grades into the main gradebook."""
    staging = root / EXECUTED / student / assignment
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(executed, staging, symlinks=True)
    timestamp = root / "submitted" / student / assignment / "timestamp.txt"
    if timestamp.exists():
        shutil.copy(timestamp, staging / "timestamp.txt")
    result = api.autograde(assignment, student, force=True, create=True)
    shutil.rmtree(staging, ignore_errors=True)
    return bool(result.get("success"))
