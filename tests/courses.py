"""Course folders for the grading tests, without generating the assignment again and
again (``nbgrader generate_assignment``: seconds each, and the same files every time).

- :func:`generated_course`: ``course.new_course`` then ``course.generate``, done once
  per session; each test's course is a copy of that one (its files do not depend on
  where the course is; its gradebook differs from a newly generated one only in its
  random row ids). Courses whose config a test changes before generating (another
  gradebook, a late penalty) are still generated for real.
- :func:`bundle_once_per_content`: ``parallel.worker_bundle`` (it generates the
  assignment in a copy of the course) made once per distinct course content (config,
  ``source/``, ``release/``); grading runs started as commands (make, the demo, the
  killed runs) make theirs themselves.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

from lmlogits_grader import course, parallel

_template: Path | None = None


def generated_course(root: Path) -> Path:
    """Make ``root`` a course folder whose assignment is generated (release/, gradebook)."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="lmlogits-generated-"))
        atexit.register(shutil.rmtree, folder, True)
        course.new_course(folder / "course")
        course.generate(course.api_for(folder / "course"))
        _template = folder / "course"
    shutil.copytree(_template, root, symlinks=True, dirs_exist_ok=True)
    return root


def _content_key(root: Path, assignment: str) -> str:
    digest = hashlib.sha256(assignment.encode())
    digest.update((root / "nbgrader_config.py").read_bytes())
    for folder in ("source", "release"):
        for name, data in sorted(parallel.pack(root / folder).items()):
            digest.update(f"{folder}/{name}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()


def bundle_once_per_content(real):
    """``parallel.worker_bundle`` that makes each distinct course's bundle once."""
    made: dict[str, dict[str, bytes]] = {}

    def worker_bundle(root: Path, assignment: str = course.ASSIGNMENT) -> dict[str, bytes]:
        key = _content_key(Path(root), assignment)
        if key not in made:
            made[key] = real(root, assignment)
        return made[key]

    return worker_bundle
