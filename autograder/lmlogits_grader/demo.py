"""``make demo``: grade a small sample class end to end and show the result.

Generates the assignment, submits a few correct notebooks and a few with the classic
mistakes, autogrades them with nbgrader, writes feedback and the grades CSV, and prints
a grade table. Uses distilgpt2 when it is cached or downloadable, else the built-in
offline model, and says which on its first line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

DEMO_CLASS = {
    "ada": "correct",
    "brook": "alternative",
    "chen": "correct",
    "dara": "global_phrase",
    "emil": "returns_logits",
    "fatou": "ignores_k",
    "gus": "off_by_one",
    "hana": "blank_answers",
}


def choose_model() -> str:
    """distilgpt2 if it can be had, else the built-in model; print which, and why."""
    from lmlogits import ModelUnavailableError, resolve_model

    if os.environ.get("LMLOGITS_MODEL"):
        print(f"Model: {os.environ['LMLOGITS_MODEL']} (from LMLOGITS_MODEL)")
        return os.environ["LMLOGITS_MODEL"]
    try:
        resolve_model("distilgpt2")
    except ModelUnavailableError:
        print("Model: built-in offline model 'tiny' (distilgpt2 is neither cached nor "
              "downloadable here; its predictions are not distilgpt2's)")
        return "tiny"
    print("Model: distilgpt2 (the course model)")
    return "distilgpt2"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", type=Path, default=Path("build/demo-course"),
                        help="folder for the demo course (recreated; default build/demo-course)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (where bubblewrap cannot run)")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel workers (default: the number of cores)")
    args = parser.parse_args(argv)
    from lmlogits_grader import sandbox

    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be a positive integer, got {args.workers}")

    if args.no_sandbox:
        sandbox.disable()
        print(sandbox.UNSANDBOXED_WARNING)
    os.environ["LMLOGITS_MODEL"] = choose_model()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from lmlogits_grader import course, export, parallel, submissions

    root = args.course.resolve()
    shutil.rmtree(root, ignore_errors=True)
    course.new_course(root)
    api = course.api_for(root)
    print(f"Course folder: {root} (made again by every `make demo`: grades given there "
          "by hand are not kept; grade real classes with `make grade`)")
    course.generate(api)
    print(f"Generated the assignment: {root / 'release' / course.ASSIGNMENT}")
    for student, kind in DEMO_CLASS.items():
        course.submit(root, student, submissions.make_submission(kind))
    print(f"Submitted {len(DEMO_CLASS)} sample notebooks: "
          + ", ".join(f"{s} ({k})" for s, k in DEMO_CLASS.items()))
    outcome = parallel.grade_in_parallel(root, list(DEMO_CLASS), args.workers)
    course.feedback(api, DEMO_CLASS)
    csv_path = course.export_csv(root, root / "grades.csv")
    extra = [export.per_cell_csv(root, root / "grades-per-cell.csv", course.ASSIGNMENT),
             export.canvas_csv(root, root / "grades-canvas.csv", course.ASSIGNMENT)]
    print()
    status = course.report(root, outcome, csv_path, extra)
    if args.no_sandbox:
        print(sandbox.UNSANDBOXED_WARNING)
    return status

if __name__ == "__main__":
    sys.exit(main())
