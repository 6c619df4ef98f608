"""Shared fixtures: every test runs offline, on the built-in model unless it says otherwise."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Set once, before anything imports huggingface_hub, and inherited by every notebook
# kernel and nbgrader run of the suite; tests that need other values use monkeypatch.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LMLOGITS_CACHE", str(REPO / ".cache" / "lmlogits"))
os.environ["LMLOGITS_MODEL"] = "tiny"  # the built-in model stands in for distilgpt2
# short limits keep the endless-loop submissions quick; normal cells take < 1 s here,
# and one call of the student's function on the built-in model a few milliseconds
os.environ["LMLOGITS_CELL_TIMEOUT"] = "5"
os.environ["LMLOGITS_CHECK_SECONDS"] = "2"


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
