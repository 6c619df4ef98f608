"""Drive nbgrader for a course folder: generate, collect, autograde, feedback, export.

nbgrader does the grading; this module only calls its Python API in the right order,
reads the per-cell grades back from the gradebook, and prints them.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

COURSE = Path(__file__).resolve().parents[1]  # the repository's autograder/ folder
ASSIGNMENT = "013-lm-logits"

# The rubric, in notebook order: grade_id -> (part, points). README "Rubric" explains it.
RUBRIC = {
    "test_step1": ("Step 1: input_ids", 1),
    "test_step2": ("Step 2: logits shape", 1),
    "test_step3": ("Step 3: last position", 1),
    "test_step4": ("Step 4: softmax, argmax", 1),
    "test_step5": ("Step 5: top-10 table", 1),
    "test_returns_k_rows": ("f: DataFrame, k rows", 2),
    "test_matches_reference": ("f: hidden phrases", 4),
    "test_returns_probabilities": ("f: probabilities", 1),
    "test_no_global_vars": ("f: check_global_vars", 2),
    "test_works_without_notebook_globals": ("f: without globals", 3),
    "q1": ("Q1 (manual)", 2),
    "q2": ("Q2 (manual)", 2),
    "q3": ("Q3 (manual)", 2),
}


# short column names for the grade table (README "Rubric" has the long ones)
SHORT_NAMES = {
    "test_step1": "s1", "test_step2": "s2", "test_step3": "s3", "test_step4": "s4",
    "test_step5": "s5", "test_returns_k_rows": "rows", "test_matches_reference": "ref",
    "test_returns_probabilities": "prob", "test_no_global_vars": "glob",
    "test_works_without_notebook_globals": "alone", "q1": "q1", "q2": "q2", "q3": "q3",
}
TABLE_LEGEND = (
    "s1-s5: steps 1-5; rows: DataFrame with k rows; ref: hidden phrases; prob: "
    "probabilities;\nglob: check_global_vars; alone: same result without notebook "
    "globals; q1-q3: written answers;\n'?' = waiting for manual grading (formgrader, or a "
    "deleted graded cell); '-' = not in the gradebook."
)
_MAX_ID_WIDTH = 24

TOTAL_POINTS = sum(points for _, points in RUBRIC.values())
AUTO_POINTS = sum(points for cell, (_, points) in RUBRIC.items() if cell.startswith("test_"))


@dataclass(frozen=True)
class CellGrade:
    score: float
    max_score: float
    needs_manual_grade: bool


def alembic_head() -> str:
    """The gradebook schema's revision, as ``alembic heads`` prints it with nbgrader's
    migration scripts, read in this process."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
        return ScriptDirectory.from_config(Config(ini)).get_current_head()


def _quiet_nbgrader() -> None:
    import nbgrader.api

    # nbgrader runs `alembic` from PATH when it creates a gradebook (upgrades)
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # ... and `alembic heads` for the revision to stamp a new gradebook with: a second
    # Python and 1.7 s of CPU per gradebook, for what alembic_head reads here
    # (tests/test_record.py compares the two)
    nbgrader.api.get_alembic_version = alembic_head
    warnings.filterwarnings("ignore", message="Object of type")


def new_course(root: Path, course: Path = COURSE) -> Path:
    """Make ``root`` a course folder: this course's config and source, nothing graded."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(course / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(course / "source", root / "source", dirs_exist_ok=True)
    return root


def api_for(root: Path = COURSE, kernel_name: str | None = None):
    """An ``NbGraderAPI`` configured from ``root/nbgrader_config.py``.

    ``kernel_name`` overrides the notebook's kernel for execution (warm kernels).
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    _quiet_nbgrader()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    if kernel_name:
        config.Execute.kernel_name = kernel_name
    return NbGraderAPI(config=config)


