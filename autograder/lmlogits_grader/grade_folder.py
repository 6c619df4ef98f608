"""``make grade SUBMISSIONS=dir``: grade a folder of collected notebooks into grades + feedback.

The folder holds one notebook per student, named ``<student_id>.ipynb`` (what an LMS
download gives, once renamed; nbgrader's ``zip_collect`` is the alternative). Each is
placed in ``autograder/submitted/<student_id>/013-lm-logits/`` and graded by nbgrader.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmlogits_grader import collect as collect_stage
from lmlogits_grader import course, parallel, sandbox


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
    parser.add_argument("--export-only", action="store_true", help="only refresh the CSV")
    parser.add_argument("--workers", type=int, default=parallel.default_workers(),
                        help="parallel workers (default: the number of cores)")
    parser.add_argument("--force", action="store_true", help="regrade students already graded")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (where bubblewrap cannot run)")
    args = parser.parse_args(argv)
    if args.no_sandbox:
        sandbox.disable()
        print(sandbox.UNSANDBOXED_WARNING)
    root = args.course.resolve()
    api = course.api_for(root)
    outcome: dict[str, bool] = {}
    if not args.export_only:
        if args.submissions is None:
            parser.error("give the folder of submissions (make grade SUBMISSIONS=dir)")
        course.generate(api)
        students = collect(args.submissions, root)
        outcome = parallel.grade_in_parallel(root, students, args.workers, force=args.force)
        course.feedback(api, students)
    csv_path = course.export_csv(root, root / "grades.csv")
    status = course.report(root, outcome, csv_path)
    if args.no_sandbox:
        print(sandbox.UNSANDBOXED_WARNING)
    return status

if __name__ == "__main__":
    sys.exit(main())
