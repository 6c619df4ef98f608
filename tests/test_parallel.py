"""Parallel grading gives serial nbgrader's grades, resumes after a kill, survives loops."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import courses
import kernel_users
import nbformat
import pytest

from lmlogits_grader import course, parallel, submissions

pytestmark = pytest.mark.autograde

# Graded serially by plain nbgrader once, then by each path and compared: full marks,
# partial marks decided by the judge, a kernel that dies, and the two repairs nbgrader's
# own steps make (a duplicated cell, a deleted test cell). Every other kind is scored
# against the rubric in tests/test_autograde.py.
CLASS = {
    "amy": "correct",
    "ben": "global_phrase",
    "cat": "kills_kernel",
    "dan": "duplicated_cells",
    "eve": "deleted_test_cell",
}


def _course_with(tmp_path_factory, name: str, students: dict[str, str],
                 db_url: str | None = None) -> Path:
    if db_url is None:
        root = courses.generated_course(tmp_path_factory.mktemp(name))
    else:  # as an instructor sets it: one line in the course's config, then generate
        root = course.new_course(tmp_path_factory.mktemp(name))
        with open(root / "nbgrader_config.py", "a") as config:
            config.write(f"\nc.CourseDirectory.db_url = {db_url!r}\n")
        course.generate(course.api_for(root))
    for student, kind in students.items():
        course.submit(root, student, submissions.make_submission(kind))
    return root


def _csv_without_timestamps(root: Path) -> list[dict[str, str]]:
    rows = course.read_csv(course.export_csv(root, root / "grades.csv"))
    return sorted(({k: v for k, v in row.items() if k != "timestamp"} for row in rows),
                  key=lambda row: row["student_id"])


@pytest.fixture(scope="module")
def serial_grades(tmp_path_factory):
    root = _course_with(tmp_path_factory, "serial", CLASS)
    assert course.autograde(course.api_for(root), CLASS, progress=False) == dict.fromkeys(
        CLASS, True
    )
    course.feedback(course.api_for(root), CLASS)
    return course.cell_grades(root), _csv_without_timestamps(root), root


def _shown_cells(root: Path, student: str) -> list:
    """What the feedback is made from: each cell's type, source and outputs (mime types
    and contents), without execution counts and ids."""
    nb = nbformat.read(root / "autograded" / student / course.ASSIGNMENT
                       / f"{course.ASSIGNMENT}.ipynb", as_version=4)
    shown = []
    for cell in nb.cells:
        outputs = [{k: v for k, v in output.items() if k not in ("execution_count", "metadata")}
                   for output in cell.get("outputs", [])]
        shown.append((cell.cell_type, cell.source, _without_random_ids(json.dumps(outputs))))
    return shown


def _without_random_ids(text: str) -> str:
    """pandas' Styler ids (``#T_97cd1_row0``) and object addresses differ on every run."""
    return re.sub(r"0x[0-9a-f]{6,}", "0x", re.sub(r"T_[0-9a-f]{5}_", "T_", text))


def _feedback_without_ids(root: Path, student: str) -> str:
    html = (root / "feedback" / student / course.ASSIGNMENT
            / f"{course.ASSIGNMENT}.html").read_text()
    html = re.sub(r"\d{4}-\d\d-\d\d[ T][\d:.]+", "<time>", html)  # timestamps
    # the prompt of a cell whose kernel died: numbered by one kernel, not by the other
    html = re.sub(r"In(?:\s|&nbsp;|&#160;)*\[(?:\s|&nbsp;|&#160;|\d)*\]:", "In [ ]:", html)
    return _without_random_ids(re.sub(r'id="[^"]*"', 'id=""', html))


def _assert_same_feedback(root: Path, serial_root: Path, students=tuple(CLASS)) -> None:
    """Feedback made from ``root``'s gradebook is serial nbgrader's, cell by cell, the
    bar chart included."""
    course.feedback(course.api_for(root), students)
    for student in students:
        assert _shown_cells(root, student) == _shown_cells(serial_root, student), student
        assert _feedback_without_ids(root, student) == _feedback_without_ids(
            serial_root, student), student
    plot = submissions._cell(nbformat.read(
        root / "autograded" / "amy" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.ipynb",
        as_version=4), "plot")
    assert any("image/png" in output.get("data", {}) for output in plot.outputs)


# The part of the class whose grading depends on the kind of kernel: full marks, the
# global-variable checks (run in the kernel) and a kernel that dies. The other three
# are decided by nbgrader's and the judge's steps in the grader's processes, the same
# code whatever the kernel: the warm-kernel tests below compare them with serial nbgrader.
FRESH_CLASS = {student: CLASS[student] for student in ("amy", "ben", "cat")}


