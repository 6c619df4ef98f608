"""Benchmark: grading a class with plain serial nbgrader vs this project's parallel grading.

Prints three tables, every figure measured in this one run on this machine:

1. throughput on a synthetic class (mixed correct and broken submissions, built-in
   offline model): plain serial ``nbgrader autograde`` (the course's config: sandboxed
   fresh kernels, the judge) vs parallel grading with 1 and 2 warm workers, 2 warm
   workers without the sandbox, and N workers with fresh kernels; grades compared
   with the serial run's;
2. one submission's cost, phase by phase (kernel start, the notebook's cells, the
   grader's probes, kernel shutdown, the judge, the gradebook write), taken from the
   runs above, against the floor: a bare Python process that imports torch and
   transformers, loads the same model and runs one forward pass; then the sandbox's
   cost per submission (sandboxed vs unsandboxed warm workers) and the cost of
   verdicts outside the kernel (probes + judge);
3. peak memory (resident set size) per worker and in total.

Usage: ``make bench`` or ``python benchmarks/bench_autograde.py [--students 24]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LMLOGITS_MODEL", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402

from lmlogits_grader import (  # noqa: E402
    course,
    execute,
    parallel,
    record,
    sandbox,
    submissions,
)

# every kind of submission but the endless loop, whose cost is the timeout chosen
KINDS = [kind for kind in submissions.KINDS if kind != "infinite_loop"]


def synthetic_class(size: int) -> dict[str, str]:
    """Half correct, half cycling through the broken kinds."""
    broken = [kind for kind in KINDS if kind not in ("correct", "alternative", "warns")]
    students = {}
    for i in range(size):
        kind = "correct" if i % 2 == 0 else broken[(i // 2) % len(broken)]
        students[f"student{i:03d}"] = kind
    return students


def new_graded_course(base: Path, name: str, students: dict[str, str]) -> Path:
    root = course.new_course(base / name)
    course.generate(course.api_for(root))
    for student, kind in students.items():
        course.submit(root, student, submissions.make_submission(kind))
    return root


class PeakMemory:
    """Samples the resident memory of this process's descendants every 50 ms."""

    def __init__(self) -> None:
        self.total = 0
        self.per_worker: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            try:
                children = me.children()
            except psutil.Error:
                children = []
            for child in children:
                try:
                    tree = [child, *child.children(recursive=True)]
                    rss = sum(p.memory_info().rss for p in tree if p.is_running())
                except psutil.Error:
                    continue
                total += rss
                self.per_worker[child.pid] = max(self.per_worker.get(child.pid, 0), rss)
            self.total = max(self.total, total)
            time.sleep(0.05)


