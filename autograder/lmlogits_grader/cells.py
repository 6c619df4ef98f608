"""What a hidden test cell calls: one check, run fresh, quiet and time-limited.

A test cell reads::

    import runpy

    run_check = runpy.run_module("lmlogits_grader.cells")["run_check"]
    verdict = run_check("matches_reference", predict_next_tokens)
    assert verdict.passed, verdict.message

- fresh: this module and the checks are executed anew from their files for every test
  cell, so a submission that redefined or patched ``check_global_vars``, these helpers
  or ``importlib.reload`` gains nothing. (Code written to attack the grader from inside
  the same process, e.g. by replacing ``runpy`` or the import system, is beyond what
  in-kernel tests can stop; nbgrader's own tests share that limit.)
- quiet: warnings and stderr are swallowed while the student's code runs, because
  nbgrader scores any test cell that writes to stderr as 0 (nbgrader issue 1904);
- time-limited: a function that never returns is stopped after ``LMLOGITS_CHECK_SECONDS``
  (default 30), and the later hidden checks that would call it fail at once. (Cells
  that call it outside these checks wait for nbgrader's cell timeout.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import signal
import sys
import warnings

from lmlogits_grader import state

CHECKS = (
    "returns_k_rows",
    "matches_reference",
    "returns_probabilities",
    "no_global_vars",
    "works_without_notebook_globals",
)


# Checks that run the student's function (no_global_vars only reads its bytecode).
CALLS_THE_FUNCTION = frozenset(CHECKS) - {"no_global_vars"}


class _TimeLimit(BaseException):
    """Raised inside the student's code when a check runs out of time."""


def run_check(name: str, func):
    """Run one grading check on the student's ``predict_next_tokens``.

    Args:
        name: one of :data:`CHECKS`.
        func: the student's function (whatever the notebook's name refers to).

    Returns:
        A :class:`lmlogits_grader.checks.Verdict`.
    """
    if name not in CHECKS:
        raise ValueError(f"`name` must be one of {CHECKS}, got {name!r}")
    code = getattr(func, "__code__", None)
    if name in CALLS_THE_FUNCTION and code is not None and code in state.timed_out:
        from lmlogits_grader.checks import Verdict

        return Verdict(False, "skipped: predict_next_tokens did not finish in an earlier check")

    checks = _fresh_checks()
    from transformers.utils import logging as transformers_logging

    import lmlogits

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no loading bar in the test's output
    try:
        with _quiet():
            model, tokenizer = lmlogits.load_model_and_tokenizer()
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()
    seconds = float(os.environ.get("LMLOGITS_CHECK_SECONDS", "30"))
    try:
        with _quiet(), _time_limit(seconds):
            return getattr(checks, f"check_{name}")(func, tokenizer, model)
    except _TimeLimit:
        if code is not None:
            state.timed_out.add(code)
        return checks.Verdict(
            False, f"predict_next_tokens did not finish within {seconds:.0f} s (an endless loop?)"
        )


def _load_fresh(name: str):
    """A new module object executed from the installed file, never the one in sys.modules."""
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # while it runs: dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    return module


def _fresh_checks():
    """Fresh copies of the grading code, wired to each other: nothing the notebook
    changed in the imported modules (or in ``importlib.reload``) reaches them."""
    globals_check = _load_fresh("lmlogits.globals_check")
    reference = _load_fresh("lmlogits_grader.reference")
    checks = _load_fresh("lmlogits_grader.checks")
    checks.next_token_probabilities = reference.next_token_probabilities
    checks.check_global_vars = globals_check.check_global_vars
    return checks


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`_TimeLimit` in the running code after ``seconds`` (main thread only)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum, frame):
        raise _TimeLimit

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _quiet():
    """Swallow warnings, logging and anything written to stderr (Python or C level)."""
    saved_fd = None
    try:
        sys.stderr.flush()
    except Exception:
        pass
    try:
        saved_fd = os.dup(2)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
    except OSError:
        saved_fd = None
    previous_disable = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous_disable)
        if saved_fd is not None:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
