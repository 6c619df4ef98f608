"""Record: write judged notebooks into nbgrader's gradebook, and keep a ledger of it.

- :class:`Recorder`: the main process lets nbgrader's own ``SaveAutoGrades`` and
  ``AssignLatePenalties`` write a notebook that a worker already executed and judged,
  in one transaction per student through one open gradebook.
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

from nbconvert.preprocessors import Preprocessor
from nbgrader.preprocessors import AssignLatePenalties, SaveAutoGrades

JOURNAL = ".parallel-journal"


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


def open_gradebook(root: Path):
    """The course's nbgrader ``Gradebook`` (``CourseDirectory.db_url``: SQLite by
    default, or a database server such as PostgreSQL); use it as a context manager."""
    from nbgrader.api import Gradebook

    coursedir = course_directory(root)
    return Gradebook(coursedir.db_url, coursedir.course_id)


def sqlite_path(db_url: str) -> Path | None:
    """The file behind a SQLite gradebook URL; None for a database server's URL."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    return Path(url.database) if url.database else None


def has_gradebook(root: Path) -> bool:
    """Whether the course has a gradebook yet: its SQLite file exists, or it is kept by
    a database server (which nbgrader fills in on first use)."""
    database = sqlite_path(course_directory(root).db_url)
    return database is None or database.is_file()


def _scores(gradebook, student: str, assignment: str) -> dict[str, float | None]:
    """One student's automatic score per graded cell in an open gradebook."""
    from nbgrader.api import MissingEntry

    try:
        notebook = gradebook.find_submission_notebook(assignment, assignment, student)
    except MissingEntry:
        return {}
    return {g.name: None if g.auto_score is None else float(g.auto_score)
            for g in notebook.grades}


def submitted_grades(root: Path, assignment: str):
    """``(student id, nbgrader Grade rows)`` for every graded submission in the gradebook."""
    from nbgrader.api import MissingEntry

    if not has_gradebook(root):
        return
    with open_gradebook(root) as gradebook:
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


def mark_recorded(root: Path, student: str, assignment: str,
                  scores: dict[str, float | None] | None = None) -> None:
    """Append the student's fingerprint and recorded automatic scores (read from the
    gradebook unless given) to the journal."""
    if scores is None:
        with open_gradebook(root) as gradebook:
            scores = _scores(gradebook, student, assignment)
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


def course_directory(root: Path):
    """The course's nbgrader ``CourseDirectory`` (its ``db_url``, timestamps, ...), read
    from ``root/nbgrader_config.py``."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return CourseDirectory(config=config)


class _DeferredCommits:
    """Stands in for a gradebook's session: nbgrader's calls to ``commit`` wait for the
    end of the student's record, so that it is one transaction (one disk sync, not one
    per cell); the session's autoflush still lets every query see what was written
    before it. The Recorder commits once the student's rows are written."""

    def __init__(self, session) -> None:
        self._session = session

    def commit(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._session, name)


class Recorder:
    """Main process: writes notebooks that workers executed and judged into the
    course's gradebook (``CourseDirectory.db_url``), through nbgrader's own
    ``SaveAutoGrades`` and ``AssignLatePenalties``, with the student and submission
    rows (and the submission's timestamp) as ``nbgrader autograde`` writes them.

    One gradebook connection for the whole run and one transaction per student, so a
    record costs a few milliseconds instead of a whole ``nbgrader autograde`` (see
    ``make bench``). Use as a context manager.
    """

    def __init__(self, root: Path, assignment: str) -> None:
        from nbgrader.api import Gradebook

        self.root = Path(root)
        self.assignment = assignment
        self.coursedir = course_directory(self.root)
        self.config = self.coursedir.config
        self.gradebook = Gradebook(self.coursedir.db_url, self.coursedir.course_id)
        self._session = self.gradebook.db
        self._names: list[str] | None = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.gradebook.db = self._session
        self.gradebook.close()

    def record(self, student: str, executed: Path | dict[str, bytes]) -> dict[str, float | None]:
        """Record one student's executed folder (a worker's ``autograded/<student>/
        <assignment>``, as a folder or as its files: ``{relative path: bytes}``); returns
        the automatic scores now in the gradebook. On any error nothing of this student
        is written, and the error is raised."""
        dest = self.root / "autograded" / student / self.assignment
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(executed, dict):
            write_files(executed, dest)
        else:
            shutil.copytree(executed, dest, symlinks=True)
        return self._write_grades(student, dest)

    def _resources(self, student: str, notebook: str) -> dict:
        return {"nbgrader": {
            "notebook": notebook, "assignment": self.assignment, "student": student,
            "db_url": self.coursedir.db_url,
        }}

    def _notebook_names(self) -> list[str]:
        """The assignment's notebooks (read once per run: grading does not change them)."""
        if self._names is None:
            assignment = self.gradebook.find_assignment(self.assignment)
            self._names = [notebook.name for notebook in assignment.notebooks]
        return self._names

    def _write_grades(self, student: str, dest: Path) -> dict[str, float | None]:
        """Write the student's rows in one transaction; return their automatic scores."""
        import nbformat

        gradebook = self.gradebook
        gradebook.db = _DeferredCommits(self._session)
        try:
            gradebook.update_or_create_student(student)
            submitted = self.root / "submitted" / student / self.assignment
            timestamp = self.coursedir.get_existing_timestamp(str(submitted))
            if timestamp:
                gradebook.update_or_create_submission(
                    self.assignment, student, timestamp=timestamp)
            else:
                gradebook.update_or_create_submission(self.assignment, student)
            for name in self._notebook_names():
                path = dest / f"{name}.ipynb"
                if not path.exists():  # as nbgrader does for a notebook not submitted
                    submission = gradebook.find_submission_notebook(
                        name, self.assignment, student)
                    for grade in submission.grades:
                        grade.auto_score = 0
                        grade.needs_manual_grade = False
                    continue
                # written by the worker's nbgrader, which validated it: read it as it is
                nb = nbformat.v4.reads(path.read_text(encoding="utf-8"))
                resources = self._resources(student, name)
                _SaveAutoGradesInto(gradebook, config=self.config).preprocess(nb, resources)
                _AssignLatePenaltiesInto(gradebook, config=self.config).preprocess(nb, resources)
            scores = self.scores(student)  # from the rows in hand, before they expire
            self._session.commit()
        except BaseException:
            self._session.rollback()
            raise
        finally:
            gradebook.db = self._session
        return scores

    def scores(self, student: str) -> dict[str, float | None]:
        """The student's automatic score per graded cell, as the gradebook holds it."""
        return _scores(self.gradebook, student, self.assignment)


