"""Red-team submissions: what an adversarial student hands in, with the score it deserves.

Each attack is a notebook made from the course's synthetic submissions plus the
attacker's code. Its fair score is written by hand from the rubric: an attack earns
exactly what its own ``predict_next_tokens`` and steps earn, never more. The expected
scores are tuples ``(steps 1-5, k_rows, matches_reference, probabilities, globals,
without_globals)`` with the fair values of the base kinds:

- ``correct``      (5, 2, 4, 1, 2, 3) = 17
- ``off_by_one``   (5, 2, 0, 1, 2, 3) = 13   logits[0, -2]: right form, wrong tokens
- ``ignores_k``    (5, 0, 0, 1, 2, 3) = 11   always 10 rows
- ``not_a_table``  (5, 0, 0, 0, 2, 3) = 10   returns something else than a DataFrame,
  the same with or without the notebook's variables (each mistake costs once)
- ``no_answer``    (5, 0, 0, 0, 2, 0) =  7   no answers after step 5 (the kernel exits,
  dies or never returns): the global-variable rule is judged on the submitted source,
  so it keeps its 2; nothing can be compared without the notebook's variables
- ``nothing``      (5, 0, 0, 0, 0, 0) =  5   every call raises or returns None: the
  function is not written yet and earns no function points

Every attack is bounded: its loops stop by themselves within seconds, its processes
within two minutes, its memory and disk by the sandbox's limits (and, should those
fail, by its own caps), and every path it tries to change is inside the test's own
temporary course, or is opened for appending zero bytes (which changes nothing but
proves that it could write). A line starting with ``LEAK:`` in its output means the
attack reached something it must not; the tests look for it in every output and page.
"""

from __future__ import annotations

import textwrap

import nbformat

from lmlogits_grader import submissions

CORRECT = (5, 2, 4, 1, 2, 3)
OFF_BY_ONE = (5, 2, 0, 1, 2, 3)
IGNORES_K = (5, 0, 0, 1, 2, 3)
NOT_A_TABLE = (5, 0, 0, 0, 2, 3)
NO_ANSWER = (5, 0, 0, 0, 2, 0)
NOTHING = (5, 0, 0, 0, 0, 0)
# off_by_one whose forged answers say 5 rows whatever k was: k = 1 and 10 fail, and the
# forged calls in the notebook differ from the (unforged) calls without its variables
FIVE_ROWS = (5, 0, 0, 1, 2, 0)
LEAK = "LEAK:"
LEAK_CODE = '"LE" "AK:"'  # prints LEAK: without the word being in the notebook's source
PROCESS_NAME = "lmlogits-attack"  # what the attacks' background processes call themselves


def _code(*parts: str) -> str:
    """Code blocks written at any indentation, dedented one by one and joined."""
    return "\n".join(textwrap.dedent(part).strip("\n") for part in parts)


def _extra_cell(nb, code: str, after: str = "predict_next_tokens"):
    """Insert a student code cell (no grading metadata) after the cell ``after``."""
    cell = nbformat.v4.new_code_cell(_code(code).strip())
    index = nb.cells.index(submissions._cell(nb, after)) + 1
    nb.cells.insert(index, cell)
    return nb


def _function(nb, body: str, parameters: str = "phrase, k"):
    submissions._cell(nb, "predict_next_tokens").source = submissions._function_source(
        textwrap.dedent(body), parameters
    )
    return nb


def _base(kind: str):
    return submissions.make_submission(kind)


# Wrong on purpose: logits[0, -2], the off_by_one kind.
WRONG_BODY = submissions.CORRECT_BODY.replace("logits[0, -1, :]", "logits[0, -2, :]")


def build(name: str, course: str):
    """The notebook of attack ``name``; ``course`` is the test's temporary course folder."""
    spec = ATTACKS[name]
    return spec[0](course)


def _paths_code(course: str) -> str:
    """Code that defines the paths an attacker would go after (test course only)."""
    return textwrap.dedent(f'''
        import glob, os, sys
        COURSE = {course!r}
        TARGETS = [os.path.join(COURSE, "gradebook.db"), os.path.join(COURSE, "nbgrader_config.py")]
        TARGETS += glob.glob(os.path.join(COURSE, "submitted", "*", "*", "*.ipynb"))
        import lmlogits
        PACKAGE = os.path.dirname(lmlogits.__file__)
        GRADER = os.path.join(os.path.dirname(PACKAGE), "autograder", "lmlogits_grader")
    ''')