def _require_success(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error') or result.get('log')}")


def generate(api, assignment: str = ASSIGNMENT) -> None:
    """``nbgrader generate_assignment``: release/ and the gradebook's source cells."""
    _require_success(api.generate_assignment(assignment), f"generate_assignment {assignment}")


def submit(root: Path, student: str, nb, assignment: str = ASSIGNMENT) -> Path:
    """Place a notebook where ``nbgrader collect`` would: submitted/<student>/<assignment>/."""
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(nb, path)
    (folder / "timestamp.txt").write_text("2026-11-21 12:00:00.000000 UTC")
    return path


def submitted_students(root: Path, assignment: str = ASSIGNMENT) -> list[str]:
    folder = root / "submitted"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / assignment).is_dir())


def autograde(
    api, students: Iterable[str], assignment: str = ASSIGNMENT, progress: bool = True
) -> dict[str, bool]:
    """``nbgrader autograde`` each student in turn; one failure never stops the rest.

    Returns ``{student: success}``. With ``progress``, prints ``[done/total]`` lines with
    the rate and the failures so far to stderr.
    """
    students = list(students)
    outcome: dict[str, bool] = {}
    start = time.perf_counter()
    from lmlogits_grader import record, sandbox

    sandbox.require()
    root = Path(api.coursedir.root)
    for student in students:
        result = api.autograde(assignment, student, force=True, create=True)
        outcome[student] = bool(result.get("success"))
        if outcome[student]:
            record.mark_recorded(root, student, assignment)
        if progress:
            print_progress(outcome, student, len(students), start)
    return outcome


def print_progress(outcome: dict[str, bool], student: str, total: int, start: float,
                   note: str = "") -> None:
    """One progress line on stderr: done/total, the student, rate and failures so far."""
    done = len(outcome)
    rate = done / (time.perf_counter() - start) * 60
    failures = sum(not ok for ok in outcome.values())
    print(
        f"[{done}/{total}] {student}: {'ok' if outcome[student] else 'FAILED'}"
        f"  ({rate:.1f} submissions/min, {failures} failed{note})",
        file=sys.stderr,
    )


def feedback(api, students: Iterable[str], assignment: str = ASSIGNMENT) -> None:
    """nbgrader's feedback page for each student, made readable (unfinished manual
    grading shown as such, messages that wrap: see :mod:`lmlogits_grader.feedback`).

    One ``nbgrader generate_feedback`` for all of them (its HTML templates are compiled
    once, not once per student), the other autograded students excluded; a student
    whose page it did not write (nbgrader stops a batch on some errors) gets a run of
    their own, as before.
    """
    from nbgrader.utils import temp_attrs

    from lmlogits_grader import feedback as readable

    root = Path(api.coursedir.root)
    students = list(dict.fromkeys(students))
    graded = {folder.parent.name for folder in (root / "autograded").glob(f"*/{assignment}")}
    others = sorted(graded - set(students))
    before = {student: _modified(feedback_page(root, student, assignment))
              for student in students}
    if students:
        with temp_attrs(api.coursedir, student_id_exclude=",".join(others)):
            api.generate_feedback(assignment, "*")
    for student in students:
        written = _modified(feedback_page(root, student, assignment))
        if written is None or written == before[student]:
            api.generate_feedback(assignment, student)
        readable.rewrite(root, student, assignment)


