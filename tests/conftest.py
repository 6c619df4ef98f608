"""Shared fixtures: every test runs offline, on the built-in model unless it says otherwise."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kernel_users
import pytest

REPO = Path(__file__).resolve().parents[1]

# Set once, before anything imports huggingface_hub, and inherited by every notebook
# kernel and nbgrader run of the suite; tests that need other values use monkeypatch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# two pytest processes share two cores: torch's OpenMP threads in each (building the
# built-in model, the model tests) would only wait on each other; kernels and grading
# workers use one thread already (lmlogits_grader.execute, .parallel)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LMLOGITS_CACHE", str(REPO / ".cache" / "lmlogits"))
os.environ["LMLOGITS_MODEL"] = "tiny"  # the built-in model stands in for distilgpt2
# short limits keep the endless-loop submissions quick; normal cells take < 1 s here,
# and one call of the student's function on the built-in model a few milliseconds
os.environ["LMLOGITS_CELL_TIMEOUT"] = "5"
os.environ["LMLOGITS_CHECK_SECONDS"] = "2"
# pytest processes running side by side (make test: pytest-xdist) grade with kernel users
# of their own, and keep IPython's files (history, startup) in a folder of their own
kernel_users.claim_for_this_process()
if "IPYTHONDIR" not in os.environ:
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="lmlogits-tests-ipython-")
    atexit.register(shutil.rmtree, os.environ["IPYTHONDIR"], True)


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    """The built-in offline model and its tokenizer, built once per cache."""
    from lmlogits import load_model_and_tokenizer

    return load_model_and_tokenizer("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[0]


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_and_tokenizer):
    return tiny_model_and_tokenizer[1]


@pytest.fixture(scope="session", autouse=True)
def worker_bundles_once_per_course_content():
    """Grading runs in this process make each distinct course's worker bundle once
    (tests/courses.py); the bundle is still parallel.worker_bundle's own. Nothing to do
    where the grader is not installed (make test-pythons: lmlogits only)."""
    try:
        from lmlogits_grader import parallel
    except ImportError:
        yield
        return
    import courses

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(parallel, "worker_bundle",
                            courses.bundle_once_per_content(parallel.worker_bundle))
        yield


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the whole session (tests/postgres_server.py)."""
    import postgres_server

    reason = postgres_server.unavailable()
    if reason:
        pytest.skip(reason)
    with postgres_server.running_server() as url:
        yield url


@dataclass
class GradedClass:
    root: Path  # the course
    api: object  # its nbgrader API
    outcome: dict  # grade_in_parallel's {student: success}
    grades: dict  # course.cell_grades right after grading
    pages: Path  # a copy of the feedback folder as made, whatever tests do afterwards


# graded first: they wait for cell timeouts (or a dead kernel's), the others do not
WAIT_FOR_TIMEOUTS = ("infinite_loop", "kills_kernel")


@pytest.fixture(scope="session")
def every_kind_graded(tmp_path_factory):
    """A course with one student per kind of synthetic submission (named after it),
    autograded once per session by two parallel workers with warm kernels, with
    feedback: tests/test_autograde.py asserts every score on it, and the browser tests
    (tests/test_feedback_browser.py) render its pages, from ``pages``."""
    import courses

    from lmlogits_grader import course, parallel, submissions

    root = courses.generated_course(tmp_path_factory.mktemp("course"))
    api = course.api_for(root)
    for kind in submissions.KINDS:
        course.submit(root, kind, submissions.make_submission(kind))
    # the submissions that wait for timeouts go first: the other worker grades the rest
    # meanwhile, instead of idling at the end while one worker waits out a loop
    slowest_first = sorted(submissions.KINDS, key=lambda kind: kind not in WAIT_FOR_TIMEOUTS)
    # the endless loop waits out each cell's limit (six cells), then one probe's calls:
    # shorter limits for this class, still ten times what a cell (< 0.3 s) or a call of
    # the function (milliseconds) takes here with warm kernels
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LMLOGITS_CELL_TIMEOUT", "3")
        monkeypatch.setenv("LMLOGITS_CHECK_SECONDS", "1")
        outcome = parallel.grade_in_parallel(root, slowest_first, workers=2, progress=False)
    course.feedback(api, submissions.KINDS)
    pages = tmp_path_factory.mktemp("feedback-as-made")
    shutil.copytree(root / "feedback", pages, dirs_exist_ok=True)
    return GradedClass(root, api, outcome, course.cell_grades(root), pages)


