"""Benchmark: a large class on the local pool and on a Dask cluster, and what more
workers would give.

One run, one machine, every figure measured here:

1. a synthetic class of ``--students`` submissions (default 200: half correct, half
   cycling through the broken kinds, built-in offline model) graded (a) by the local
   pool of ``--workers`` warm workers and (b) by a Dask cluster started on this machine
   from Dask's command line (one scheduler and ``--workers`` worker processes on
   127.0.0.1); the two gradebooks are compared cell by cell;
2. where each run's time went: worker set-up, the workers' autograde time per
   submission, and the main process's serial work per submission (sending, recording,
   the journal: the part no number of workers shares);
3. a projection, not a measurement: by Amdahl's law, with the serial fraction ``f`` of
   one submission's work measured in (1), the speed-up over one worker is
   ``1 / (f + (1 - f) / n)`` for n workers, at 16 and 64 workers.

Usage: ``make bench-scale`` or ``python benchmarks/bench_scale.py [--students 200]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LMLOGITS_MODEL", "tiny")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_autograde import new_graded_course, synthetic_class  # noqa: E402

from lmlogits_grader import cluster, course, parallel  # noqa: E402

PROJECTED_WORKERS = (16, 64)


def amdahl(serial_fraction: float, workers: int) -> float:
    """The speed-up over one worker of ``workers`` workers (Amdahl's law)."""
    return 1 / (serial_fraction + (1 - serial_fraction) / workers)


def grade(root: Path, students: list[str], workers: int, scheduler: str | None = None):
    phases: dict[str, float] = {}
    outcome = parallel.grade_in_parallel(root, students, workers=workers, progress=False,
                                         scheduler=scheduler, phases=phases)
    assert outcome == dict.fromkeys(students, True), outcome
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.students < 1 or args.workers < 1:
        parser.error(f"--students and --workers must be positive, got {args.students} and "
                     f"{args.workers}")
    students = synthetic_class(args.students)
    names = list(students)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"model {os.environ['LMLOGITS_MODEL']!r}, {args.students} submissions, "
          f"{args.workers} workers, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory(prefix="lmlogits-bench-scale-") as scratch:
        base = Path(scratch)
        local_root = new_graded_course(base, "local", students)
        dask_root = new_graded_course(base, "dask", students)
        runs = {"local pool": grade(local_root, names, args.workers)}
        with cluster.local_cluster(base / "cluster", args.workers) as (address, _):
            runs["Dask cluster (dask CLI, 127.0.0.1)"] = grade(dask_root, names, args.workers,
                                                               scheduler=address)
        same = course.cell_grades(local_root) == course.cell_grades(dask_root)

    n = args.students
    local = runs["local pool"]
    print("\n1. Throughput (wall time: worker set-up included)")
    print(f"{'run':<38} {'workers':>7} {'seconds':>8} {'subm/min':>9} {'vs local':>9}")
    for label, phases in runs.items():
        print(f"{label:<38} {phases['workers']:>7.0f} {phases['wall']:>8.1f} "
              f"{n / phases['wall'] * 60:>9.1f} {local['wall'] / phases['wall']:>8.2f}x")
    print(f"grades: Dask's gradebook {'equals' if same else 'DIFFERS FROM'} the local "
          "pool's, cell by cell")

    print("\n2. Where the time went (seconds)")
    print(f"{'run':<38} {'set-up':>7} {'worker/subm':>12} {'serial/subm':>12} "
          f"{'cpu/subm':>9} {'f wall':>7} {'f cpu':>7}")
    fractions = {}
    for label, phases in runs.items():
        worker = phases["execute"] / n
        serial = (phases["submit"] + phases["record"]) / n
        serial_cpu = phases["serial cpu"] / n
        fractions[label] = (serial / (serial + worker), serial_cpu / (serial_cpu + worker))
        print(f"{label:<38} {phases['setup']:>7.1f} {worker:>12.3f} {serial:>12.4f} "
              f"{serial_cpu:>9.4f} {fractions[label][0]:>7.4f} {fractions[label][1]:>7.4f}")
    print("serial/subm: the main process's time per submission (sending it, recording it, "
          "the journal),\nwall clock, sharing the cores with the workers; cpu/subm: its CPU "
          "time, what it costs on a core of its own;\nf = serial / (serial + worker): the "
          "serial fraction of one submission's work")

    print("\n3. Projection (Amdahl's law from f above; not measured)")
    print(f"{'run':<38}" + "".join(f"{f'{w} workers':>22}" for w in PROJECTED_WORKERS))
    for label, phases in runs.items():
        for measure, f in zip(("wall", "cpu"), fractions[label], strict=True):
            single = 60 / (phases["execute"] / n / (1 - f))  # one worker's rate, with f
            speedups = [amdahl(f, w) for w in PROJECTED_WORKERS]
            cells = "".join(f" {x:>7.1f}x {x * single:>8.0f}/min" for x in speedups)
            print(f"{label.split(' (')[0] + ', f from ' + measure:<38}{cells}")
    print("x: speed-up over one worker; /min: submissions per minute, from one worker's "
          "measured rate")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