def test_parallel_grades_with_fresh_kernels_equal_serial_grades(tmp_path_factory,
                                                                serial_grades):
    # warm kernels: test_killed_run_resumes_to_the_same_grades (all of it graded with
    # warm kernels, in two runs of one worker), the PostgreSQL and Dask tests
    assert FRESH_CLASS == {"amy": "correct", "ben": "global_phrase", "cat": "kills_kernel"}
    root = _course_with(tmp_path_factory, "parallel", FRESH_CLASS)
    outcome = parallel.grade_in_parallel(
        root, list(FRESH_CLASS), workers=2, progress=False, warm=False
    )
    assert outcome == dict.fromkeys(FRESH_CLASS, True)
    assert course.cell_grades(root) == {s: serial_grades[0][s] for s in FRESH_CLASS}
    assert _csv_without_timestamps(root) == [
        row for row in serial_grades[1] if row["student_id"] in FRESH_CLASS]
    # the rubric still holds, so the comparison is not between two wrong answers
    assert sum(g.score for g in course.cell_grades(root)["amy"].values()) == 17
    _assert_same_feedback(root, serial_grades[2], tuple(FRESH_CLASS))


def test_killed_run_resumes_to_the_same_grades(tmp_path_factory, serial_grades):
    root = _course_with(tmp_path_factory, "killed", CLASS)
    # one worker, one zygote: killing two workers mid-run is the Dask test's
    command = [sys.executable, "-m", "lmlogits_grader.parallel", "--course", str(root),
               "--workers", "1"]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    journal = root / "autograded" / parallel.JOURNAL
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run: main, workers, kernels
    process.wait()
    recorded_before = parallel.recorded_students(root)
    assert 2 <= len(recorded_before) < len(CLASS)
    assert "amy" in recorded_before  # graded first

    # meanwhile amy hands in a new version: the resumed run (one worker again, in this
    # process) grades the students the killed run did not record, and amy again
    course.submit(root, "amy", submissions.make_submission("ignores_k"))
    outcome = parallel.grade_in_parallel(root, list(CLASS), workers=1, progress=False)
    assert set(outcome) == set(CLASS) - recorded_before | {"amy"}  # no other regraded
    assert all(outcome.values())
    grades = course.cell_grades(root)
    assert grades["amy"]["test_returns_k_rows"].score == 0  # her new version's grade
    others = [student for student in CLASS if student != "amy"]
    assert {s: grades[s] for s in others} == {s: serial_grades[0][s] for s in others}
    assert [row for row in _csv_without_timestamps(root) if row["student_id"] != "amy"] == [
        row for row in serial_grades[1] if row["student_id"] != "amy"]
    _assert_same_feedback(root, serial_grades[2], tuple(others))


def _kernel_processes() -> list[int]:
    """Processes running as one of this test process's sandboxed-kernel users
    (tests/kernel_users.py)."""
    mine = kernel_users.mine()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid in mine:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("cold", [False, True], ids=["warm-kernels", "fresh-kernels"])
def test_no_kernel_outlives_a_killed_grading_process(tmp_path_factory, cold):
    if os.geteuid() != 0:
        pytest.skip("kernels run as users of their own only when grading as root")
    assert not _kernel_processes(), "kernels left over from an earlier test"
    root = _course_with(tmp_path_factory, "main-killed", {"loop": "infinite_loop"})
    command = [sys.executable, "-m", "lmlogits_grader.parallel", "--course", str(root),
               "--workers", "1", *(["--cold"] if cold else [])]
    # only the main process is killed (as `kill <pid>` or an out-of-memory kill would):
    # its workers, their launchers, zygotes and kernels must stop by themselves
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _kernel_processes() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert _kernel_processes(), "no kernel started"
    time.sleep(1)  # the kernel is running the notebook (a warm one: the endless loop)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while _kernel_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _kernel_processes()
    for pid in left:  # bounded: never leave them running
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _from_a_local_worker(root: Path, function, *arguments):
    """``function(*arguments)`` run in a local grading worker (fresh kernels: no zygote)."""
    with parallel._local_pool(root, parallel.worker_bundle(root), 1, warm=False) as pool:
        return pool.submit(function, *arguments).result(timeout=300)


