"""State that must survive the reloads in :mod:`lmlogits_grader.cells` within one kernel."""

# Code objects of student functions that ran out of time in an earlier check.
timed_out: set = set()