# --- make test: two pytest processes (pytest-xdist) ------------------------------------
# Tests that share an expensive fixture run in the same process, as one group; the
# longest groups start first, so that neither process is left with a long one at the
# end. (pytest-xdist's own xdist_group marks do not reach its scheduler with pytest 9,
# so the groups are worked out from the test ids, and checked against the fixtures.)
LONGEST_FIRST = [
    "parallel-against-serial",  # test_parallel's serial_grades and its users
    "redteam-fresh", "redteam-warm",  # test_redteam's two batches
    "every-kind",  # every_kind_graded: test_autograde and test_feedback_browser
    "test_instructor_commands", "test_parallel", "test_record", "test_redteam",
    "test_solution_notebook",
]
AGAINST_SERIAL = {  # test_parallel's tests that compare with serial_grades
    "test_parallel_grades_with_fresh_kernels_equal_serial_grades",
    "test_killed_run_resumes_to_the_same_grades",
    "test_a_postgresql_gradebook_end_to_end", "test_a_dask_cluster_grades_as_serial_nbgrader",
    "test_a_killed_dask_worker_loses_and_duplicates_nothing",
}
# test_solution_notebook's tests that run a notebook of their own (not solution_run):
# groups of one, so that the last minute of the run is small pieces for both processes
# instead of one process running them one after the other while the other waits
ON_THEIR_OWN = {
    "test_the_global_check_cell_does_not_pass_an_unwritten_function",
    "test_untouched_student_copy_stops_at_the_first_blank",
    "test_nbgrader_validate_passes_on_the_solution",
    "test_nbgrader_validate_fails_on_the_untouched_student_copy",
    "test_solution_tables_match_distilgpt2_figures",
}
WITHOUT_BATCH = {  # test_redteam's tests that grade no batch
    "test_there_are_at_least_40_attacks", "test_the_page_check_finds_student_scripts",
    "test_files_left_behind_do_not_reach_the_next_submission",
    "test_both_kinds_of_kernel_give_student_code_the_same_python",
}


def group_of(nodeid: str) -> str:
    """The group of the test ``nodeid`` (``tests/test_x.py::test_y[params]``)."""
    path, _, rest = nodeid.partition("::")
    module = Path(path).stem
    name, _, params = rest.partition("[")
    if module == "test_redteam" and name not in WITHOUT_BATCH:
        tokens = params.rstrip("]").split("-")
        return "redteam-warm" if "warm" in tokens else "redteam-fresh"
    if module == "test_parallel" and name in AGAINST_SERIAL:
        return "parallel-against-serial"
    if module in ("test_autograde", "test_feedback_browser"):
        return "every-kind"
    if module == "test_solution_notebook" and name in ON_THEIR_OWN:
        return f"{module}::{name}"
    return module


def _group_by_fixtures(item) -> str:
    module = item.path.stem
    if module == "test_redteam" and "batch" in item.fixturenames:
        return f"redteam-{item.callspec.params['batch']}"
    if module == "test_parallel" and "serial_grades" in item.fixturenames:
        return "parallel-against-serial"
    if module in ("test_autograde", "test_feedback_browser"):
        return "every-kind"
    if module == "test_solution_notebook" and "solution_run" not in item.fixturenames:
        return f"{module}::{item.originalname}"
    return module


def pytest_collection_modifyitems(config, items):
    wrong = [f"{item.nodeid}: {group_of(item.nodeid)}, but its fixtures say "
             f"{_group_by_fixtures(item)}" for item in items
             if group_of(item.nodeid) != _group_by_fixtures(item)]
    if wrong:  # a new test: add it to AGAINST_SERIAL, WITHOUT_BATCH or ON_THEIR_OWN
        raise pytest.UsageError("tests/conftest.py puts tests in the wrong group:\n"
                                + "\n".join(wrong))
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler by scope, with our groups as the scopes, in our order."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order
    return GroupScheduling(config, log)
