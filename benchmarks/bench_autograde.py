"""Benchmark: grading a class with plain serial nbgrader vs this project's parallel grading.

Prints three tables, every figure measured in this one run on this machine:

1. throughput on a synthetic class (mixed correct and broken submissions, built-in
   offline model): plain serial ``nbgrader autograde`` vs parallel grading with 1, 2
   and N workers (warm kernels), and N workers with fresh kernels; grades compared
   with the serial run's;
2. one submission's cost, phase by phase (kernel start, imports, model load, student
   cells, test cells, gradebook write), with a fresh kernel and with a warm one, against
   the floor: a bare Python process that imports torch and transformers, loads the same
   model and runs one forward pass;
3. peak memory (resident set size) per worker and in total.

Usage: ``make bench`` or ``python benchmarks/bench_autograde.py [--students 24]``.
"""

from __future__ import annotations

import argparse
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

import nbformat  # noqa: E402
import psutil  # noqa: E402

from lmlogits_grader import course, parallel, submissions  # noqa: E402

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


def phase_costs(executed: Path, kernel_name: str, cwd: Path) -> dict[str, float]:
    """Run an autograded notebook cell by cell and time each phase."""
    from nbclient import NotebookClient

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = NotebookClient(nb, timeout=120, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd)}})
    phases = dict.fromkeys(["kernel start", "imports", "model load", "student cells",
                            "test cells"], 0.0)
    start = time.perf_counter()
    with client.setup_kernel():
        phases["kernel start"] = time.perf_counter() - start
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            began = time.perf_counter()
            client.execute_cell(cell, index)
            spent = time.perf_counter() - began
            if grade_id == "setup":
                phases["imports"] += spent
            elif grade_id == "load_model":
                phases["model load"] += spent
            elif cell.metadata.get("nbgrader", {}).get("grade"):
                phases["test cells"] += spent
            else:
                phases["student cells"] += spent
    phases["kernel shutdown"] = time.perf_counter() - start - sum(phases.values())
    return phases


def gradebook_write_seconds(root: Path, student: str) -> float:
    """Record one already-executed submission into the gradebook (no execution)."""
    api = parallel._record_api(root)
    executed = root / "autograded" / student / course.ASSIGNMENT
    copy = Path(tempfile.mkdtemp()) / course.ASSIGNMENT
    shutil.copytree(executed, copy)
    start = time.perf_counter()
    parallel._record(api, root, student, copy, course.ASSIGNMENT)
    return time.perf_counter() - start


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

    serial_root = new_graded_course(base, "serial", students)
    serial_seconds, serial_memory = run_serial(serial_root)
    reference = course.cell_grades(serial_root)

    runs = [("plain nbgrader autograde (serial)", serial_seconds, serial_memory, True)]
    settings = [(1, True), (2, True), (args.workers, True), (args.workers, False)]
    seen = set()
    for workers, warm in settings:
        if (workers, warm) in seen:
            continue
        seen.add((workers, warm))
        root = new_graded_course(base, f"w{workers}-{warm}", students)
        seconds, memory = run_parallel(root, names, workers, warm)
        label = f"parallel, {workers} worker{'s' * (workers > 1)}, " + (
            "warm kernels" if warm else "fresh kernels")
        runs.append((label, seconds, memory, course.cell_grades(root) == reference))

    print("\n1. Throughput")
    print(f"{'run':<44} {'seconds':>8} {'subm/min':>9} {'vs serial':>10} {'grades':>10}")
    for label, seconds, _, same in runs:
        print(f"{label:<44} {seconds:>8.1f} {len(names) / seconds * 60:>9.1f} "
              f"{serial_seconds / seconds:>9.2f}x {'identical' if same else 'DIFFER':>10}")

    # 2. one correct submission, phase by phase
    student = next(s for s, k in students.items() if k == "correct")
    executed = serial_root / "autograded" / student / course.ASSIGNMENT / (
        f"{course.ASSIGNMENT}.ipynb")
    from lmlogits import resolve_model
    from lmlogits_grader import warm_kernel

    floor = floor_seconds(resolve_model())
    cold = phase_costs(executed, "python3", executed.parent)
    socket_dir = Path(tempfile.mkdtemp(prefix="lmlogits-"))
    zygote = warm_kernel.start_zygote(socket_dir / "zygote.sock")
    warm_kernel.install_kernelspec(socket_dir / "jupyter", socket_dir / "zygote.sock")
    os.environ["JUPYTER_PATH"] = str(socket_dir / "jupyter")
    try:
        warm = phase_costs(executed, warm_kernel.KERNEL_NAME, executed.parent)
    finally:
        zygote.terminate()
    write = gradebook_write_seconds(serial_root, student)
    cold["gradebook write"] = warm["gradebook write"] = write
    print("\n2. One submission, phase by phase (seconds)")
    print(f"{'phase':<18} {'fresh kernel':>13} {'warm kernel':>12}")
    for phase in cold:
        print(f"{phase:<18} {cold[phase]:>13.2f} {warm[phase]:>12.2f}")
    total_cold, total_warm = sum(cold.values()), sum(warm.values())
    print(f"{'total':<18} {total_cold:>13.2f} {total_warm:>12.2f}")
    print(f"{'floor':<18} {floor:>13.2f} {floor:>12.2f}   (python: import torch + "
          "transformers, load model, one forward pass)")
    print(f"{'total / floor':<18} {total_cold / floor:>12.2f}x {total_warm / floor:>11.2f}x")
    per_submission = {label: seconds / len(names) for label, seconds, _, _ in runs}
    print("wall time per submission in the class runs (seconds): " + "; ".join(
        f"{label}: {value:.2f}" for label, value in per_submission.items()))

    print("\n3. Peak memory (resident, process trees)")
    print(f"{'run':<44} {'per worker':>12} {'total':>10}")
    for label, _, memory, _ in runs:
        worker_peak = max(memory.per_worker.values(), default=0)
        print(f"{label:<44} {mb(worker_peak):>12} {mb(memory.total):>10}")
    shutil.rmtree(base, ignore_errors=True)
    return 0 if all(same for *_, same in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
