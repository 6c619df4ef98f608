"""Red team: every attack in tests/attacks.py graded in one class, with warm kernels and
again with fresh kernels, next to honest submissions. Some attacks run with warm kernels
only: those decided in the grader's own process; those on the kernel's Python (IPython's
hooks, builtins, libraries, the objects returned) and those on the files and network the
sandbox shows, which both kinds of kernel show alike, as
test_both_kinds_of_kernel_give_student_code_the_same_python checks on a report taken in a
kernel of each kind; those on the zygote (a fresh kernel has none, and the report shows it
sees no zygote's folder); and the pair on files left behind, which
test_files_left_behind_do_not_reach_the_next_submission grades in order, one after the
other in one worker, with each kind.
Every attack on the kernel's process, its limits and the folders it shares with the
grader runs with both kinds.

Each attack must get exactly its fair score (written by hand in attacks.py), reach
nothing (no ``LEAK:`` line anywhere), and leave nothing behind: the honest students
get their fair grades (written by hand too), the grader's files, the
environment and the model are unchanged, the gradebook holds what the grader recorded,
and no process started by a submission is alive afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import attacks
import courses
import kernel_users
import nbformat
import pytest

from lmlogits_grader import collect, course, parallel, record, sandbox, submissions
from lmlogits_grader.checks import HIDDEN_PHRASES

pytestmark = pytest.mark.autograde

if sandbox.bwrap_problem():  # CI installs bubblewrap (make venv): it must not skip there
    pytest.skip(f"no sandbox on this machine: {sandbox.bwrap_problem()}",
                allow_module_level=True)

HONEST = {
    "honest-correct": "correct",
    "honest-alternative": "alternative",
    "honest-off-by-one": "off_by_one",
    "honest-global-phrase": "global_phrase",
    "honest-logits": "returns_logits",
    "honest-ignores-k": "ignores_k",
}
# their fair scores, worked out by hand from the rubric as in tests/test_autograde.py
HONEST_SCORES = {
    "honest-correct": attacks.CORRECT,
    "honest-alternative": attacks.CORRECT,
    "honest-off-by-one": attacks.OFF_BY_ONE,
    "honest-global-phrase": (5, 2, 0, 1, 0, 0),  # the visible example looks right
    "honest-logits": (5, 2, 0, 0, 2, 3),  # a table of logits: not probabilities
    "honest-ignores-k": attacks.IGNORES_K,
}
AUTO_CELLS = [
    "test_step1", "test_step2", "test_step3", "test_step4", "test_step5",
    "test_returns_k_rows", "test_matches_reference", "test_returns_probabilities",
    "test_no_global_vars", "test_works_without_notebook_globals",
]
# Attacks whose outcome is decided in the grader's own process from what any kernel hands
# back (the judge's messages, the sanitizer, nbgrader's metadata checks, the output
# caps of the grader's Execute step): graded with warm kernels only. The broken files
# (decided when they are collected) likewise.
DECIDED_OUTSIDE_THE_KERNEL = {
    "forged_metadata", "edited_metadata", "redefines_function_late", "prints_hidden_inputs",
    "hidden_input_in_exception", "hidden_input_in_type_name", "hidden_input_in_columns",
    "scripts_in_html", "script_in_markdown_answer",
    # output caps: the grader's Execute step cuts what any kernel sends
    "prints_50_megabytes", "displays_50_megabytes",
}
# Attacks on the kernel's Python, not on its process or sandbox: they change IPython's
# hooks, builtins, libraries or the grader's answers, or return objects that lie. Both
# kinds of kernel run the same interpreter, ipykernel, IPython set-up and probes with
# the same environment, so they meet the same Python: graded with warm kernels only
# (test_both_kinds_of_kernel_give_student_code_the_same_python shows the sameness).
ON_THE_KERNELS_PYTHON = {
    "input_transformer", "display_hook", "execute_result_score", "always_equal",
    "fake_dataframe", "patched_builtins", "patched_libraries", "fake_grader_modules",
    "custom_exception_handler", "forged_probe_answers", "keeps_hidden_inputs",
}
# Attacks on the files and the network the sandbox shows: the kernel report shows both
# kinds of kernel the same mounts (each read-only or writable, with the same file
# systems and sizes) and the same network interfaces, but for the folders shared with
# the grader (a warm kernel sees its worker's kernel and zygote folders, which
# reaches_the_zygote and symlinks_out go after).
ON_WHAT_THE_SANDBOX_SHOWS = {
    "reads_grader_and_course", "searches_the_filesystem", "writes_grader_files",
    "writes_gradebook", "startup_files", "writes_model_and_environment", "uses_the_network",
}
# Attacks on the zygote: a fresh kernel has none (it loads its own model), and the kernel
# report shows that the only folder it shares with the grader is its own.
ON_THE_ZYGOTE = {"changes_weights_in_memory", "reaches_the_zygote"}
# In a batch, any worker may grade them, in any order: the test that grades the two in
# order in one worker runs with both kinds.
FILES_LEFT_BEHIND = {"leaves_files", "finds_left_files"}
WARM_ONLY = (DECIDED_OUTSIDE_THE_KERNEL | ON_THE_KERNELS_PYTHON | ON_WHAT_THE_SANDBOX_SHOWS
             | ON_THE_ZYGOTE | FILES_LEFT_BEHIND)
# graded first: they wait out cell timeouts (or fork and wait), the others take seconds
SLOWEST = ("ignores_signals_holding_the_gil", "catches_base_exception", "fork_loop")
# Two workers on two cores (make test runs two pytest processes: the cores are busy)
BATCH_WORKERS = 2
# The warm batch's limits, as for tests/conftest.py's every-kind class: still ten times
# what a cell or a call of the function takes in a warm kernel here. Fresh kernels keep
# the suite's (a fresh kernel's first plot loads matplotlib in the cell).
BATCH_LIMITS = {"LMLOGITS_CELL_TIMEOUT": "3", "LMLOGITS_CHECK_SECONDS": "1"}
# an honest submission with one more cell that prints what its kernel's Python looks like
KERNEL_REPORT = "kernel-report"
REPORT_PREFIX = "KERNEL REPORT "
# What student code meets in its kernel, printed as one line of JSON: the interpreter,
# the environment, ids and limits, signal handlers, IPython's hooks, the notebook's
# variables and the builtins.
KERNEL_REPORT_CELL = r'''
import builtins as _builtins, json as _json, os as _os, resource as _resource
import signal as _signal, sys as _sys
_ip = get_ipython()

def _names(items):
    return [getattr(item, "__qualname__", type(item).__qualname__) for item in items]

def _status():
    keep = ("NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    with open("/proc/self/status") as _handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in _handle
                    if line.split(":")[0] in keep)

def _mounts():
    """The mounts this process sees (those covered by another left out): where, the
    folder of the file system mounted there, the options, the file system and its
    options, then the owner and mode of the folder."""
    rows = {}
    with open("/proc/self/mountinfo") as _handle:
        for line in _handle:
            fields = line.split()
            dash = fields.index("-")
            rows[fields[0]] = (fields[1], fields[4], [fields[4], fields[3], fields[5],
                                                      fields[dash + 1], fields[dash + 3]])

    def _covers(child, mount):
        return rows[child][0] == mount and rows[child][1] == rows[mount][1]

    covered = {parent for child, (parent, _, _) in rows.items()
               if parent in rows and _covers(child, parent)}

    def _hidden(mount):
        below = None
        while mount in rows:
            if mount in covered and not (below is not None and _covers(below, mount)):
                return True
            below, mount = mount, rows[mount][0]
        return False

    found = []
    for mount, (_, point, entry) in rows.items():
        if not _hidden(mount):
            try:
                info = _os.stat(point)
                entry += [info.st_uid, oct(info.st_mode & 0o7777)]
            except OSError as error:
                entry += [type(error).__name__, ""]
            found.append(entry)
    return sorted(found)

def _interfaces():
    with open("/proc/net/dev") as _handle:
        return sorted(line.split(":")[0].strip() for line in _handle if ":" in line)

_report = {
    "python": [_sys.version, _sys.executable, _sys.prefix, _sys.base_prefix, _sys.path,
               list(_sys.flags), _sys.getrecursionlimit(), _sys.getdefaultencoding()],
    "environment": dict(_os.environ),
    "ids": [_os.getuid(), _os.geteuid(), _os.getgid(), _os.getegid(), sorted(_os.getgroups())],
    "cwd": _os.getcwd(),
    "pids": [_os.getpid(), _os.getppid()],
    "limits": {name: _resource.getrlimit(getattr(_resource, name)) for name in (
        "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")},
    "status": _status(),
    "signals": {_sig.name: repr(_signal.getsignal(_sig)) for _sig in (
        _signal.SIGINT, _signal.SIGTERM, _signal.SIGALRM, _signal.SIGCHLD)},
    "ipython": {
        "shell": type(_ip).__module__ + "." + type(_ip).__qualname__,
        "input_transformers_cleanup": _names(_ip.input_transformers_cleanup),
        "input_transformers_post": _names(_ip.input_transformers_post),
        "ast_transformers": _names(_ip.ast_transformers),
        "displayhook": type(_sys.displayhook).__qualname__,
        "display_publisher": type(_ip.display_pub).__qualname__,
        "custom_exceptions": repr(_ip.custom_exceptions),
        "events": {name: _names(callbacks) for name, callbacks in _ip.events.callbacks.items()},
        "formatters": sorted(_ip.display_formatter.formatters),
        "variables": sorted(name for name in _ip.user_ns if not name.startswith("_")),
    },
    "mounts": _mounts(),
    "network": _interfaces(),
    "builtins": {name: type(value).__qualname__ for name, value in vars(_builtins).items()
                 if not name.startswith("_")},
}
print("KERNEL REPORT " + _json.dumps(_report, sort_keys=True, default=repr))
'''


def _attacks_for(kind: str) -> list[str]:
    return [name for name in attacks.ATTACKS if kind == "warm" or name not in WARM_ONLY]


def _scores(cells) -> tuple:
    """(steps 1-5, k_rows, matches_reference, probabilities, globals, without_globals)"""
    steps = sum(cells[c].score for c in AUTO_CELLS[:5])
    return (steps, *(cells[c].score for c in AUTO_CELLS[5:]))


def _snapshot(paths: list[Path]) -> dict[str, tuple]:
    """Every file under ``paths`` (caches excluded): size, inode, modification and change
    times, so that any write shows. A write sets the change time (ctime) to the clock's
    time, and no call sets it back (os.utime sets mtime and atime only), so a file
    rewritten with its old size and mtime still differs; cheaper than hashing the venv."""
    seen = {}
    for top in paths:
        for folder, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if d != "__pycache__"]
            for name in files:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                seen[str(path)] = (info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
    return seen


def _protected_paths() -> list[Path]:
    import lmlogits
    import lmlogits_grader
    from lmlogits_grader.execute import current_settings

    model = Path(current_settings().env["LMLOGITS_MODEL"])
    return [
        Path(lmlogits_grader.__file__).parent,
        Path(lmlogits.__file__).parent,
        Path(lmlogits.resolve_model()).resolve(),
        model,
        Path(sys.prefix),
        Path(os.path.realpath(sys.base_prefix)) / "lib",
        Path.home() / ".ipython",
        Path(os.environ["IPYTHONDIR"]),  # the suite's own (tests/conftest.py)
    ]


def _sandbox_processes() -> list[str]:
    """Processes that run as one of this test process's kernel users, or call themselves
    like an attack without running as a kernel user (tests/kernel_users.py: the other
    pytest processes' kernels are theirs to check)."""
    mine = kernel_users.mine()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if uid in mine or (name == attacks.PROCESS_NAME and uid not in kernel_users.ALL):
            found.append(f"{entry.name} {name} uid={uid}")
    return found


def _leftover_processes(wait: float = 10.0) -> list[str]:
    deadline = time.monotonic() + wait
    while (found := _sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _texts(root: Path, student: str) -> tuple[str, str]:
    """What the autograded notebook shows (outputs, markdown; formgrader renders these)
    beside the student's code, and the feedback page."""
    autograded = root / "autograded" / student / course.ASSIGNMENT / f"{course.ASSIGNMENT}.ipynb"
    feedback = course.feedback_page(root, student)
    nb = nbformat.read(autograded, as_version=4)
    shown = [json.dumps(cell.get("outputs", [])) if cell.cell_type == "code" else cell.source
             for cell in nb.cells]
    return "\n".join(shown), feedback.read_text(errors="replace")


@dataclass
class Batch:
    kind: str  # "warm" or "fresh" kernels
    root: Path
    outcome: dict
    grades: dict
    protected_before: dict
    protected_after: dict
    course_before: dict
    course_after: dict
    leftovers: list


# Honest but broken files, as they come out of a class's download: (bytes, fair scores)
def _broken_files() -> dict[str, tuple[bytes, tuple]]:
    good = nbformat.writes(submissions.make_submission("correct"))
    zero = (0, 0, 0, 0, 0, 0)
    return {
        "broken-invalid-json.ipynb": (good[: len(good) // 2].encode(), zero),
        "broken-empty.ipynb": (b"", zero),
        "broken-not-a-notebook.ipynb": (b'{"cells": "none", "hello": 1}', zero),
        "broken-binary.ipynb": (bytes(range(256)) * 4, zero),
        # repaired, then graded as what they are
        "repaired-stray-byte.ipynb": (
            good.replace("Batch of 1", "Batch \u00e9 of 1").encode().replace(
                "\u00e9".encode(), b"\xff"), attacks.CORRECT),
        "repaired-lone-surrogate.ipynb": (
            good.replace("Batch of 1", "Batch \\udcff of 1").encode(), attacks.CORRECT),
        "UPPER-CASE.IPYNB": (good.encode(), attacks.CORRECT),
        "..ipynb": (good.encode(), None),  # not a student id: skipped, nothing written
    }


def _grade_class(root: Path, notebooks: dict, warm: bool, workers: int = 2,
                 files: dict[str, bytes] | None = None) -> tuple:
    courses.generated_course(root)
    api = course.api_for(root)
    download = root.parent / f"{root.name}-download"
    download.mkdir()
    for student, nb in notebooks.items():
        nbformat.write(nb, download / f"{student}.ipynb")
    for name, data in (files or {}).items():
        (download / name).write_bytes(data)
    students = collect.collect(download, root, course.ASSIGNMENT).students
    # the slowest first, so that no worker is left waiting one out at the end
    students.sort(key=lambda student: student not in SLOWEST)
    before = _snapshot([root / "source", root / "release", root / "submitted"])
    outcome = parallel.grade_in_parallel(root, students, workers=workers, progress=False,
                                         warm=warm)
    course.feedback(api, students)
    after = _snapshot([root / "source", root / "release", root / "submitted"])
    return api, outcome, before, after


# Bystanders in the fresh batch: full marks and partial marks. (Each fresh kernel costs
# seconds of CPU; the warm batch grades every honest kind among the same attacks.)
HONEST_FRESH = ("honest-correct", "honest-off-by-one")


def _honest_for(kind: str) -> list[str]:
    return list(HONEST) if kind == "warm" else list(HONEST_FRESH)


def _honest_notebooks(kind: str) -> dict:
    return {student: submissions.make_submission(HONEST[student])
            for student in _honest_for(kind)}


def _grade_batch(kind: str, tmp_path_factory) -> Batch:
    """Every attack for ``kind`` and the honest submissions, graded in one class."""
    root = tmp_path_factory.mktemp(f"redteam-{kind}") / "course"
    root.mkdir(parents=True)
    notebooks = {name: attacks.build(name, str(root)) for name in _attacks_for(kind)}
    notebooks.update(_honest_notebooks(kind))
    protected = _protected_paths()
    protected_before = _snapshot(protected)
    files = {name: data for name, (data, _) in _broken_files().items()}
    with pytest.MonkeyPatch.context() as monkeypatch:
        if kind == "warm":  # see BATCH_LIMITS
            for name, value in BATCH_LIMITS.items():
                monkeypatch.setenv(name, value)
        _, outcome, course_before, course_after = _grade_class(
            root, notebooks, warm=kind == "warm", workers=BATCH_WORKERS,
            files=files if kind == "warm" else None)
    return Batch(
        kind=kind, root=root, outcome=outcome, grades=course.cell_grades(root),
        protected_before=protected_before, protected_after=_snapshot(protected),
        course_before=course_before, course_after=course_after,
        leftovers=_leftover_processes(),
    )


@pytest.fixture(scope="module")
def graded_batches(tmp_path_factory):
    """``graded_batches(kind)``: that kind's batch, graded when first asked for, once."""
    made: dict[str, Batch] = {}

    def get(kind: str) -> Batch:
        if kind not in made:
            made[kind] = _grade_batch(kind, tmp_path_factory)
        return made[kind]

    return get


@pytest.fixture(scope="module", params=["warm", "fresh"])
def batch(request, graded_batches):
    """Every attack and the honest submissions, graded in one class."""
    return graded_batches(request.param)


def test_there_are_at_least_40_attacks():
    assert len(attacks.ATTACKS) >= 40
    assert DECIDED_OUTSIDE_THE_KERNEL < set(attacks.ATTACKS)
    assert ON_THE_KERNELS_PYTHON < set(attacks.ATTACKS)
    assert not DECIDED_OUTSIDE_THE_KERNEL & ON_THE_KERNELS_PYTHON
    assert ON_WHAT_THE_SANDBOX_SHOWS | ON_THE_ZYGOTE | FILES_LEFT_BEHIND < set(attacks.ATTACKS)
    assert set(SLOWEST) < set(_attacks_for("fresh"))
    assert set(HONEST_FRESH) < set(HONEST)


def _file_students() -> dict[str, tuple]:
    return {name.rsplit(".", 1)[0]: fair for name, (_, fair) in _broken_files().items()
            if fair is not None}


def test_every_submission_is_graded_and_recorded(batch):
    files = _file_students() if batch.kind == "warm" else {}
    everyone = [*_attacks_for(batch.kind), *_honest_for(batch.kind), *files]
    assert batch.outcome == dict.fromkeys(everyone, True)
    assert set(batch.grades) == set(batch.outcome)
    assert sorted(p.name for p in (batch.root / "submitted").iterdir()) == sorted(everyone)


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
@pytest.mark.parametrize("student", list(_file_students()))
def test_each_broken_file_gets_a_deliberate_score(batch, student):
    assert _scores(batch.grades[student]) == _file_students()[student]


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
def test_broken_files_are_explained_in_the_csv_and_the_feedback(batch):
    rows = {r["student_id"]: r for r in course.read_csv(
        course.export_csv(batch.root, batch.root / "grades.csv"))}
    assert rows["broken-empty"]["note"] == "the file is empty"
    assert rows["broken-invalid-json"]["note"].startswith("not a notebook: the file is not")
    assert rows["repaired-stray-byte"]["note"] == "bytes that are not UTF-8 replaced"
    assert float(rows["UPPER-CASE"]["score"]) == 17
    assert ".." not in rows
    _, feedback = _texts(batch.root, "broken-not-a-notebook")
    assert "could not be graded" in feedback and "no list of cells" in feedback


@pytest.mark.parametrize("name", _attacks_for("fresh"))
def test_each_attack_gets_its_fair_score(batch, name):
    assert _scores(batch.grades[name]) == attacks.ATTACKS[name][1], attacks.ATTACKS[name][2]


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
@pytest.mark.parametrize("name", sorted(WARM_ONLY))
def test_each_warm_only_attack_gets_its_fair_score(batch, name):
    assert _scores(batch.grades[name]) == attacks.ATTACKS[name][1], attacks.ATTACKS[name][2]


def test_no_attack_reaches_anything(batch):
    for student in _attacks_for(batch.kind):
        notebook, feedback = _texts(batch.root, student)
        assert attacks.LEAK not in notebook, student
        assert attacks.LEAK not in feedback, student


def test_honest_students_get_their_fair_grades_among_attacks(batch):
    for student in _honest_for(batch.kind):
        assert _scores(batch.grades[student]) == HONEST_SCORES[student], student
        for question in ("q1", "q2", "q3"):  # written answers wait for a person
            assert batch.grades[student][question].needs_manual_grade, (student, question)


def test_grader_files_environment_and_model_are_unchanged(batch):
    changed = [
        path for path in set(batch.protected_before) | set(batch.protected_after)
        if batch.protected_before.get(path) != batch.protected_after.get(path)
    ]
    assert changed == []
    for folder in (Path.home() / ".ipython", Path(os.environ["IPYTHONDIR"])):
        assert not list(folder.rglob("00-evil.py")), folder


def test_the_course_files_are_unchanged_by_grading(batch):
    assert batch.course_before == batch.course_after


def test_the_gradebook_holds_what_the_grader_recorded(batch):
    assert record.changed_behind_our_back(batch.root, course.ASSIGNMENT) == {}


def test_no_process_outlives_the_batch(batch):
    assert batch.leftovers == []


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
def test_output_during_the_graders_calls_is_hidden_with_a_note(batch):
    from lmlogits_grader.judge import HIDDEN_OUTPUT_NOTE

    _, feedback = _texts(batch.root, "prints_hidden_inputs")
    assert HIDDEN_OUTPUT_NOTE.split(";")[0] in feedback
    assert "argument: This weekend I plan to" in feedback  # its own cells' output stays


def test_hidden_inputs_never_reach_feedback(batch):
    secrets = [*HIDDEN_PHRASES[1:], *(p.replace(" ", "_") for p in HIDDEN_PHRASES[1:])]
    for student in _attacks_for(batch.kind):
        notebook, feedback = _texts(batch.root, student)
        for secret in secrets:
            assert secret not in feedback, (student, secret)
            assert secret not in notebook, (student, secret)


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
def test_outputs_are_capped_with_a_note(batch):
    for student in ("prints_50_megabytes", "displays_50_megabytes"):
        notebook, feedback = _texts(batch.root, student)
        path = batch.root / "autograded" / student / course.ASSIGNMENT
        assert (path / f"{course.ASSIGNMENT}.ipynb").stat().st_size < 6_000_000, student
        assert len(feedback) < 8_000_000, student
        assert "[output cut:" in notebook, student


class _ActiveContent(HTMLParser):
    """Collects what a browser would run or load from a page: script elements and their
    text, event-handler attributes, iframes/objects/embeds, javascript: links, SVG."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag in ("iframe", "object", "embed", "svg"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.found.append(f"{tag} {name}=")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}=javascript:")
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and ("pwned" in data or "alert(" in data):
            self.found.append(f"<script>{data[:40]}")


def _active_content(html: str) -> list[str]:
    parser = _ActiveContent()
    parser.feed(html)
    return parser.found


def test_the_page_check_finds_student_scripts():
    page = ('<p>hi</p><script>document.title="pwned"</script><img src=x onerror="alert(1)">'
            '<a href="javascript:alert(1)">x</a><iframe></iframe>')
    assert len(_active_content(page)) == 4
    assert _active_content("&lt;script&gt;alert(1)&lt;/script&gt; onerror=") == []


@pytest.mark.parametrize("batch", ["warm"], indirect=True, scope="module")
def test_no_student_script_in_any_page(batch):
    for student in ("scripts_in_html", "script_in_markdown_answer"):
        notebook, feedback = _texts(batch.root, student)
        assert _active_content(feedback) == [], student
        # the autograded notebook is what formgrader shows the instructor
        nb = nbformat.read(batch.root / "autograded" / student / course.ASSIGNMENT
                           / f"{course.ASSIGNMENT}.ipynb", as_version=4)
        for cell in nb.cells:
            shown = [cell.source] if cell.cell_type == "markdown" else [
                str(value) for output in cell.get("outputs", [])
                for key, value in output.get("data", {}).items() if key != "text/plain"]
            for html in shown:
                assert _active_content(html) == [], (student, html[:200])
            for output in cell.get("outputs", []):
                assert not set(output.get("data", {})) & {
                    "application/javascript", "image/svg+xml"}, student
    notebook, _ = _texts(batch.root, "scripts_in_html")
    assert "<b>bold</b>" in notebook  # harmless HTML stays


@dataclass
class Report:
    kind: str  # "warm" or "fresh" kernel
    score: tuple  # _scores of the report's notebook
    report: dict  # what the report cell printed


@dataclass
class SmallClass:
    root: Path
    outcome: dict
    report: Report


@pytest.fixture(scope="module")
def small_classes(tmp_path_factory):
    """``small_classes(kind)``: one worker with kernels of ``kind`` grades, in this
    order, a submission that leaves files behind, one that looks for them, and the
    kernel report (an honest submission with KERNEL_REPORT_CELL); graded once.
    (Not in the batches: ``make test`` grades those in different pytest processes.)"""
    made: dict[str, SmallClass] = {}

    def get(kind: str) -> SmallClass:
        if kind not in made:
            root = tmp_path_factory.mktemp(f"small-class-{kind}") / "course"
            root.mkdir()
            notebooks = {
                "a-leaves": attacks.build("leaves_files", str(root)),
                "b-finds": attacks.build("finds_left_files", str(root)),
                KERNEL_REPORT: attacks._extra_cell(submissions.make_submission("correct"),
                                                   KERNEL_REPORT_CELL),
            }
            _, outcome, _, _ = _grade_class(root, notebooks, warm=kind == "warm", workers=1)
            made[kind] = SmallClass(root, outcome, _read_report(kind, root))
        return made[kind]

    return get


def _read_report(kind: str, root: Path) -> Report:
    nb = nbformat.read(root / "autograded" / KERNEL_REPORT / course.ASSIGNMENT
                       / f"{course.ASSIGNMENT}.ipynb", as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith(REPORT_PREFIX):
                    return Report(kind, _scores(course.cell_grades(root)[KERNEL_REPORT]),
                                  json.loads(line[len(REPORT_PREFIX):]))
    raise AssertionError(f"no kernel report from the {kind} kernel")


@pytest.mark.parametrize("kind", ["warm", "fresh"], ids=["warm-kernels", "fresh-kernels"])
def test_files_left_behind_do_not_reach_the_next_submission(small_classes, kind):
    graded = small_classes(kind)
    assert graded.outcome == dict.fromkeys(["a-leaves", "b-finds", KERNEL_REPORT], True)
    notebook, _ = _texts(graded.root, "b-finds")
    assert attacks.LEAK not in notebook
    assert _leftover_processes() == []


def _without_known_differences(report: dict) -> dict:
    """The report without the worker it ran in (its kernel user), and without the ways
    the kinds differ that no attack graded with warm kernels only relies on: see below,
    and the shared folders, checked on their own."""
    report = json.loads(json.dumps(report))
    # each worker's kernels have a user of their own (the worker's slot): any of them
    report["ids"] = [[i for i in ids if i not in kernel_users.ALL] if isinstance(ids, list)
                     else ("a kernel user" if ids in kernel_users.ALL else ids)
                     for ids in report["ids"]]
    # torch sets it on import, from the environment of the moment: the kernel's (fresh)
    # or the zygote's, which the warm kernel's environment then replaces
    report["environment"].pop("TORCHINDUCTOR_CACHE_DIR", None)
    # a warm kernel puts its working folder first on sys.path (warm_kernel._become_kernel);
    # a fresh one finds it through IPython's '' entry, as the working folder is the same
    path = report["python"][4]
    report["python"][4] = [entry for entry in path if entry != report["cwd"]]
    # the folders shared with the grader differ by kind: compared in
    # test_both_kinds_of_kernel_give_student_code_the_same_python
    shared = _shared_with_the_grader(report)
    report["mounts"] = [[*mount[:-2], "a kernel user" if mount[-2] in kernel_users.ALL
                         else mount[-2], mount[-1]]
                        for mount in report["mounts"] if mount not in shared]
    return report


def _shared_with_the_grader(report: dict) -> list[list]:
    """The mounts of the report in the grader's folder for kernels' files (the model
    excepted): the folders the grader binds read-write into the sandbox."""
    shared = str(sandbox.shared_root()) + "/lmlogits-"
    model = report["environment"]["LMLOGITS_MODEL"]
    return [mount for mount in report["mounts"]
            if mount[0].startswith(shared) and mount[0] != model]


def test_both_kinds_of_kernel_give_student_code_the_same_python(small_classes):
    """Why the attacks in ON_THE_KERNELS_PYTHON are graded with warm kernels only.

    They attack the Python that student code runs in (IPython's input transformers,
    display hook and exception handler, builtins, torch/pandas/math, the grader's
    answers, the objects returned), not the kernel's process or sandbox. A report taken
    in a kernel of each kind, at the place where those attacks run, shows
    the same interpreter and search path, the same environment, user, working folder,
    PID, limits and signal handlers, the same IPython set-up and notebook variables and
    the same builtins; the probes and the judge are the grader's, the same for both. So
    such an attack meets the same Python in a fresh kernel as in a warm one.

    Why the attacks in ON_WHAT_THE_SANDBOX_SHOWS are graded with warm kernels only: the
    same reports show the same mounts (place, read-only or not, file system, size) and
    the same network (a loopback only) in both kinds, but for the folders shared with
    the grader, checked here too. Attacks on processes, signals, privileges, limits and
    those shared folders are graded with both kinds.
    """
    reports = {kind: small_classes(kind).report for kind in ("warm", "fresh")}
    for kind, taken in reports.items():
        assert taken.score == attacks.CORRECT, kind
        report = taken.report  # the report did look: nothing empty is compared
        assert report["environment"]["LMLOGITS_MODEL"] and report["limits"], kind
        assert "predict_next_tokens" in report["ipython"]["variables"], kind
        assert report["ipython"]["input_transformers_cleanup"], kind
        assert "print" in report["builtins"], kind
        assert report["network"] == ["lo"], kind
        tmp = [mount[3:5] for mount in report["mounts"] if mount[0] == "/tmp"]
        assert tmp == [["tmpfs", f"rw,size={sandbox.Limits().tmp_bytes >> 10}k"]], kind
    # the folders shared with the grader, all bound alike (read-write, no devices, no
    # set-user-id): a fresh kernel's own folder; a warm one's parent folder of its
    # worker's kernels and its zygote's folder, which the kernel's user may pass through
    # but not list, and not enter (reaches_the_zygote, symlinks_out)
    shared = {kind: _shared_with_the_grader(taken.report) for kind, taken in reports.items()}
    assert len({tuple(mount[2:5]) for mounts in shared.values() for mount in mounts}) == 1
    assert shared["warm"][0][2].startswith("rw,nosuid,nodev"), shared
    names = {kind: sorted((mount[0].rsplit("/", 1)[-1][:2], mount[-2],
                           int(mount[-1], 8) & 0o044 == 0)  # no reading by other users
                          for mount in mounts) for kind, mounts in shared.items()}
    assert names["fresh"] == [("k-", reports["fresh"].report["ids"][0], True)], names
    if os.geteuid() == 0:  # the grader's folders are root's; the kernel's user is another
        assert names["warm"] == [("ke", 0, True), ("zy", 0, True)], names
    assert _without_known_differences(reports["warm"].report) == _without_known_differences(
        reports["fresh"].report)
