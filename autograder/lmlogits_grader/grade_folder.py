"""``make grade SUBMISSIONS=dir``: grade a folder of collected notebooks into grades + feedback.

The folder holds one notebook per student, named ``<student_id>.ipynb`` (what an LMS
download gives, once renamed; nbgrader's ``zip_collect`` is the alternative). Each is
placed in ``<course>/submitted/<student_id>/013-lm-logits/`` and graded by nbgrader.
``--from-submitted`` grades what is already there (``make autograde``);
``--export-only`` only writes the CSVs again (``make grade-export``, after manual
grading; feedback is made again too, so students see their manual grades).

Writes ``grades.csv`` (nbgrader's export plus a ``note`` column), ``grades-per-cell.csv``
and ``grades-canvas.csv`` (see :mod:`lmlogits_grader.export`) in the course folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmlogits_grader import collect as collect_stage
from lmlogits_grader import course, export, parallel, record, sandbox


def collect(folder: Path, root: Path, assignment: str = course.ASSIGNMENT) -> list[str]:
    """Copy ``folder/<student>.ipynb`` into ``root/submitted``; return the student ids.

    See :mod:`lmlogits_grader.collect`: names are checked, files repaired or marked
    broken, and the reasons kept for the grade table and the CSV.
    """
    return collect_stage.collect(folder, root, assignment).students


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, nargs="?", help="folder of <student>.ipynb")
    parser.add_argument("--course", type=Path, default=course.COURSE)
    parser.add_argument("--export-only", action="store_true",
                        help="only refresh the CSVs and the feedback (after manual grading)")
    parser.add_argument("--from-submitted", action="store_true",
                        help="grade what is already in <course>/submitted")
    parser.add_argument("--canvas-roster", type=Path,
                        help="Canvas's gradebook export, to map student ids to Canvas")
    parser.add_argument("--canvas-title", help="the assignment's column name in Canvas")
    parser.add_argument("--workers", type=int, default=parallel.default_workers(),
                        help="parallel workers (default: the number of cores)")
    parser.add_argument("--scheduler", default=None,
                        help="grade on the Dask cluster at this address, tcp://host:8786 "
                        "(default: $DASK_SCHEDULER_ADDRESS; without either, local workers)")
    parser.add_argument("--force", action="store_true", help="regrade students already graded")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (where bubblewrap cannot run)")
    args = parser.parse_args(argv)
    try:
        scheduler = parallel.scheduler_address(args.scheduler)
    except ValueError as error:
        parser.error(str(error))
    if args.no_sandbox:
        sandbox.disable()
        print(sandbox.UNSANDBOXED_WARNING)
    root = args.course.resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"--course {str(args.course)!r} is not a course folder (no "
                     "nbgrader_config.py): make one with lmlogits_grader.course.new_course, "
                     "or use autograder/")
    api = course.api_for(root)
    outcome: dict[str, bool] = {}
    if args.export_only:
        if record.has_gradebook(root):
            course.feedback(api, [s for s, _ in record.submitted_grades(root, course.ASSIGNMENT)])
    else:
        course.generate(api)
        if args.from_submitted:
            students = collect_stage.prepare_submitted(
                root, course.submitted_students(root), course.ASSIGNMENT).students
        elif args.submissions is None:
            parser.error("give the folder of submissions (make grade SUBMISSIONS=dir)")
        else:
            students = collect(args.submissions, root)
        outcome = parallel.grade_in_parallel(root, students, args.workers, force=args.force,
                                             scheduler=scheduler)
        course.feedback(api, students)
    try:
        csv_path = course.export_csv(root, root / "grades.csv")
    except course.NoGradebook as error:
        print(error, file=sys.stderr)
        return 2
    extra = [
        export.per_cell_csv(root, root / "grades-per-cell.csv", course.ASSIGNMENT),
        export.canvas_csv(root, root / "grades-canvas.csv", course.ASSIGNMENT,
                          title=args.canvas_title, roster=args.canvas_roster),
    ]
    status = course.report(root, outcome, csv_path, extra)
    if args.no_sandbox:
        print(sandbox.UNSANDBOXED_WARNING)
    return status

if __name__ == "__main__":
    sys.exit(main())