def _probe_write(path_expr: str) -> str:
    """Code that opens a path for appending zero bytes: succeeds only if it is writable."""
    return textwrap.dedent(f'''
        for _path in {path_expr}:
            try:
                _fd = os.open(_path, os.O_WRONLY | os.O_APPEND)
                os.write(_fd, b"")
                os.close(_fd)
                print({LEAK_CODE}, "writable", _path)
            except OSError:
                pass
    ''')


# --- forging passes from inside the kernel -------------------------------------------


def input_transformer(course):
    return _extra_cell(_base("off_by_one"), '''
        def _skip_asserts(lines):
            return ["pass\\n" if "assert" in line or "check_" in line else line for line in lines]
        get_ipython().input_transformers_cleanup.append(_skip_asserts)
    ''')


def display_hook(course):
    return _extra_cell(_function(_base("off_by_one"), "import sys\nsys.displayhook('ok')\n"
                                 + WRONG_BODY), '''
        import sys
        sys.displayhook = lambda value: print("ok")
    ''')


def execute_result_score(course):
    # a number as the cell's result would be nbgrader's partial credit
    return _function(_base("off_by_one"), textwrap.dedent('''
        from IPython.display import display
        display(4)
        get_ipython().displayhook(4)
    ''') + WRONG_BODY)


def always_equal(course):
    return _function(_base("correct"), '''
        class Anything(str):
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = str.__hash__
        return Anything("right")
    ''')


def fake_dataframe(course):
    # always 10 rows underneath, but says it has k
    return _function(_base("ignores_k"), '''
        class Claims(pd.DataFrame):
            @property
            def _constructor(self):
                return Claims
            def __len__(self):
                return k
        batch = tokenizer(phrase, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        top = torch.topk(logits[0, -1, :].softmax(dim=-1), 10)
        tokens = [tokenizer.decode(token_id) for token_id in top.indices]
        return Claims({"tokens": tokens, "probabilities": top.values.tolist()})
    ''')


def patched_builtins(course):
    return _extra_cell(_base("off_by_one"), '''
        import builtins
        builtins.all = lambda iterable: True
        builtins.any = lambda iterable: True
        builtins.sum = lambda iterable, start=0: 0
    ''', after="test_step5")


def patched_libraries(course):
    return _extra_cell(_base("off_by_one"), '''
        import math
        import pandas
        import torch
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        math.isfinite = lambda x: True
        math.fsum = lambda values: 1.0
        pandas.Series.sum = lambda self, *args, **kwargs: 0.5
    ''')


def fake_grader_modules(course):
    return _extra_cell(_base("off_by_one"), '''
        import runpy, sys, types
        fake = types.ModuleType("lmlogits_grader")
        fake.judge = types.SimpleNamespace(Judge=None, decide=lambda *a, **k: True)
        for name in ("lmlogits_grader", "lmlogits_grader.judge", "lmlogits_grader.checks",
                     "lmlogits_grader.cells"):
            sys.modules[name] = fake
        runpy.run_module = lambda *a, **k: {"run_check": lambda *a, **k: None}
    ''')


def custom_exception_handler(course):
    return _extra_cell(_base("off_by_one"), '''
        def _swallow(shell, etype, value, tb, tb_offset=None):
            return None
        get_ipython().set_custom_exc((BaseException,), _swallow)
    ''')


def forged_probe_answers(course):
    # rewrites every answer the grader's probe publishes: k right-looking rows
    return _extra_cell(_base("off_by_one"), '''
        _shell = get_ipython()
        _publish = _shell.display_pub.publish
        def _forge(data, metadata=None, **kwargs):
            for key, answer in list(data.items()):
                if "probe" in key and isinstance(answer, dict):
                    for call in answer.get("calls", []) or []:
                        call.clear()
                        call["result"] = {"kind": "table", "columns": ["tokens", "probabilities"],
                                          "rows": 5, "tokens": [" the"] * 5,
                                          "probabilities": [0.1] * 5}
                    answer["defined"] = True
            return _publish(data, metadata, **kwargs)
        _shell.display_pub.publish = _forge
    ''')


