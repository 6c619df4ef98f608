"""The sandboxed kernels' user ids that belong to this test process.

``make test`` runs the suite in several pytest processes at once (pytest-xdist). Each
gets worker slots of its own (``LMLOGITS_SLOTS``) and a slot of its own for serial
grading (``LMLOGITS_SANDBOX_SLOT``), set by :func:`claim_for_this_process` before any
grading, so that each kernel user belongs to one process: the checks for kernels left
running look at this process's users only.
"""

from __future__ import annotations

import os

FIRST_UID = 61000  # lmlogits_grader.sandbox.kernel_uid(0)
ALL = range(FIRST_UID, FIRST_UID + 100)  # every kernel user (slots 0-99)


def _share() -> tuple[int, int] | None:
    """(first, last) slot of this pytest process, or None when it is the only one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return None
    index = int(worker[2:])
    size = 99 // count
    first = 1 + index * size
    return first, first + size - 1


def claim_for_this_process() -> None:
    """Serial grading on this share's first slot, workers on the rest."""
    share = _share()
    if share is not None:
        first, last = share
        os.environ["LMLOGITS_SANDBOX_SLOT"] = str(first)
        os.environ["LMLOGITS_SLOTS"] = f"{first + 1}-{last}"


def mine() -> range:
    """The kernel user ids this pytest process's grading runs use."""
    share = _share()
    if share is None:
        return ALL
    return range(FIRST_UID + share[0], FIRST_UID + share[1] + 1)