def test_local_workers_are_forked_with_the_environment_of_the_moment(tmp_path_factory,
                                                                     monkeypatch):
    root = _course_with(tmp_path_factory, "environment", {})
    parent = _from_a_local_worker(root, os.getppid)
    # forked from the forkserver that imported the grader once, not this process
    assert parent != os.getpid()
    command = Path(f"/proc/{parent}/cmdline").read_bytes().decode()
    assert "multiprocessing.forkserver" in command and parallel.PRELOAD in command
    # the forkserver is running now: each run's workers still see its environment
    for value in ("first", "second"):
        monkeypatch.setenv("LMLOGITS_TEST_MARK", value)
        assert _from_a_local_worker(root, os.getenv, "LMLOGITS_TEST_MARK") == value
    monkeypatch.delenv("LMLOGITS_TEST_MARK")
    assert _from_a_local_worker(root, os.getenv, "LMLOGITS_TEST_MARK") is None


def test_a_setting_read_at_import_that_changed_gets_spawned_workers(monkeypatch):
    parallel._worker_context()  # the forkserver's environment is known from here on
    assert parallel._worker_context().get_start_method() == "forkserver"
    # huggingface_hub reads its cache folder when imported: the forkserver's is stale
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/else")
    assert parallel._worker_context().get_start_method() == "spawn"
    monkeypatch.undo()
    assert parallel._worker_context().get_start_method() == "forkserver"


def test_what_torch_writes_into_the_environment_keeps_forked_workers(monkeypatch, tmp_path):
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where torch makes its folder
    monkeypatch.setattr(parallel, "_forkserver_environment", None)
    assert parallel._worker_context().get_start_method() == "forkserver"
    # loading some models asks torch for its compile cache, and torch then writes its
    # default folder into os.environ: the user changed no setting
    cache_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))
    assert parallel._worker_context().get_start_method() == "forkserver"


