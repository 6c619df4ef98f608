"""Grade a class with N workers in parallel and get exactly the grades of serial nbgrader.

nbgrader's SQLite gradebook does not take concurrent writers ("database is locked"), so
the work is split where nbgrader itself splits it:

1. **execute and judge in parallel**: each worker process owns a private copy of the
   course (config, source, release and a gradebook of its own: :func:`worker_bundle`),
   receives one submission's files at a time, and runs ``nbgrader autograde`` on it
   with the course's steps; it hands back the executed folder's files, so workers need
   no filesystem shared with the course. Each submission runs in a sandboxed kernel of
   its own
   (:mod:`lmlogits_grader.execute`; warm: forked from the worker's zygote, see
   :mod:`lmlogits_grader.warm_kernel`) and is judged in the worker's own process
   (:mod:`lmlogits_grader.judge`);
2. **record serially**: the main process takes each judged notebook and lets nbgrader's
   own ``SaveAutoGrades`` write its grades into the one main gradebook, one student per
   transaction (:class:`lmlogits_grader.record.Recorder`).

Workers are local processes by default; with a Dask scheduler's address they are the
workers of a Dask cluster, on any machines (:mod:`lmlogits_grader.cluster`).

A journal (``autograded/.parallel-journal``) lists the students recorded so far, with a
fingerprint of their submission and of the grader, so an interrupted run resumes where
it stopped and a changed submission or grader is graded again (``--force`` regrades
everyone). A worker that fails on a submission, for any reason, hands it back to the
main process, which grades it serially: no grade is lost or recorded twice. Workers
end with the main process, and their zygotes and kernels with them.

Usage: ``python -m lmlogits_grader.parallel [--workers N] [--scheduler ADDRESS] [--force]
[--no-sandbox] [student ...]`` (``make autograde``: what is in ``autograder/submitted``)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import multiprocessing
import os
import select
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
PRELOAD = "lmlogits_grader.worker_preload"  # what local workers' forkserver imports
WORKERS_DIR = ".parallel-workers"
# appended to a worker's copy of the course config: a worker executes and judges into a
# gradebook of its own (SQLite, beside its config); the main process records the grades
# in the course's gradebook (record.Recorder), so the worker's steps write none
WORKER_CONFIG = """

# --- added for a grading worker (lmlogits_grader.parallel) ---
from nbgrader.preprocessors import AssignLatePenalties as _Late, SaveAutoGrades as _Save

c.CourseDirectory.db_url = "sqlite:///" + os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "gradebook.db")
c.Autograde.autograde_preprocessors = [
    step for step in c.Autograde.autograde_preprocessors
    if not (isinstance(step, type) and issubclass(step, (_Save, _Late)))
]
"""

_worker_api = None
_worker_root: Path | None = None
_zygote = None  # this worker's warm-kernel zygote (a Popen), if any
_zygote_base: Path | None = None  # the zygote's folder (its socket, its kernels')
_worker_lock = threading.Lock()  # one submission at a time per worker (Dask has threads)


def default_workers() -> int:
    return os.cpu_count() or 1


def recorded_students(root: Path, assignment: str = course.ASSIGNMENT) -> set[str]:
    """Students whose current submission is graded (see :mod:`lmlogits_grader.record`)."""
    return record.recorded_students(root, assignment)


def pack(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: ``{path relative to folder: its bytes}``."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def unpack(files: dict[str, bytes], folder: Path) -> Path:
    """Write what :func:`pack` made into ``folder`` (emptied first); paths that would
    leave ``folder`` are refused."""
    shutil.rmtree(folder, ignore_errors=True)
    record.write_files(files, folder)
    return folder


def worker_bundle(root: Path, assignment: str = course.ASSIGNMENT) -> dict[str, bytes]:
    """What a worker needs of the course, as files: the config (with
    :data:`WORKER_CONFIG`), ``source/`` and ``release/``, and a SQLite gradebook that
    knows the assignment and no student (made by ``nbgrader generate_assignment``).
    """
    with tempfile.TemporaryDirectory(prefix="lmlogits-bundle-") as scratch:
        template = Path(scratch)
        shutil.copy(root / "nbgrader_config.py", template / "nbgrader_config.py")
        with open(template / "nbgrader_config.py", "a") as config:
            config.write(WORKER_CONFIG)
        for folder in ("source", "release"):
            shutil.copytree(root / folder, template / folder)
        # the assignment's rows only: no student's grades leave the course
        course.generate(course.api_for(template), assignment)
        return pack(template)


def submission_files(root: Path, student: str, assignment: str) -> dict[str, bytes]:
    """One student's submitted folder, as files."""
    return pack(root / "submitted" / student / assignment)


