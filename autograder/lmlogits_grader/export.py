"""Export: the gradebook as CSV files people use, besides ``nbgrader export``.

- :func:`per_cell_csv`: one row per student, one column per graded cell (its score;
  empty while it waits for a person to grade it), then the automatic, manual and total
  points, the maximum, and the grader's note (repairs, or why a file was broken).
- :func:`canvas_csv`: the layout Canvas's gradebook import takes: the identity columns
  ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, a ``Points
  Possible`` row, and one column for the assignment (its total score). Canvas matches a
  row to a student by ``ID``, ``SIS User ID`` or ``SIS Login ID``. nbgrader's student
  id (the name of the file the student handed in) goes in ``SIS Login ID``; with a
  ``roster`` (Canvas's own gradebook export, "Export Entire Gradebook"), each student is
  looked up there by that login and the row gets Canvas's name, ID, SIS User ID and
  section instead. A student missing from the roster is reported, not guessed.

Both leave out students whose automatic scores changed in the gradebook after the
grader recorded them (see :func:`lmlogits_grader.record.changed_behind_our_back`), as
the main CSV does.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from lmlogits_grader import record

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


@dataclass(frozen=True)
class _Grade:
    name: str
    score: float  # the manual score when there is one, else the automatic one
    max_score: float
    manual_score: float | None
    needs_manual_grade: bool


def _graded_students(root: Path, assignment: str) -> dict[str, list[_Grade]]:
    """Every exported student's grades, read while the gradebook is open."""
    changed = record.changed_behind_our_back(root, assignment)
    return {
        student: [_Grade(g.name, float(g.score), float(g.max_score),
                         None if g.manual_score is None else float(g.manual_score),
                         bool(g.needs_manual_grade)) for g in grades]
        for student, grades in record.submitted_grades(root, assignment)
        if student not in changed
    }


def _cell_order(root: Path, assignment: str) -> list[str]:
    """Graded cells in the order of the released notebook."""
    import nbformat

    released = root / "release" / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(released, as_version=4)
    return [cell.metadata.nbgrader["grade_id"] for cell in nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")]


def per_cell_csv(root: Path, path: Path, assignment: str) -> Path:
    """Write the per-cell CSV of ``assignment`` to ``path``; returns ``path``."""
    from lmlogits_grader.collect import load_notes

    root, path = Path(root), Path(path)
    cells = _cell_order(root, assignment)
    notes = load_notes(root)
    fields = ["student_id", *cells, "automatic", "manual", "total", "max_score",
              "awaiting_manual_grading", "note"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for student, grades in sorted(_graded_students(root, assignment).items()):
            by_cell = {g.name: g for g in grades}
            row = {"student_id": student}
            automatic = manual = maximum = 0.0
            waiting = []
            for cell in cells:
                grade = by_cell.get(cell)
                if grade is None:
                    row[cell] = ""
                    continue
                maximum += grade.max_score
                if grade.needs_manual_grade:
                    row[cell] = ""
                    waiting.append(cell)
                elif grade.manual_score is not None:
                    row[cell] = f"{grade.manual_score:g}"
                    manual += grade.manual_score
                else:
                    row[cell] = f"{grade.score:g}"
                    automatic += grade.score
            row.update(automatic=f"{automatic:g}", manual=f"{manual:g}",
                       total=f"{automatic + manual:g}", max_score=f"{maximum:g}",
                       awaiting_manual_grading=" ".join(waiting),
                       note=notes.get(student, ""))
            writer.writerow(row)
    return path


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """Canvas's gradebook export, by ``SIS Login ID``: ``{login: identity columns}``.

    Canvas's export has a second row of points ("Points Possible") and sometimes a
    test student; rows without a login are skipped."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not set(CANVAS_IDENTITY) <= set(rows[0]):
        raise ValueError(f"`roster` must be a Canvas gradebook export with the columns "
                         f"{', '.join(CANVAS_IDENTITY)}, got {str(path)!r}")
    return {row["SIS Login ID"].strip(): {k: row[k] for k in CANVAS_IDENTITY}
            for row in rows if row.get("SIS Login ID", "").strip()}


def canvas_csv(root: Path, path: Path, assignment: str, title: str | None = None,
               roster: Path | None = None) -> Path:
    """Write a CSV for Canvas's gradebook import to ``path``; returns ``path``.

    ``title``: the assignment column's name in Canvas (default: the nbgrader assignment
    id). Students waiting for manual grading get their score so far; the per-cell CSV
    says which cells are still to grade."""
    root, path = Path(root), Path(path)
    people = read_roster(roster) if roster is not None else None
    column = title or assignment
    graded = _graded_students(root, assignment)
    maximum = 0.0
    rows = []
    for student, grades in sorted(graded.items()):
        maximum = max(maximum, sum(g.max_score for g in grades))
        score = sum(g.score for g in grades)
        if people is None:
            identity = {"Student": student, "ID": "", "SIS User ID": "",
                        "SIS Login ID": student, "Section": ""}
        elif student in people:
            identity = people[student]
        else:
            print(f"NOT IN THE CANVAS ROSTER {student}: no row with SIS Login ID "
                  f"{student!r}; left out of {path.name}", file=sys.stderr)
            continue
        rows.append({**identity, column: f"{score:g}"})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*CANVAS_IDENTITY, column])
        writer.writeheader()
        writer.writerow({"Student": "Points Possible", column: f"{maximum:g}"})
        writer.writerows(rows)
    return path