def run_serial(root: Path) -> tuple[float, PeakMemory]:
    """Plain ``nbgrader autograde <assignment>``: every submission, one process."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    with PeakMemory() as memory:
        subprocess.run(
            [str(nbgrader), "autograde", course.ASSIGNMENT, "--log-level=ERROR"],
            cwd=root, env=env, check=False, stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - start, memory


def run_parallel(root: Path, students: list[str], workers: int, warm: bool):
    start = time.perf_counter()
    with PeakMemory() as memory:
        outcome = parallel.grade_in_parallel(
            root, students, workers=workers, progress=False, warm=warm
        )
    assert all(outcome.values()), outcome
    return time.perf_counter() - start, memory


def floor_seconds(model_folder: str) -> float:
    code = (
        "import torch, transformers\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"t = AutoTokenizer.from_pretrained({model_folder!r}, add_prefix_space=True)\n"
        f"m = AutoModelForCausalLM.from_pretrained({model_folder!r}).eval()\n"
        "with torch.no_grad():\n"
        "    m(**t('This weekend I plan to', return_tensors='pt'))\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def gradebook_write_seconds(root: Path, student: str) -> float:
    """Record one already-executed submission into the gradebook again (no execution),
    as the main process does for each submission; the mean of 5 records."""
    executed = root / "autograded" / student / course.ASSIGNMENT
    copy = Path(tempfile.mkdtemp()) / course.ASSIGNMENT
    shutil.copytree(executed, copy)
    with record.Recorder(root, course.ASSIGNMENT) as recorder:
        start = time.perf_counter()
        for _ in range(5):
            recorder.record(student, copy)
        return (time.perf_counter() - start) / 5


def mean_phases(path: Path) -> dict[str, float]:
    """Mean seconds per submission of each phase in a timings file (see execute.py)."""
    totals: dict[str, list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        for phase, seconds in json.loads(line).items():
            if isinstance(seconds, (int, float)):  # not the student's name
                totals.setdefault(phase, []).append(seconds)
    return {phase: sum(v) / len(v) for phase, v in totals.items()}


def mb(value: int) -> str:
    return f"{value / 2**20:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("LMLOGITS_CELL_TIMEOUT", "30")
    students = synthetic_class(args.students)
    names = list(students)
    base = Path(tempfile.mkdtemp(prefix="lmlogits-bench-"))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"model {os.environ['LMLOGITS_MODEL']}, class of {len(students)} "
          f"({sum(k == 'correct' for k in students.values())} correct, the rest broken)")

    def timed(name: str, run):
        """Run with a timings file of its own; return the run's result and its phases."""
        path = base / f"{name}.timings"
        os.environ[execute.TIMINGS_ENV] = str(path)
        try:
            return run(), mean_phases(path)
        finally:
            del os.environ[execute.TIMINGS_ENV]

    serial_root = new_graded_course(base, "serial", students)
    (serial_seconds, serial_memory), serial_phases = timed(
        "serial", lambda: run_serial(serial_root))
    reference = course.cell_grades(serial_root)

    runs = [("plain nbgrader autograde (serial)", serial_seconds, serial_memory, True)]
    phases = {"serial, fresh kernels": serial_phases}
    settings = [(1, True, True), (2, True, True), (2, True, False), (args.workers, False, True)]
    wall = {}
    for workers, warm, sandboxed in dict.fromkeys(settings):
        name = f"w{workers}-{'warm' if warm else 'fresh'}-{'sandbox' if sandboxed else 'none'}"
        root = new_graded_course(base, name, students)
        if not sandboxed:
            sandbox.disable()
        try:
            (seconds, memory), run_phases = timed(
                name, lambda root=root, w=workers, warm=warm: run_parallel(root, names, w, warm))
        finally:
            os.environ.pop(sandbox.MODE_ENV, None)
        label = f"parallel, {workers} worker{'s' * (workers > 1)}, " + (
            "warm kernels" if warm else "fresh kernels") + ("" if sandboxed else ", NO sandbox")
        runs.append((label, seconds, memory, course.cell_grades(root) == reference))
        phases[label.replace("parallel, ", "")] = run_phases
        wall[(workers, warm, sandboxed)] = seconds

    print("\n1. Throughput")
    print(f"{'run':<52} {'seconds':>8} {'subm/min':>9} {'vs serial':>10} {'grades':>10}")
    for label, seconds, _, same in runs:
        print(f"{label:<52} {seconds:>8.1f} {len(names) / seconds * 60:>9.1f} "
              f"{serial_seconds / seconds:>9.2f}x {'identical' if same else 'DIFFER':>10}")

    student = next(s for s, k in students.items() if k == "correct")
    write = gradebook_write_seconds(serial_root, student)
    from lmlogits import resolve_model

    floor = floor_seconds(resolve_model())
    shown = ["kernel start", "notebook cells", "probes", "kernel shutdown", "judge"]
    print("\n2. Per submission, phase by phase (mean seconds, from the runs above)")
    print(f"{'phase':<20}" + "".join(f"{label[:24]:>26}" for label in phases))
    for phase in shown:
        print(f"{phase:<20}" + "".join(f"{p.get(phase, 0):>26.2f}" for p in phases.values()))
    print(f"{'gradebook write':<20}" + "".join(f"{write:>26.2f}" for _ in phases))
    totals = {label: sum(p.get(x, 0) for x in shown) + write for label, p in phases.items()}
    print(f"{'total':<20}" + "".join(f"{t:>26.2f}" for t in totals.values()))
    print(f"{'total / floor':<20}" + "".join(f"{t / floor:>25.2f}x" for t in totals.values()))
    print(f"floor: {floor:.2f} s (python: import torch + transformers, load the model, "
          "one forward pass)")
    sandboxed, unsandboxed = wall[(2, True, True)], wall[(2, True, False)]
    cost = (sandboxed - unsandboxed) / len(names) * 2
    warm_phases = phases["2 workers, warm kernels"]
    print("\nSandbox cost, 2 warm workers, one run: "
          f"{sandboxed:.1f} s sandboxed vs {unsandboxed:.1f} s unsandboxed for {len(names)} "
          f"submissions = {cost:+.2f} s per submission per worker")
    print("nbgrader's autograde in a worker, all steps, per submission: "
          f"{warm_phases.get('worker autograde', 0):.2f} s (the phases above and nbgrader's "
          "own work: copying, sanitizing, its gradebook copy)")
    print("Verdicts outside the kernel, per submission: probes "
          f"{warm_phases.get('probes', 0):.2f} s (in the kernel) + judge "
          f"{warm_phases.get('judge', 0):.2f} s (grader process); grader model load "
          f"{warm_phases.get('model load (once)', 0):.2f} s once per process")

    print("\n3. Peak memory (resident, process trees)")
    print(f"{'run':<52} {'per worker':>12} {'total':>10}")
    for label, _, memory, _ in runs:
        worker_peak = max(memory.per_worker.values(), default=0)
        print(f"{label:<52} {mb(worker_peak):>12} {mb(memory.total):>10}")
    shutil.rmtree(base, ignore_errors=True)
    return 0 if all(same for *_, same in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