def start_worker(bundle: dict[str, bytes], worker_root: Path, warm: bool) -> None:
    """Make this process a grading worker: its course copy at ``worker_root`` (from
    :func:`worker_bundle`), a slot of its own and, with ``warm``, its zygote."""
    unpack(bundle, worker_root)
    _init_worker(str(worker_root), warm, sandbox.claim_slot())


def stop_worker() -> None:
    """Stop this worker's zygote (and with it its kernels) and remove its course copy;
    waits for a submission being graded to finish."""
    global _worker_api, _worker_root
    from lmlogits_grader.execute import KERNEL_PARENT_ENV, WARM_SOCKET_ENV

    with _worker_lock:
        _stop_zygote()
        if _worker_root is not None:
            shutil.rmtree(_worker_root, ignore_errors=True)
        _worker_api = _worker_root = None
        os.environ.pop(KERNEL_PARENT_ENV, None)
        os.environ.pop(WARM_SOCKET_ENV, None)


def _init_worker(worker_root: str, warm: bool, slot: int = 1) -> None:
    global _worker_api, _worker_root, _zygote, _zygote_base
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
        _zygote_base = base
        atexit.register(_stop_zygote)
        os.environ[KERNEL_PARENT_ENV] = str(kernels)
        os.environ[WARM_SOCKET_ENV] = str(socket_path)
    _worker_api = course.api_for(_worker_root)


def _stop_zygote() -> None:
    global _zygote, _zygote_base
    if _zygote is not None and _zygote.poll() is None:
        _zygote.kill()
        _zygote.wait()
    if _zygote_base is not None:
        shutil.rmtree(_zygote_base, ignore_errors=True)
    _zygote = _zygote_base = None


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _exit_with(grader: tuple[int, str | None]) -> None:
    """A worker whose grading run died (killed, crashed) stops too, and with it its
    zygote and kernels (bubblewrap's --die-with-parent). ``grader`` is the grading
    process's (pid, start time): the worker's parent is the forkserver, which lives as
    long as any worker does, so the worker watches the grading process itself."""
    pid, started = grader
    try:
        handle = os.pidfd_open(pid)  # readable once that process has ended
    except ProcessLookupError:
        os._exit(1)
    if _start_time(pid) != started:  # ended before we looked, and its pid reused
        os._exit(1)

    def watch() -> None:
        select.select([handle], [], [])
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _init_pool_process(bundle: dict[str, bytes], workers_dir: str, warm: bool,
                       environment: dict[str, str], grader: tuple[int, str | None]) -> None:
    # forked from the forkserver, which kept the environment it started with: take the
    # grading process's of now (limits, sandbox mode, model), as a spawned process would
    os.environ.clear()
    os.environ.update(environment)
    # each pool process: a course copy, a slot (its kernels' user) and a zygote of its own
    _exit_with(grader)
    start_worker(bundle, Path(workers_dir) / f"worker-{os.getpid()}", warm)


def _fetch_model_once() -> None:
    """Download or build the model before the workers start, so that N zygotes do not
    all download it at once; a model that cannot be had fails here, clearly. A model
    already on disk costs nothing here (no torch import)."""
    import lmlogits

    if Path(lmlogits.resolve_model()).is_dir():  # built, cached or a local folder
        return
    code = "import lmlogits; lmlogits.load_model_and_tokenizer()"
    subprocess.run([sys.executable, "-c", code], check=True)


def execute_submission(student: str, assignment: str, files: dict[str, bytes]) -> dict | None:
    """In a worker: ``nbgrader autograde`` one student's submitted ``files`` in this
    worker's course copy. Returns ``{"files": the executed and judged folder's files
    (see :func:`pack`), "seconds": how long autograde took}``, or None when nbgrader
    failed. The worker keeps nothing of the student afterwards."""
    from lmlogits_grader.execute import write_timings

    if _worker_api is None or _worker_root is None:
        raise RuntimeError("this process is not a grading worker (start_worker first)")
    with _worker_lock:
        submitted = _worker_root / "submitted" / student
        executed = _worker_root / "autograded" / student
        try:
            unpack(files, submitted / assignment)
            started = time.perf_counter()
            result = _worker_api.autograde(assignment, student, force=True, create=True)
            seconds = time.perf_counter() - started
            write_timings({"worker autograde": seconds, "student": student})
            folder = executed / assignment
            if not result.get("success") or not folder.is_dir():
                return None
            return {"files": pack(folder), "seconds": seconds}
        finally:
            shutil.rmtree(submitted, ignore_errors=True)
            shutil.rmtree(executed, ignore_errors=True)