def forged_metadata(course):
    # the handed-in notebook carries the grader's keys and passing outputs
    nb = _base("off_by_one")
    nb.metadata["lmlogits_probes"] = {"answers": {"test_matches_reference": {"cell": "x"}}}
    nb.metadata["lmlogits_verdicts"] = {"test_matches_reference": True}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "4"},
                                                   execution_count=1)]
    return nb


def exits_early(course):
    return _extra_cell(_base("off_by_one"), '''
        import os
        os._exit(0)
    ''')


def redefines_function_late(course):
    # a right function for the cells, a wrong one left behind at the end
    nb = _base("correct")
    return _extra_cell(nb, "def predict_next_tokens(phrase, k):\n    return None\n",
                       after="test_works_without_notebook_globals")


# --- reading what it must not ----------------------------------------------------------


def reads_grader_and_course(course):
    return _extra_cell(_base("correct"), _code(_paths_code(course), f'''
        # the sandbox shows only the grader's kernel-side files (sandbox.py, warm_kernel.py)
        _secret = ("checks.py", "judge.py", "probe.py", "execute.py", "record.py")
        for _path in TARGETS + [os.path.join(GRADER, name) for name in _secret]:
            if os.path.exists(_path):
                print({LEAK_CODE}, "can see", _path)
        for _root in ("/", "/work", "/root", "/home", "/var", "/tmp", COURSE):
            try:
                print("listing", _root, sorted(os.listdir(_root))[:50])
            except OSError:
                pass
    '''))


def searches_the_filesystem(course):
    return _extra_cell(_base("correct"), f'''
        import os, time
        _deadline = time.monotonic() + 10
        for _dir, _subdirs, _files in os.walk("/"):
            if time.monotonic() > _deadline:
                break
            _subdirs[:] = [d for d in _subdirs if d not in ("proc", "sys", "dev", "usr")]
            for _name in _files:
                if "site-packages" in _dir:  # installed packages' own test files
                    continue
                if _name in ("gradebook.db", "013-lm-logits.ipynb", "nbgrader_config.py") or (
                        _name == "checks.py" and _dir.endswith("lmlogits_grader")):
                    print({LEAK_CODE}, "found", os.path.join(_dir, _name))
    ''')


def prints_hidden_inputs(course):
    return _function(_base("correct"), "print('argument:', phrase)\nimport sys\n"
                     "print('argument:', phrase, file=sys.stderr)\n"
                     + submissions.CORRECT_BODY)


def hidden_input_in_exception(course):
    return _function(_base("correct"), "raise ValueError('argument: ' + phrase)\n")


def hidden_input_in_type_name(course):
    return _function(_base("correct"), "return type(phrase.replace(' ', '_'), (), {})()\n")


def hidden_input_in_columns(course):
    return _function(_base("correct"),
                     "import pandas\nreturn pandas.DataFrame({phrase: [1.0] * k})\n")


def keeps_hidden_inputs(course):
    # keeps every argument (where the global check cannot see it), and a cell at the very
    # end prints them
    nb = _function(_base("correct"), "import builtins\n"
                   "builtins.__dict__.setdefault('SEEN', []).append(phrase)\n"
                   + submissions.CORRECT_BODY)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import builtins\nprint('kept:', getattr(builtins, 'SEEN', []))"))
    return nb


def reads_other_processes(course):
    return _extra_cell(_base("correct"), f'''
        import os
        for _pid in os.listdir("/proc"):
            if not _pid.isdigit() or int(_pid) == os.getpid():
                continue
            for _what in ("environ", "cmdline", "mem"):
                try:
                    with open(f"/proc/{{_pid}}/{{_what}}", "rb") as _handle:
                        _data = _handle.read(4096)
                    if b"HIDDEN" in _data or b"gradebook" in _data or _what == "mem":
                        print({LEAK_CODE}, "/proc", _pid, _what, _data[:80])
                except OSError:
                    pass
    ''')


# --- changing other students' grades -------------------------------------------------


