"""Grade a class with N workers in parallel and get exactly the grades of serial nbgrader.

nbgrader's SQLite gradebook does not take concurrent writers ("database is locked"), so
the work is split where nbgrader itself splits it:

1. **execute and judge in parallel**: each worker process owns a private copy of the
   course (config, source, release, a copy of the gradebook) whose ``submitted/`` is the
   main course's, and runs ``nbgrader autograde`` there with the course's steps, one
   submission at a time: each submission runs in a sandboxed kernel of its own
   (:mod:`lmlogits_grader.execute`; warm: forked from the worker's zygote, see
   :mod:`lmlogits_grader.warm_kernel`) and is judged in the worker's own process
   (:mod:`lmlogits_grader.judge`);
2. **record serially**: the main process takes each judged notebook and lets nbgrader's
   own ``SaveAutoGrades`` write its grades into the one main gradebook, one student per
   transaction (:class:`lmlogits_grader.record.Recorder`).

A journal (``autograded/.parallel-journal``) lists the students recorded so far, with a
fingerprint of their submission and of the grader, so an interrupted run resumes where
it stopped and a changed submission or grader is graded again (``--force`` regrades
everyone). A worker that fails on a submission, for any reason, hands it back to the
main process, which grades it serially: no grade is lost or recorded twice. Workers
end with the main process, and their zygotes and kernels with them.

Usage: ``python -m lmlogits_grader.parallel [--workers N] [--force] [--no-sandbox]
[student ...]`` (``make autograde``: what is in ``autograder/submitted``)
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from lmlogits_grader import collect, course, record, sandbox

JOURNAL = record.JOURNAL
WORKERS_DIR = ".parallel-workers"
# appended to a worker's copy of the course config: a worker executes and judges; the
# main process records the grades (record.Recorder), so the worker writes none
WORKER_CONFIG = """

# --- added for a parallel worker (lmlogits_grader.parallel) ---
from nbgrader.preprocessors import AssignLatePenalties as _Late, SaveAutoGrades as _Save

c.Autograde.autograde_preprocessors = [
    step for step in c.Autograde.autograde_preprocessors
    if not (isinstance(step, type) and issubclass(step, (_Save, _Late)))
]
"""

_worker_api = None
_worker_root: Path | None = None
_zygote = None  # this worker's warm-kernel zygote (a Popen), if any


def default_workers() -> int:
    return os.cpu_count() or 1


def recorded_students(root: Path, assignment: str = course.ASSIGNMENT) -> set[str]:
    """Students whose current submission is graded (see :mod:`lmlogits_grader.record`)."""
    return record.recorded_students(root, assignment)


def _worker_course(root: Path, index: int) -> Path:
    """A private course copy for one worker, sharing the main course's submissions."""
    worker = root / WORKERS_DIR / f"worker-{index}"
    shutil.rmtree(worker, ignore_errors=True)
    worker.mkdir(parents=True)
    shutil.copy(root / "nbgrader_config.py", worker / "nbgrader_config.py")
    with open(worker / "nbgrader_config.py", "a") as config:
        config.write(WORKER_CONFIG)
    for folder in ("source", "release"):
        shutil.copytree(root / folder, worker / folder)
    shutil.copy(root / "gradebook.db", worker / "gradebook.db")
    (worker / "submitted").symlink_to(root / "submitted", target_is_directory=True)
    return worker


def _init_worker(worker_root: str, warm: bool, slot: int = 1) -> None:
    global _worker_api, _worker_root, _zygote
    from lmlogits_grader.execute import KERNEL_PARENT_ENV, SLOT_ENV, WARM_SOCKET_ENV

    # one thread per kernel: N workers on N cores must not oversubscribe them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    # each worker's kernels run as a user of their own (process limits are per user)
    os.environ[SLOT_ENV] = str(slot)
    _worker_root = Path(worker_root)
    if warm:
        from lmlogits_grader import sandbox, warm_kernel

        # short paths: Unix socket paths are limited to about 100 characters
        base = Path(tempfile.mkdtemp(prefix="lmlogits-w-", dir=sandbox.shared_root()))
        base.chmod(0o711)
        kernels = base / "kernels"
        kernels.mkdir(mode=0o711)
        kernels.chmod(0o711)
        zygote_dir = base / "zygote"
        zygote_dir.mkdir(mode=0o700)
        socket_path = zygote_dir / "zygote.sock"
        _zygote = warm_kernel.start_zygote(socket_path, kernels)
        atexit.register(_stop_zygote, base)
        os.environ[KERNEL_PARENT_ENV] = str(kernels)
        os.environ[WARM_SOCKET_ENV] = str(socket_path)
    _worker_api = course.api_for(_worker_root)


def _stop_zygote(base: Path) -> None:
    if _zygote is not None and _zygote.poll() is None:
        _zygote.kill()
        _zygote.wait()
    shutil.rmtree(base, ignore_errors=True)