# Variables that torch, transformers and huggingface_hub read when they are imported:
# a worker forked from the forkserver has them as they were when the forkserver started
_READ_AT_IMPORT = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "OMP_",
                   "MKL_")
# ... except those torch writes itself, to its own default, when some code asks for them
# (torch._inductor's cache_dir(), reached by loading some models): not a setting, and
# once written they would make every later run of this process spawn its workers
_WRITTEN_BY_TORCH = frozenset({"TORCHINDUCTOR_CACHE_DIR"})
_forkserver_environment: dict[str, str] | None = None


def _worker_context():
    """The forkserver (see :mod:`worker_preload`), or, when a variable read at import has
    changed in this process since the forkserver started, plain spawned workers, which
    import everything afresh (slower, never stale)."""
    global _forkserver_environment
    now = {name: value for name, value in os.environ.items()
           if name.startswith(_READ_AT_IMPORT) and name not in _WRITTEN_BY_TORCH}
    if _forkserver_environment is None:
        _forkserver_environment = now
    if now != _forkserver_environment:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    return context


def _local_pool(root: Path, bundle: dict[str, bytes], workers: int, warm: bool):
    """``workers`` local processes, each set up once as a grading worker.

    They are forked from a forkserver that has imported :mod:`worker_preload` once (it
    lives as long as this process: later runs in this process reuse it), not started
    from scratch; each takes this process's environment of the moment
    (:func:`_worker_context`).
    """
    workers_dir = root / WORKERS_DIR
    shutil.rmtree(workers_dir, ignore_errors=True)
    workers_dir.mkdir(parents=True)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_worker_context(),
        initializer=_init_pool_process,
        initargs=(bundle, str(workers_dir), warm, dict(os.environ),
                  (os.getpid(), _start_time(os.getpid()))),
    )