def background_process(course):
    return _extra_cell(_base("correct"), _code(_paths_code(course), f'''
        import ctypes, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                ctypes.CDLL(None).prctl(15, b"{PROCESS_NAME}", 0, 0, 0)
                _until = time.monotonic() + 120
                while time.monotonic() < _until:
                    for _path in TARGETS:
                        try:
                            _fd = os.open(_path, os.O_WRONLY | os.O_APPEND)
                            os.close(_fd)
                            print({LEAK_CODE}, "later writable", _path, flush=True)
                        except OSError:
                            pass
                    time.sleep(1)
            os._exit(0)
    '''))


def writes_grader_files(course):
    return _extra_cell(_base("correct"), _code(_paths_code(course),
                       _probe_write('TARGETS + glob.glob(os.path.join(GRADER, "*.py"))')))


def writes_gradebook(course):
    return _extra_cell(_base("correct"), _code(_paths_code(course), f'''
        import sqlite3
        try:
            _db = sqlite3.connect(f"file:{{TARGETS[0]}}?mode=rw", uri=True)
            _db.execute("update grade set auto_score = 0")
            _db.commit()
            print({LEAK_CODE}, "gradebook changed")
        except Exception as error:
            print("no gradebook:", type(error).__name__)
    '''))


def startup_files(course):
    return _extra_cell(_base("correct"), f'''
        import os, site, sys
        _targets = [os.path.expanduser("~/.ipython/profile_default/startup/00-evil.py"),
                    "/root/.ipython/profile_default/startup/00-evil.py"]
        _targets += [os.path.join(p, "evil.pth") for p in site.getsitepackages()]
        for _path in _targets:
            try:
                os.makedirs(os.path.dirname(_path), exist_ok=True)
                with open(_path, "a") as _handle:
                    _handle.write("")
                if not _path.startswith(os.path.expanduser("~")):
                    print({LEAK_CODE}, "wrote", _path)
            except OSError:
                pass
    ''')


def writes_model_and_environment(course):
    return _extra_cell(_base("correct"), _code('''
        import glob, os, sys
        from lmlogits import resolve_model
    ''', _probe_write('glob.glob(os.path.join(resolve_model(), "*")) + '
                       '[sys.executable, os.path.join(sys.prefix, "pyvenv.cfg")] + '
                       'glob.glob(os.path.join(sys.prefix, "lib", "*", "site-packages", '
                       '"*.pth"))')))


def changes_weights_in_memory(course):
    # the weights any warm kernel starts from: zeroed in this kernel's copy
    return _extra_cell(_base("correct"), '''
        import lmlogits.model as _m
        for _model, _tokenizer in list(_m._loaded.values()):
            for _parameter in _model.parameters():
                _parameter.data.zero_()
        print("zeroed", len(_m._loaded), "preloaded models")
    ''', after="plot")


# a System V IPC key: message queues and shared memory outlive the process that made
# them, for as long as their IPC namespace lives
IPC_KEY = 0x6C6D6C67


def leaves_files(course):
    return _extra_cell(_base("correct"), f'''
        import ctypes, os, tempfile
        for _folder in ("/tmp", tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd(),
                        "/dev/shm", "/var/tmp"):
            try:
                with open(os.path.join(_folder, "lmlogits-left-behind"), "w") as _handle:
                    _handle.write("left by an earlier submission")
            except OSError:
                pass
        # a message queue and a shared memory segment (IPC_CREAT | 0o666)
        _libc = ctypes.CDLL(None, use_errno=True)
        print("msgget", _libc.msgget({IPC_KEY}, 0o1666),
              "shmget", _libc.shmget({IPC_KEY}, 4096, 0o1666))
    ''')


def finds_left_files(course):
    return _extra_cell(_base("correct"), f'''
        import os, tempfile
        for _folder in ("/tmp", tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd(),
                        "/dev/shm", "/var/tmp"):
            if os.path.exists(os.path.join(_folder, "lmlogits-left-behind")):
                print({LEAK_CODE}, "found a file left by another submission in", _folder)
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
        if _libc.msgget({IPC_KEY}, 0) != -1 or _libc.shmget({IPC_KEY}, 0, 0) != -1:
            print({LEAK_CODE}, "found System V IPC left by another submission")
        for _kind in ("msg", "shm", "sem"):
            with open(f"/proc/sysvipc/{{_kind}}") as _handle:
                if len(_handle.read().splitlines()) > 1:
                    print({LEAK_CODE}, "another submission's System V IPC:", _kind)
    ''', after="plot")


