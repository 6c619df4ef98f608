"""Grade on a Dask cluster: the same workers as the local pool, on any machines.

Dask distributed is the engine; nothing here schedules, retries or moves data itself:

- :class:`GradingPlugin` is a Dask worker plugin. Registered once by the grading run,
  Dask sets up every worker with it, including workers that join later or replace a
  lost one: the course copy from :func:`lmlogits_grader.parallel.worker_bundle` (sent
  through Dask, no shared filesystem), a kernel slot of its own, the grading run's
  settings (timeouts, model), and a warm zygote that loads the model once.
- each submission is one Dask task, :func:`lmlogits_grader.parallel.execute_submission`:
  the submission's files go to the worker, the executed and judged folder's files come
  back. The grading run records them in the course's gradebook as they arrive.
- a worker lost mid-run (killed, its machine gone) loses no grade: Dask runs its
  tasks again on other workers (``distributed.scheduler.allowed-failures``), and a task
  that still fails is graded by the grading run itself. A task's result comes back
  once, and is recorded once.

Start a cluster (README "Running on a cluster")::

    dask scheduler --host 0.0.0.0 --port 8786
    dask worker tcp://scheduler:8786 --nthreads 1 --nworkers 2   # on each machine

then ``make grade SUBMISSIONS=dir SCHEDULER=tcp://scheduler:8786`` (or set
``DASK_SCHEDULER_ADDRESS``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from distributed import Client, WorkerPlugin

PLUGIN_NAME = "lmlogits-grader"
# the grading run's settings that decide grades, given to every worker (paths of this
# machine, such as the model cache, are left to each worker's own environment)
FORWARDED_SETTINGS = (
    "LMLOGITS_MODEL", "LMLOGITS_CELL_TIMEOUT", "LMLOGITS_LOAD_TIMEOUT",
    "LMLOGITS_CHECK_SECONDS", "LMLOGITS_SUBMISSION_SECONDS", "LMLOGITS_CELL_OUTPUT_BYTES",
    "LMLOGITS_NOTEBOOK_OUTPUT_BYTES", "LMLOGITS_SANDBOX", "HF_HUB_OFFLINE",
    "TOKENIZERS_PARALLELISM",
)
CONNECT_SECONDS = 30


class GradingPlugin(WorkerPlugin):
    """Sets a Dask worker up as a grading worker, once, and stops it with the worker.

    Args:
        bundle: the course's worker files (:func:`lmlogits_grader.parallel.worker_bundle`).
        warm: run submissions in kernels forked from a zygote that loaded the model.
        settings: environment variables of the grading run (:data:`FORWARDED_SETTINGS`).
        grader: the grading run's :func:`lmlogits_grader.record.grader_digest`; a worker
            whose grader code, student package or model differs refuses to start.
    """

    idempotent = False  # registering again (a new run) sets the worker up again

    def __init__(self, bundle: dict[str, bytes], warm: bool, settings: dict[str, str],
                 grader: str) -> None:
        self.bundle = bundle
        self.warm = warm
        self.settings = settings
        self.grader = grader

    def setup(self, worker) -> None:
        # run in the worker's main thread on purpose: the zygote dies with the thread
        # that started it (PR_SET_PDEATHSIG), and this thread lives as long as the worker
        from lmlogits_grader import execute, parallel, record

        try:
            parallel.stop_worker()  # a run before this one on the same worker
            _restore_environment()  # nothing of an earlier run's settings stays
            os.environ.update(self.settings)
            execute.sandbox_settings.cache_clear()
            here = record.grader_digest()
            if here != self.grader:
                raise RuntimeError(
                    f"worker {worker.address} has another grader (code, student package or "
                    f"model: {here[:12]} here, {self.grader[:12]} in the grading run): "
                    "install the same version of the course on every machine")
            parallel.start_worker(self.bundle,
                                  Path(worker.local_directory) / "lmlogits-course", self.warm)
        except BaseException:
            # a worker that cannot grade must not take submissions: it leaves the cluster
            # (Dask keeps a worker whose plugin failed when it joined later)
            loop = getattr(worker, "loop", None)
            if loop is not None:
                loop.add_callback(worker.close, nanny=True, reason="lmlogits-grader-setup")
            raise

    def teardown(self, worker) -> None:
        from lmlogits_grader import execute, parallel

        parallel.stop_worker()
        _restore_environment()
        execute.sandbox_settings.cache_clear()


_worker_environment: dict[str, str] | None = None  # this worker's own, before any run


def _restore_environment() -> None:
    """Put back the environment the worker had before the first grading run set it up."""
    global _worker_environment
    if _worker_environment is None:
        _worker_environment = dict(os.environ)
        return
    os.environ.clear()
    os.environ.update(_worker_environment)


def grading_settings() -> dict[str, str]:
    """The values of :data:`FORWARDED_SETTINGS` in this process."""
    return {name: os.environ[name] for name in FORWARDED_SETTINGS if name in os.environ}


def connect(address: str, bundle: dict[str, bytes], warm: bool) -> Client:
    """A client of the cluster at ``address`` whose workers are set up for grading.

    Raises:
        OSError: nothing answers at ``address`` within :data:`CONNECT_SECONDS`.
        RuntimeError: the cluster has no workers, or a worker could not be set up.
    """
    from lmlogits_grader import record

    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except OSError as error:
        raise OSError(f"no Dask scheduler answers at scheduler={address!r}: {error}") from error
    try:
        if worker_count(client) == 0:
            raise RuntimeError(f"the Dask cluster at {address!r} has no workers: start some "
                               f"with `dask worker {address} --nthreads 1`")
        plugin = GradingPlugin(bundle, warm, grading_settings(), record.grader_digest())
        client.register_plugin(plugin, name=PLUGIN_NAME)  # raises a worker's error
    except BaseException:
        client.close()
        raise
    return client


def worker_count(client: Client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


@contextlib.contextmanager
def local_cluster(folder: Path, workers: int = 2,
                  host: str = "127.0.0.1") -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A Dask cluster on this machine from Dask's own command line, as an instructor
    starts one: ``dask scheduler`` and ``workers`` separate ``dask worker`` processes
    (one thread each), logs in ``folder``. Yields the scheduler's address and the
    workers' processes (each the leader of its own process group); stops them all.
    """
    dask = str(Path(sys.executable).parent / "dask")
    folder.mkdir(parents=True, exist_ok=True)
    address_file = folder / "scheduler.json"
    address_file.unlink(missing_ok=True)
    started: list[subprocess.Popen] = []

    def start(name: str, *arguments: str) -> subprocess.Popen:
        with open(folder / f"{name}.log", "w") as log:
            process = subprocess.Popen([dask, *arguments], start_new_session=True,
                                       stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    try:
        start("scheduler", "scheduler", "--host", host, "--port", "0", "--no-dashboard",
              "--scheduler-file", str(address_file))
        deadline = time.monotonic() + 60
        address = None
        while address is None and time.monotonic() < deadline:
            if started[0].poll() is not None:
                break
            try:  # the scheduler may be writing the file right now
                address = json.loads(address_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        if address is None:
            raise RuntimeError(f"the Dask scheduler did not start: see {folder / 'scheduler.log'}")
        worker_processes = [
            start(f"worker-{index}", "worker", address, "--nthreads", "1", "--nworkers", "1",
                  "--no-dashboard", "--host", host,
                  "--local-directory", str(folder / f"worker-{index}"))
            for index in range(workers)
        ]
        if workers:
            with Client(address, timeout=CONNECT_SECONDS, set_as_default=False) as client:
                client.wait_for_workers(workers, timeout=120)
        yield address, worker_processes
    finally:
        for process in started:  # each with everything it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