def test_a_postgresql_gradebook_end_to_end(tmp_path_factory, serial_grades, postgres_url):
    from lmlogits_grader import grade_folder, record

    root = _course_with(tmp_path_factory, "postgres", CLASS, db_url=postgres_url)
    # one worker: grades are recorded by this process whatever the number of workers
    outcome = parallel.grade_in_parallel(root, list(CLASS), workers=1, progress=False)
    assert outcome == dict.fromkeys(CLASS, True)
    assert not (root / "gradebook.db").exists()  # every grade went to the server
    assert course.cell_grades(root) == serial_grades[0]
    assert _csv_without_timestamps(root) == serial_grades[1]
    # a person grades Q1 (as formgrader does, through nbgrader's API), then exports
    with record.open_gradebook(root) as gradebook:
        grade = gradebook.find_grade("q1", course.ASSIGNMENT, course.ASSIGNMENT, "amy")
        grade.manual_score = 2
        grade.needs_manual_grade = False
        gradebook.db.commit()
    assert grade_folder.main(["--export-only", "--course", str(root)]) == 0
    rows = {row["student_id"]: row for row in course.read_csv(root / "grades.csv")}
    assert float(rows["amy"]["score"]) == 19
    per_cell = {row["student_id"]: row for row in course.read_csv(root / "grades-per-cell.csv")}
    assert float(per_cell["amy"]["q1"]) == 2
    html = (root / "feedback" / "amy" / course.ASSIGNMENT / f"{course.ASSIGNMENT}.html")
    assert "19 of the 19 points graded so far; 4 points awaiting grading" in html.read_text()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A Dask cluster on 127.0.0.1 from Dask's own command line: one scheduler and two
    worker processes, stopped after the module's tests (lmlogits_grader.cluster.
    local_cluster). Each grading run sets its workers up afresh (GradingPlugin); the
    test that kills a worker comes last."""
    from lmlogits_grader import cluster

    folder = tmp_path_factory.mktemp("cluster")
    with cluster.local_cluster(folder, workers=2) as (address, workers):
        yield address, workers


def test_a_dask_cluster_grades_as_serial_nbgrader(tmp_path_factory, serial_grades, dask_cluster):
    address, _ = dask_cluster
    root = _course_with(tmp_path_factory, "dask", CLASS)
    outcome = parallel.grade_in_parallel(root, list(CLASS), progress=False, scheduler=address)
    assert outcome == dict.fromkeys(CLASS, True)
    assert course.cell_grades(root) == serial_grades[0]
    assert _csv_without_timestamps(root) == serial_grades[1]
    assert sum(g.score for g in course.cell_grades(root)["amy"].values()) == 17
    course.feedback(course.api_for(root), CLASS)
    for student in CLASS:
        assert _shown_cells(root, student) == _shown_cells(serial_grades[2], student), student


def test_a_killed_dask_worker_loses_and_duplicates_nothing(tmp_path_factory, serial_grades,
                                                          dask_cluster):
    address, workers = dask_cluster
    root = _course_with(tmp_path_factory, "dask-killed", CLASS)
    command = [sys.executable, "-m", "lmlogits_grader.parallel", "--course", str(root),
               "--scheduler", address]
    run = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    journal = root / "autograded" / parallel.JOURNAL
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            if journal.exists() and journal.read_text().strip():
                break
            time.sleep(0.1)
        assert run.poll() is None, run.communicate()[1][-3000:]
        # one worker, with its nanny, zygote and kernels, gone at once mid-run (as a
        # machine lost): its submissions in flight must be graded by the other
        os.killpg(workers[0].pid, signal.SIGKILL)
        recorded_at_kill = len(journal.read_text().splitlines())
        _, errors = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 0, errors
    assert 1 <= recorded_at_kill < len(CLASS)
    lines = [line.split(" ")[0] for line in journal.read_text().splitlines()]
    assert sorted(lines) == sorted(CLASS)  # each student recorded exactly once
    assert course.cell_grades(root) == serial_grades[0]
    assert _csv_without_timestamps(root) == serial_grades[1]


def test_a_dask_cluster_without_workers_is_a_clear_error(tmp_path_factory, tmp_path):
    from lmlogits_grader import cluster

    root = _course_with(tmp_path_factory, "no-workers", {"amy": "correct"})
    with cluster.local_cluster(tmp_path / "cluster", workers=0) as (address, _), \
            pytest.raises(RuntimeError, match=r"the Dask cluster at .* has no workers: start"):
        parallel.grade_in_parallel(root, ["amy"], progress=False, scheduler=address)
    assert parallel.recorded_students(root) == set()


def test_a_worker_with_another_grader_refuses_to_start(tmp_path):
    from types import SimpleNamespace

    from lmlogits_grader import cluster

    plugin = cluster.GradingPlugin({}, warm=False, settings={}, grader="0" * 64)
    worker = SimpleNamespace(address="tcp://10.0.0.7:4000", local_directory=str(tmp_path))
    with pytest.raises(RuntimeError, match=r"worker tcp://10.0.0.7:4000 has another grader"):
        plugin.setup(worker)
    assert not (tmp_path / "lmlogits-course").exists()


def test_no_dask_scheduler_at_the_address_is_a_clear_error(tmp_path_factory, monkeypatch):
    from lmlogits_grader import cluster

    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 2)
    root = _course_with(tmp_path_factory, "no-scheduler", {"amy": "correct"})
    with pytest.raises(OSError, match=r"no Dask scheduler answers at scheduler='tcp://127"):
        parallel.grade_in_parallel(root, ["amy"], progress=False,
                                   scheduler="tcp://127.0.0.1:9")
    assert parallel.recorded_students(root) == set()


@pytest.mark.parametrize("given, environment, expected", [
    (None, None, None),
    (None, "tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("tcp://127.0.0.1:8786", "tcp://10.0.0.5:8786", "tcp://127.0.0.1:8786"),
    ("  ", None, None),
])
def test_the_scheduler_comes_from_the_option_or_the_environment(monkeypatch, given,
                                                                environment, expected):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    if environment:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", environment)
    assert parallel.scheduler_address(given) == expected


def test_a_scheduler_that_is_not_an_address_is_refused(monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "localhost")
    with pytest.raises(ValueError, match=r"DASK_SCHEDULER_ADDRESS must be an address like "
                       r"tcp://host:8786, got 'localhost'"):
        parallel.scheduler_address(None)
    with pytest.raises(ValueError, match=r"`--scheduler` must be .* got 'cluster'"):
        parallel.scheduler_address("cluster")


@pytest.mark.parametrize("value", ["7", "0-5", "10-3", "a-b", "1-100"])
def test_a_bad_slot_range_is_refused_by_name(tmp_path, monkeypatch, value):
    monkeypatch.setenv("LMLOGITS_SLOTS", value)
    with pytest.raises(ValueError, match=f"LMLOGITS_SLOTS .*got {re.escape(repr(value))}"):
        parallel.grade_in_parallel(tmp_path, ["amy"], workers=1)


def test_workers_take_their_slot_from_the_given_range():
    code = "from lmlogits_grader import sandbox; print(sandbox.claim_slot())"
    env = {**os.environ, "LMLOGITS_SLOTS": "97-97"}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True)
    assert first.stdout.strip() == "97"


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2", True])
def test_bad_worker_counts_are_rejected(tmp_path, workers):
    with pytest.raises(ValueError, match=r"`workers` must be a positive integer, got"):
        parallel.grade_in_parallel(tmp_path, ["x"], workers=workers)


def test_csv_helper_reads_what_nbgrader_writes(tmp_path):
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["student_id", "score"], ["amy", "17.0"]])
    assert course.read_csv(path) == [{"student_id": "amy", "score": "17.0"}]