# Signals are sent only from inside a PID namespace of the kernel's own (pid 1 or 2
# there): should the sandbox be missing, these attacks report it instead of stopping
# the machine's processes.
_IN_OWN_PID_NAMESPACE = f'''
    import os, signal
    if os.getpid() > 2:
        print({LEAK_CODE}, "not in a PID namespace of its own: pid", os.getpid())
'''


def signals_everyone(course):
    return _extra_cell(_base("correct"), _code(_IN_OWN_PID_NAMESPACE, '''
    else:
        for _pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            if int(_pid) != os.getpid():
                for _sig in (signal.SIGSTOP, signal.SIGKILL):
                    try:
                        os.kill(int(_pid), _sig)
                    except OSError:
                        pass
        try:
            os.kill(1, signal.SIGKILL)
        except OSError:
            pass
    '''), after="plot")


def kills_everything_it_can(course):
    return _extra_cell(_base("correct"), _code(_IN_OWN_PID_NAMESPACE, '''
    else:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    '''), after="plot")


def reaches_the_zygote(course):
    return _extra_cell(_base("correct"), f'''
        import glob, os, socket
        for _path in glob.glob("/var/tmp/lmlogits-*/**/*.sock", recursive=True) + glob.glob(
                "/tmp/**/*.sock", recursive=True):
            try:
                _s = socket.socket(socket.AF_UNIX)
                _s.connect(_path)
                _s.sendall(b"garbage")
                print({LEAK_CODE}, "connected to", _path)
            except OSError:
                pass
    ''', after="plot")


def gains_privileges(course):
    return _extra_cell(_base("correct"), f'''
        import os, subprocess
        for _attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/")):
            try:
                _attempt()
                print({LEAK_CODE}, "privileged call worked")
            except (OSError, PermissionError):
                pass
        try:
            _out = subprocess.run(["mount", "-o", "remount,rw", "/"], capture_output=True,
                                  timeout=5)
            if _out.returncode == 0:
                print({LEAK_CODE}, "remounted /")
        except Exception:
            pass
    ''', after="plot")


def symlinks_out(course):
    return _extra_cell(_base("correct"), _code(_paths_code(course), f'''
        import tempfile
        for _i, _target in enumerate(TARGETS[:2] + [GRADER, "/etc/shadow"]):
            _link = os.path.join(tempfile.gettempdir(), f"link{{_i}}")
            try:
                os.symlink(_target, _link)
                with open(_link, "rb") as _handle:
                    _handle.read(10)
                if _target != "/etc/shadow" or True:
                    print({LEAK_CODE}, "read through a link to", _target)
            except OSError:
                pass
        # a link where the grader keeps the kernel's connection files
        for _folder in glob.glob("/var/tmp/lmlogits-*/kernels/*") + [os.getcwd()]:
            try:
                os.symlink(COURSE, os.path.join(_folder, "course-link"))
            except OSError:
                pass
    '''), after="plot")


def uses_the_network(course):
    return _extra_cell(_base("correct"), f'''
        import socket
        for _host, _port in (("pypi.org", 443), ("1.1.1.1", 53), ("127.0.0.1", 22),
                             ("10.0.0.1", 80)):
            try:
                socket.create_connection((_host, _port), timeout=2).close()
                print({LEAK_CODE}, "connected to", _host, _port)
            except OSError:
                pass
    ''', after="plot")


# --- denial of service -----------------------------------------------------------------


def prints_50_megabytes(course):
    return _extra_cell(_base("correct"), '''
        _line = "x" * (1 << 20)
        for _ in range(50):
            print(_line)
    ''', after="plot")


def displays_50_megabytes(course):
    return _extra_cell(_base("correct"), '''
        from IPython.display import HTML, display
        for _ in range(20):
            display(HTML("<p>" + "y" * (2 << 20) + "</p>"))
    ''', after="plot")


def scripts_in_html(course):
    return _extra_cell(_base("correct"), '''
        from IPython.display import HTML, Javascript, SVG, display
        display(HTML("<script>document.title='pwned'</script><b>bold</b>"))
        display(HTML('<img src="x" onerror="alert(1)"><iframe src="https://example.org"></iframe>'))
        display(HTML('<a href="javascript:alert(1)">link</a>'))
        display(Javascript("alert(1)"))
        display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'))
    ''', after="plot")