def _exit_with_parent() -> None:
    """A worker whose grading run died (killed, crashed) stops too, and with it its
    zygote and kernels (bubblewrap's --die-with-parent)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _init_pool_process(free_roots, warm: bool) -> None:
    # each pool process claims one worker folder (and slot number) of its own
    _exit_with_parent()
    slot, worker_root = free_roots.get()
    _init_worker(worker_root, warm, slot)


def _fetch_model_once() -> None:
    """Download or build the model before the workers start, so that N zygotes do not
    all download it at once; a model that cannot be had fails here, clearly. A model
    already on disk costs nothing here (no torch import)."""
    import lmlogits

    if Path(lmlogits.resolve_model()).is_dir():  # built, cached or a local folder
        return
    code = "import lmlogits; lmlogits.load_model_and_tokenizer()"
    subprocess.run([sys.executable, "-c", code], check=True)


def _execute_one(student: str, assignment: str) -> tuple[str, str | None]:
    """In a worker: nbgrader autograde one student; return the executed notebook's folder."""
    from lmlogits_grader.execute import write_timings

    started = time.perf_counter()
    result = _worker_api.autograde(assignment, student, force=True, create=True)
    write_timings({"worker autograde": time.perf_counter() - started})
    folder = _worker_root / "autograded" / student / assignment
    if not result.get("success") or not folder.is_dir():
        return student, None
    return student, str(folder)


def grade_in_parallel(
    root: Path,
    students: list[str],
    workers: int | None = None,
    assignment: str = course.ASSIGNMENT,
    force: bool = False,
    progress: bool = True,
    warm: bool = True,
) -> dict[str, bool]:
    """Autograde ``students`` with ``workers`` processes; grades as serial nbgrader gives.

    The assignment must have been generated (``release/`` and the gradebook exist).
    With ``warm``, each worker runs its submissions in kernels forked from a process
    that has already imported torch and transformers and loaded the model (see
    :mod:`lmlogits_grader.warm_kernel`); without it, each starts from scratch.

    Returns:
        ``{student: success}`` for the students graded in this call (already recorded
        ones are skipped unless ``force``).
    """
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer, got {workers!r}")
    root = Path(root).resolve()
    sandbox.require()
    done = set() if force else recorded_students(root, assignment)
    todo = [s for s in students if s not in done]
    outcome: dict[str, bool] = {}
    if not todo:
        return outcome
    workers = min(workers, len(todo))
    if warm:
        _fetch_model_once()
    roots = [str(_worker_course(root, i)) for i in range(workers)]
    recorder = record.Recorder(root, assignment)
    serial_api = course.api_for(root)
    start = time.perf_counter()

    def report(student: str) -> None:
        if progress:
            course.print_progress(outcome, student, len(todo), start, f", {workers} workers")

    context = multiprocessing.get_context("spawn")
    free_roots = context.Queue()
    for slot, worker_root in enumerate(roots, start=1):
        free_roots.put((slot, worker_root))
    with recorder, ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_pool_process,
        initargs=(free_roots, warm),
    ) as pool:
        pending = {pool.submit(_execute_one, s, assignment): s for s in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                student = pending.pop(future)
                try:
                    _, executed = future.result()
                except Exception:  # the worker itself broke: grade this one here
                    executed = None
                scores = None
                if executed is not None:
                    try:
                        scores = recorder.record(student, Path(executed))
                    except Exception as error:  # logged; graded again here
                        print(f"{student}: could not record ({error!r}); grading it here",
                              file=sys.stderr)
                if scores is None:
                    result = serial_api.autograde(assignment, student, force=True, create=True)
                    ok = bool(result.get("success"))
                else:
                    ok = True
                outcome[student] = ok
                if ok:
                    record.mark_recorded(root, student, assignment, scores)
                report(student)
    shutil.rmtree(root / WORKERS_DIR, ignore_errors=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", nargs="*", help="default: every submitted student")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--course", type=Path, default=course.COURSE)
    parser.add_argument("--force", action="store_true", help="regrade students already done")
    parser.add_argument("--cold", action="store_true", help="fresh kernels, no warm zygote")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (where bubblewrap cannot run)")
    args = parser.parse_args(argv)
    if args.no_sandbox:
        sandbox.disable()
        print(sandbox.UNSANDBOXED_WARNING)
    root = args.course.resolve()
    students = args.students or course.submitted_students(root)
    course.generate(course.api_for(root))
    students = collect.prepare_submitted(root, students, course.ASSIGNMENT).students
    outcome = grade_in_parallel(
        root, students, args.workers, force=args.force, warm=not args.cold
    )
    failed = [s for s, ok in outcome.items() if not ok]
    print(f"graded {len(outcome)} submissions, {len(failed)} failed", file=sys.stderr)
    if args.no_sandbox:
        print(sandbox.UNSANDBOXED_WARNING)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