def write_files(files: dict[str, bytes], folder: Path) -> None:
    """Write ``{relative path: bytes}`` into the (new) ``folder``; no path may leave it."""
    folder.mkdir(parents=True)
    top = folder.resolve()
    for name, data in files.items():
        path = (folder / name).resolve()
        if not path.is_relative_to(top) or path == top:
            raise ValueError(f"a file's path leaves its folder: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class _OneSubmittedNotebook:
    """An open gradebook, as nbgrader's ``SaveAutoGrades`` uses it for one submitted
    notebook: each cell's grade and comment comes from that notebook's rows, read once,
    instead of one query per cell. The same row objects, so nbgrader's own scoring
    (``_add_score``, ``_add_comment``) writes exactly what it writes otherwise."""

    def __init__(self, gradebook, submitted_notebook) -> None:
        self.db = gradebook.db
        self._grades = {grade.name: grade for grade in submitted_notebook.grades}
        self._comments = {comment.name: comment for comment in submitted_notebook.comments}

    def find_grade(self, grade_id: str, *where):
        return self._find(self._grades, grade_id, "grade", where)

    def find_comment(self, grade_id: str, *where):
        return self._find(self._comments, grade_id, "comment", where)

    @staticmethod
    def _find(rows: dict, grade_id: str, kind: str, where: tuple):
        from nbgrader.api import MissingEntry

        try:
            return rows[grade_id]
        except KeyError:  # as nbgrader's own lookup fails
            raise MissingEntry(f"no {kind} {grade_id!r} for {where}") from None


class _SaveAutoGradesInto(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, writing through a gradebook that is already open."""

    def __init__(self, gradebook, **kwargs) -> None:
        super().__init__(**kwargs)
        self._open_gradebook = gradebook

    def preprocess(self, nb, resources):
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.student_id = resources["nbgrader"]["student"]
        submitted = self._open_gradebook.find_submission_notebook(
            self.notebook_id, self.assignment_id, self.student_id)
        self.gradebook = _OneSubmittedNotebook(self._open_gradebook, submitted)
        return Preprocessor.preprocess(self, nb, resources)


class _AssignLatePenaltiesInto(AssignLatePenalties):
    """nbgrader's ``AssignLatePenalties`` (its plugin, its bounds on the penalty), in the
    student's open transaction instead of a connection of its own."""

    def __init__(self, gradebook, **kwargs) -> None:
        super().__init__(**kwargs)
        self._open_gradebook = gradebook

    def preprocess(self, nb, resources):
        names = resources["nbgrader"]
        gradebook = self._open_gradebook
        self.init_plugin()
        submission = gradebook.find_submission(names["assignment"], names["student"])
        notebook = gradebook.find_submission_notebook(
            names["notebook"], names["assignment"], names["student"])
        gradebook.db.flush()
        gradebook.db.expire(notebook)  # its score, summed from the grades just written
        notebook.late_submission_penalty = None
        if submission.total_seconds_late > 0:
            self.log.warning("%s is %s seconds late", submission, submission.total_seconds_late)
            penalty = self.plugin_inst.late_submission_penalty(
                names["student"], notebook.score, submission.total_seconds_late)
            if penalty is not None:
                notebook.late_submission_penalty = self._check_late_penalty(notebook, penalty)
        return nb, resources