def script_in_markdown_answer(course):
    nb = _base("correct")
    submissions._cell(nb, "q1").source = (
        "Batch, positions, vocabulary. <script>alert('answer')</script>"
        '<img src=x onerror="alert(2)">'
    )
    return nb


def catches_base_exception(course):
    # a function that swallows the grader's interrupts and loops on
    return _function(_base("correct"), '''
        import time
        _until = time.monotonic() + 60
        while time.monotonic() < _until:
            try:
                time.sleep(0.05)
            except BaseException:
                pass
    ''')


def ignores_signals_holding_the_gil(course):
    return _extra_cell(_base("correct"), '''
        import re, signal, time
        for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            signal.signal(_sig, signal.SIG_IGN)
        _until = time.monotonic() + 60
        while time.monotonic() < _until:
            re.match(r"(a+)+$", "a" * 24 + "b")  # seconds in C, holding the GIL
    ''')


def fork_loop(course):
    return _extra_cell(_base("correct"), '''
        import os, time
        _children = 0
        for _ in range(2000):
            try:
                if os.fork() == 0:
                    time.sleep(10)
                    os._exit(0)
                _children += 1
            except OSError:
                break
        print("forked", _children, "processes")
    ''', after="plot")


def threads_loop(course):
    return _extra_cell(_base("correct"), '''
        import threading, time
        _started = 0
        try:
            for _ in range(5000):
                threading.Thread(target=time.sleep, args=(10,), daemon=True).start()
                _started += 1
        except RuntimeError:
            pass
        print("started", _started, "threads")
    ''', after="plot")


def eats_memory(course):
    return _extra_cell(_base("correct"), '''
        _blocks = []
        try:
            for _ in range(8):  # at most 8 GiB, beyond the sandbox's budget
                _blocks.append(bytearray(1 << 30))
        except MemoryError:
            pass
        print("allocated", len(_blocks), "GiB")
        del _blocks
    ''', after="plot")


def fills_the_disk(course):
    return _extra_cell(_base("correct"), '''
        import os, tempfile
        _chunk = b"z" * (1 << 20)
        for _folder in (tempfile.gettempdir(), os.getcwd(), os.path.expanduser("~")):
            _written = 0
            try:
                with open(os.path.join(_folder, "big"), "wb") as _handle:
                    for _ in range(1024):  # at most 1 GiB per folder
                        _handle.write(_chunk)
                        _written += 1
            except OSError:
                pass
            print(_folder, _written, "MiB")
            try:
                os.remove(os.path.join(_folder, "big"))
            except OSError:
                pass
    ''', after="plot")


def burns_cpu_in_a_thread(course):
    return _extra_cell(_base("correct"), '''
        import threading, time
        def _burn():
            _until = time.monotonic() + 90
            while time.monotonic() < _until:
                pass
        threading.Thread(target=_burn, daemon=True).start()
    ''', after="plot")


# --- honest but broken files ---------------------------------------------------------


def edited_metadata(course):
    nb = _base("correct")
    submissions._cell(nb, "test_matches_reference").metadata.nbgrader["grade"] = False
    submissions._cell(nb, "test_step1").metadata.nbgrader["grade_id"] = "renamed"
    submissions._cell(nb, "test_step2").metadata.nbgrader["solution"] = True
    submissions._cell(nb, "test_returns_k_rows").metadata.nbgrader["points"] = 100
    return nb