def grade_in_parallel(
    root: Path,
    students: list[str],
    workers: int | None = None,
    assignment: str = course.ASSIGNMENT,
    force: bool = False,
    progress: bool = True,
    warm: bool = True,
    scheduler: str | None = None,
    phases: dict[str, float] | None = None,
) -> dict[str, bool]:
    """Autograde ``students`` with ``workers`` processes; grades as serial nbgrader gives.

    With ``scheduler`` (a Dask scheduler's address, ``tcp://host:8786``), the workers are
    that cluster's, set up by :mod:`lmlogits_grader.cluster`, and ``workers`` is unused.

    The assignment must have been generated (``release/`` and the gradebook exist).
    With ``warm``, each worker runs its submissions in kernels forked from a process
    that has already imported torch and transformers and loaded the model (see
    :mod:`lmlogits_grader.warm_kernel`); without it, each starts from scratch.

    ``phases``, when given, receives where the time went, in seconds: ``setup`` (the
    workers' course, slots and zygotes), ``submit`` (sending the submissions), ``record``
    (this process, per result: recording, the journal, and any submission graded here
    instead), ``serial cpu`` (this process's CPU time in those two), ``execute`` (the
    workers' own autograde time, summed), ``wall``, and the number of ``workers``.

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
    sandbox.slot_range()  # a bad LMLOGITS_SLOTS stops here, not in every worker
    done = set() if force else recorded_students(root, assignment)
    todo = [s for s in students if s not in done]
    outcome: dict[str, bool] = {}
    if not todo:
        return outcome
    phases = {} if phases is None else phases
    began = time.perf_counter()
    bundle = worker_bundle(root, assignment)
    client = None
    if scheduler is not None:
        from lmlogits_grader import cluster

        client = cluster.connect(scheduler, bundle, warm)
    try:
        if client is not None:
            pool = client.get_executor(pure=False)
            workers = cluster.worker_count(client)
        else:
            workers = min(workers, len(todo))
            if warm:
                _fetch_model_once()
            pool = _local_pool(root, bundle, workers, warm)
        serial_api = course.api_for(root)
        start = time.perf_counter()
        phases.update(workers=workers, setup=start - began, submit=0.0, record=0.0,
                      execute=0.0)

        def report(student: str) -> None:
            if progress:
                course.print_progress(outcome, student, len(todo), start,
                                      f", {workers} workers")

        with record.Recorder(root, assignment) as recorder, pool:
            pending = {}
            cpu = time.process_time()
            for student in todo:
                files = submission_files(root, student, assignment)
                pending[pool.submit(execute_submission, student, assignment, files)] = student
            phases["submit"] = time.perf_counter() - start
            phases["serial cpu"] = time.process_time() - cpu
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    student = pending.pop(future)
                    recording, cpu = time.perf_counter(), time.process_time()
                    scores = _record_result(recorder, student, future, phases)
                    if scores is None:  # graded here instead, by nbgrader itself
                        result = serial_api.autograde(assignment, student, force=True,
                                                      create=True)
                        outcome[student] = bool(result.get("success"))
                    else:
                        outcome[student] = True
                    if outcome[student]:
                        record.mark_recorded(root, student, assignment, scores)
                    phases["record"] += time.perf_counter() - recording
                    phases["serial cpu"] += time.process_time() - cpu
                    report(student)
    finally:
        if client is not None:  # the workers let go of this run's course and zygotes
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(cluster.PLUGIN_NAME)
            client.close()
        shutil.rmtree(root / WORKERS_DIR, ignore_errors=True)
    phases["wall"] = time.perf_counter() - began
    return outcome


def _record_result(recorder: record.Recorder, student: str, future,
                   phases: dict[str, float]) -> dict[str, float | None] | None:
    """Record what a worker handed back for ``student``; None when there is nothing to
    record (the worker, or nbgrader in it, failed) or recording failed: then nothing of
    the student was written, and the caller grades the submission itself."""
    try:
        executed = future.result()
    except Exception as error:  # the worker itself broke (or was lost, on a cluster)
        print(f"{student}: a worker failed ({error!r}); grading it here", file=sys.stderr)
        return None
    if executed is None:
        return None
    phases["execute"] += executed["seconds"]
    try:
        return recorder.record(student, executed["files"])
    except Exception as error:  # logged; graded again here
        print(f"{student}: could not record ({error!r}); grading it here", file=sys.stderr)
        return None


def scheduler_address(given: str | None) -> str | None:
    """The Dask scheduler to grade on: ``given``, else ``$DASK_SCHEDULER_ADDRESS``, else
    None (local workers)."""
    address = given if given is not None else os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address is None or not address.strip():
        return None
    if ":" not in address:
        where = "`--scheduler`" if given is not None else "DASK_SCHEDULER_ADDRESS"
        raise ValueError(f"{where} must be an address like tcp://host:8786, got {address!r}")
    return address.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("students", nargs="*", help="default: every submitted student")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--scheduler", default=None,
                        help="grade on this Dask cluster (default: $DASK_SCHEDULER_ADDRESS, "
                        "else local worker processes)")
    parser.add_argument("--course", type=Path, default=course.COURSE)
    parser.add_argument("--force", action="store_true", help="regrade students already done")
    parser.add_argument("--cold", action="store_true", help="fresh kernels, no warm zygote")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run student code unsandboxed (where bubblewrap cannot run)")
    args = parser.parse_args(argv)
    try:
        scheduler = scheduler_address(args.scheduler)
    except ValueError as error:
        parser.error(str(error))
    if args.no_sandbox:
        sandbox.disable()
        print(sandbox.UNSANDBOXED_WARNING)
    root = args.course.resolve()
    students = args.students or course.submitted_students(root)
    course.generate(course.api_for(root))
    students = collect.prepare_submitted(root, students, course.ASSIGNMENT).students
    outcome = grade_in_parallel(
        root, students, args.workers, force=args.force, warm=not args.cold,
        scheduler=scheduler,
    )
    failed = [s for s, ok in outcome.items() if not ok]
    print(f"graded {len(outcome)} submissions, {len(failed)} failed", file=sys.stderr)
    if args.no_sandbox:
        print(sandbox.UNSANDBOXED_WARNING)
    return 1 if failed else 0


if __name__ == "__main__":
    # run the importable module's main, not this __main__ copy's: Dask sends the
    # workers' task function by reference, which a __main__ function cannot be
    from lmlogits_grader.parallel import main as module_main

    sys.exit(module_main())