def _modified(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def feedback_page(root: Path, student: str, assignment: str = ASSIGNMENT) -> Path:
    """Where nbgrader writes ``student``'s feedback page."""
    return Path(root) / "feedback" / student / assignment / f"{assignment}.html"


def cell_grades(root: Path, assignment: str = ASSIGNMENT) -> dict[str, dict[str, CellGrade]]:
    """Every student's grade per graded cell, read from the gradebook."""
    from lmlogits_grader.record import submitted_grades

    return {
        student: {
            g.name: CellGrade(float(g.score), float(g.max_score), bool(g.needs_manual_grade))
            for g in grades
        }
        for student, grades in submitted_grades(root, assignment)
    }


class NoGradebook(FileNotFoundError):
    """Export was asked of a course folder that has no gradebook."""


def nbgrader_export(root: Path, path: Path) -> Path:
    """What ``nbgrader export --to path`` does in the course ``root``, in this process
    (no second Python to start and import nbgrader: about 3 s of CPU): the course's
    export plugin (``ExportApp.plugin_class``, nbgrader's CSV unless configured) over
    its gradebook, whatever its ``db_url``."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import ExportApp

    api = api_for(Path(root))
    config = api.config.copy()
    config.ExportPlugin.to = str(Path(path).resolve())
    app = ExportApp(config=config)
    plugin = app.plugin_class(parent=app)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gradebook:
        plugin.export(gradebook)
    return Path(path)


def export_csv(root: Path, path: Path, assignment: str = ASSIGNMENT) -> Path:
    """``nbgrader export``: one row per student, nbgrader's columns, manual grades included,
    plus a ``note`` column (repairs, or why a file could not be graded).

    Students whose automatic scores changed in the gradebook after the grader recorded
    them are left out, and named on stderr (see :mod:`lmlogits_grader.record`).
    """
    from lmlogits_grader.collect import load_notes
    from lmlogits_grader.record import changed_behind_our_back, has_gradebook

    if not has_gradebook(Path(root)):
        raise NoGradebook(
            f"no gradebook in {str(root)!r}: nothing has been graded there yet (grade "
            "first: make grade SUBMISSIONS=dir, or make autograde; COURSE=folder for "
            "another course)")
    nbgrader_export(root, path)
    changed = changed_behind_our_back(root, assignment)
    for student, why in sorted(changed.items()):
        print(f"NOT EXPORTED {student}: {why}", file=sys.stderr)
    add_notes(path, load_notes(root), leave_out=set(changed))
    return path


def grade_table(grades: dict[str, dict[str, CellGrade]]) -> str:
    """A plain-text table: one row per student, one column per rubric part, and the total."""
    parts = list(RUBRIC)
    header = ["student"] + [SHORT_NAMES[gid] for gid in parts] + ["auto", "total"]
    rows = []
    for student, cells in sorted(grades.items()):
        shown = student if len(student) <= _MAX_ID_WIDTH else student[:_MAX_ID_WIDTH - 1] + "~"
        row = [shown]
        for gid in parts:
            grade = cells.get(gid)
            if grade is None:
                row.append("-")
            elif grade.needs_manual_grade:
                row.append("?")
            else:
                row.append(f"{grade.score:g}")
        auto = sum(g.score for gid, g in cells.items() if not gid.startswith("q"))
        total = sum(g.score for g in cells.values())
        row += [f"{auto:g}/{AUTO_POINTS:g}", f"{total:g}/{TOTAL_POINTS:g}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def add_notes(csv_path: Path, notes: dict[str, str], leave_out: set[str] = frozenset()) -> None:
    """Add a ``note`` column to nbgrader's CSV (repairs made, or why a file was broken);
    drop the rows of ``leave_out``."""
    rows = [row for row in read_csv(csv_path) if row.get("student_id") not in leave_out]
    if not rows:
        return
    fields = [*rows[0].keys(), "note"]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "note": notes.get(row.get("student_id", ""), "")})


def report(root: Path, outcome: dict[str, bool], csv_path: Path,
           extra_csvs: Iterable[Path] = ()) -> int:
    """Print the grade table and where the CSVs and feedback are; 1 if a student failed."""
    from lmlogits_grader.collect import load_notes, load_skipped

    print(grade_table(cell_grades(root)))
    print("\n" + TABLE_LEGEND)
    notes = load_notes(root)
    if notes:
        print("Notes:")
        for student, note in sorted(notes.items()):
            print(f"  {student}: {note}")
    skipped = load_skipped(root)
    if skipped:
        print("Not graded (files that are not usable student ids; rename and grade again):")
        for name, why in sorted(skipped.items()):
            print(f"  {name}: {why}")
    print(f"Grades CSV: {csv_path}")
    for path in extra_csvs:
        print(f"            {path}")
    print(f"Feedback:   {root / 'feedback'}/<student>/{ASSIGNMENT}/{ASSIGNMENT}.html")
    failed = [student for student, ok in outcome.items() if not ok]
    if failed:
        print(f"nbgrader could not grade: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