# name: (builder, expected scores, what it tries)
ATTACKS = {
    "input_transformer": (input_transformer, OFF_BY_ONE, "rewrite test code before it runs"),
    "display_hook": (display_hook, OFF_BY_ONE, "replace sys.displayhook"),
    "execute_result_score": (execute_result_score, OFF_BY_ONE, "a number as a cell result"),
    "always_equal": (always_equal, NOT_A_TABLE, "objects equal to everything"),
    "fake_dataframe": (fake_dataframe, IGNORES_K, "a DataFrame that lies about its length"),
    # all/any/sum patched break pandas inside its own function: it earns what that returns
    "patched_builtins": (patched_builtins, NOTHING, "patch all, any, sum"),
    "patched_libraries": (patched_libraries, OFF_BY_ONE, "patch torch, pandas, math"),
    "fake_grader_modules": (fake_grader_modules, OFF_BY_ONE, "fake grader in sys.modules"),
    "custom_exception_handler": (custom_exception_handler, OFF_BY_ONE, "swallow all errors"),
    "forged_probe_answers": (forged_probe_answers, FIVE_ROWS, "rewrite the grader's answers"),
    "forged_metadata": (forged_metadata, OFF_BY_ONE, "hand in verdicts and outputs"),
    # the kernel exits after step 5: nothing left to call; the source reads no globals
    "exits_early": (exits_early, NO_ANSWER, "exit before the tests"),
    # graded on the function the notebook ends with
    "redefines_function_late": (redefines_function_late, NOTHING,
                                "a wrong function after the tests"),
    "reads_grader_and_course": (reads_grader_and_course, CORRECT, "open the grader and course"),
    "searches_the_filesystem": (searches_the_filesystem, CORRECT, "look for gradebooks"),
    "prints_hidden_inputs": (prints_hidden_inputs, CORRECT, "print the hidden phrases"),
    "hidden_input_in_exception": (hidden_input_in_exception, NOTHING,
                                  "raise with the hidden phrase"),
    "hidden_input_in_type_name": (hidden_input_in_type_name, NOT_A_TABLE,
                                  "a class named after the hidden phrase"),
    "hidden_input_in_columns": (hidden_input_in_columns, NOT_A_TABLE,
                                "columns named after the hidden phrase"),
    "keeps_hidden_inputs": (keeps_hidden_inputs, CORRECT, "keep the phrases, print them later"),
    "reads_other_processes": (reads_other_processes, CORRECT, "read /proc of other processes"),
    "background_process": (background_process, CORRECT, "a process that outlives the kernel"),
    "writes_grader_files": (writes_grader_files, CORRECT, "write checks.py, the config"),
    "writes_gradebook": (writes_gradebook, CORRECT, "change the gradebook"),
    "startup_files": (startup_files, CORRECT, "IPython startup file, .pth file"),
    "writes_model_and_environment": (writes_model_and_environment, CORRECT,
                                     "write the model cache and the environment"),
    "changes_weights_in_memory": (changes_weights_in_memory, CORRECT,
                                  "zero the preloaded model's weights"),
    "leaves_files": (leaves_files, CORRECT, "leave files for the next submission"),
    "finds_left_files": (finds_left_files, CORRECT, "find files left by another submission"),
    "signals_everyone": (signals_everyone, CORRECT, "stop and kill every visible process"),
    "kills_everything_it_can": (kills_everything_it_can, CORRECT, "kill(-1, SIGKILL)"),
    "reaches_the_zygote": (reaches_the_zygote, CORRECT, "connect to the zygote's socket"),
    "gains_privileges": (gains_privileges, CORRECT, "setuid, chroot, remount"),
    "symlinks_out": (symlinks_out, CORRECT, "symbolic links out of /tmp"),
    "uses_the_network": (uses_the_network, CORRECT, "connect out"),
    "prints_50_megabytes": (prints_50_megabytes, CORRECT, "50 MB of output on 50 lines"),
    "displays_50_megabytes": (displays_50_megabytes, CORRECT, "40 MB of HTML"),
    "scripts_in_html": (scripts_in_html, CORRECT, "scripts in displayed HTML"),
    "script_in_markdown_answer": (script_in_markdown_answer, CORRECT, "script in an answer"),
    # every cell that calls the function times out, then the kernel is stopped
    "catches_base_exception": (catches_base_exception, NO_ANSWER,
                               "swallow the grader's interrupts"),
    "ignores_signals_holding_the_gil": (ignores_signals_holding_the_gil, NO_ANSWER,
                                        "ignore signals in a C loop"),
    "fork_loop": (fork_loop, CORRECT, "fork until it fails"),
    "threads_loop": (threads_loop, CORRECT, "start threads until it fails"),
    "eats_memory": (eats_memory, CORRECT, "allocate 8 GiB"),
    "fills_the_disk": (fills_the_disk, CORRECT, "write 1 GiB in each writable folder"),
    "burns_cpu_in_a_thread": (burns_cpu_in_a_thread, CORRECT, "a busy thread left running"),
    "edited_metadata": (edited_metadata, CORRECT, "edited grading metadata (honest mistake)"),
}
