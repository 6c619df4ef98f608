"""Execute: run a student's notebook in a sandboxed kernel and bring back plain data.

:class:`SandboxedExecute` is nbgrader's ``Execute`` step with four changes:

- **the kernel runs in the sandbox** of :mod:`lmlogits_grader.sandbox` (bubblewrap, an
  unprivileged user, resource limits), talking to the grader over Unix sockets in a
  private folder; with warm kernels (:mod:`lmlogits_grader.warm_kernel`) it is forked
  from a zygote that lives in the same kind of sandbox;
- **after each graded cell it runs that cell's probe** (:mod:`lmlogits_grader.probe`)
  and keeps only the probe's JSON, in ``nb.metadata["lmlogits_probes"]``, for the
  judge; whatever else the probe's calls print or display is dropped;
- **outputs are capped in bytes**, per cell and per notebook, with a note where they
  were cut, and **a submission has a wall-clock budget**: cells after it are not run;
- **a dead or unresponsive kernel** scores 0 from that cell on, with an explanation,
  and the batch goes on (a kernel that ignores interrupts is killed).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpec
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Integer

from lmlogits_grader import probe, sandbox
from lmlogits_grader.collect import BROKEN_KEY
from lmlogits_grader.judge import PROBES_KEY

SLOT_ENV = "LMLOGITS_SANDBOX_SLOT"  # a worker's number: its kernels' user id
KERNEL_PARENT_ENV = "LMLOGITS_KERNEL_PARENT"  # a worker's folder for its kernels' folders
WARM_SOCKET_ENV = "LMLOGITS_WARM_SOCKET"  # set in a worker that has a warm zygote

TIMINGS_ENV = "LMLOGITS_TIMINGS"  # a file: each notebook's phase times, one JSON line
_TIMEOUT_ENAMES = ("CellTimeoutError",)


def write_timings(record: dict) -> None:
    """Append ``record`` to the timings file, when the benchmark asked for one."""
    path = os.environ.get(TIMINGS_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _error_output(name: str, value: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=name, evalue=value,
                        traceback=[f"{name}: {value}"])


def _note(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text + "\n")


def _output_size(output: NotebookNode) -> int:
    if output.get("output_type") == "stream":
        return len(output.get("text", ""))
    return len(json.dumps(output.get("data", {}))) + len(json.dumps(output.get("traceback", [])))


# --- what the sandbox shows ----------------------------------------------------------


def _world_readable(folder: Path) -> bool:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if mode & needed != needed:
            return False
    return True


def _readable_model(folder: Path, shared: Path) -> Path:
    """The model folder, or a world-readable copy of it for the kernel's own user."""
    folder = folder.resolve()
    if _world_readable(folder):
        return folder
    key = hashlib.sha256(str(folder).encode())
    for path in sorted(folder.rglob("*")):
        key.update(f"{path}{path.stat().st_mtime_ns}".encode())
    copy = shared / f"lmlogits-model-{key.hexdigest()[:12]}"
    if not copy.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".lmlogits-model-", dir=shared))
        shutil.copytree(folder, staging / "m", symlinks=False)
        for path in [staging / "m", *(staging / "m").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            os.replace(staging / "m", copy)
        except OSError:  # another worker made it first
            pass
        shutil.rmtree(staging, ignore_errors=True)
    return copy


@functools.lru_cache(maxsize=4)
def sandbox_settings(slot: int = 0) -> sandbox.SandboxSettings:
    """The sandbox of this grader: read-only folders, the kernel's environment, its uid."""
    import lmlogits
    import lmlogits_grader

    shared = sandbox.shared_root()
    uid = sandbox.kernel_uid(slot)
    model = Path(lmlogits.resolve_model())
    if uid is not None:
        model = _readable_model(model, shared)
    package = Path(lmlogits_grader.__file__).parent
    kernel_side = [str(package / name) for name in ("__init__.py", "sandbox.py",
                                                      "warm_kernel.py")]
    readonly = (
        os.path.realpath(sys.base_prefix),
        sys.prefix,
        str(Path(lmlogits.__file__).parent),
        str(model),
        *kernel_side,
    )
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": "/tmp/home/huggingface",
        "MPLCONFIGDIR": "/tmp/home/matplotlib",
        "LMLOGITS_MODEL": str(model),
        "LMLOGITS_GRADING": "1",  # the notebook's ungraded explore section skips itself
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1"),
    }
    return sandbox.SandboxSettings(readonly=readonly, shared_root=str(shared), uid=uid, env=env)


def current_settings() -> sandbox.SandboxSettings:
    return sandbox_settings(int(os.environ.get(SLOT_ENV, "0")))


_own_kernel_parent: str | None = None


def kernel_parent(settings: sandbox.SandboxSettings) -> str:
    """The folder this process makes its kernels' private folders in.

    A worker with a warm zygote names one (its zygote's sandbox sees only that folder);
    otherwise each grading process makes its own, so that no kernel can reach another
    process's kernels. It is emptied after every kernel.
    """
    global _own_kernel_parent
    if os.environ.get(KERNEL_PARENT_ENV):
        return os.environ[KERNEL_PARENT_ENV]
    if _own_kernel_parent is None or not os.path.isdir(_own_kernel_parent):
        _own_kernel_parent = tempfile.mkdtemp(prefix="lmlogits-kernels-", dir=settings.shared_root)
        os.chmod(_own_kernel_parent, 0o711)
        atexit.register(shutil.rmtree, _own_kernel_parent, True)
    return _own_kernel_parent


_sandbox_checked = False


def _require_sandbox() -> None:
    """Refuse (once per process) to run student code unsandboxed unless told to; also for
    `nbgrader autograde` run directly, which does not pass through our commands."""
    global _sandbox_checked
    if not _sandbox_checked:
        sandbox.require()
        _sandbox_checked = sandbox.sandbox_mode() == "bwrap"


# --- the Execute step ----------------------------------------------------------------


class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` in a sandboxed kernel, with probes, caps and a budget."""

    cell_output_bytes = Integer(
        int(os.environ.get("LMLOGITS_CELL_OUTPUT_BYTES", 256 * 1024)),
        help="Bytes of output kept per cell (the rest is cut, with a note).",
    ).tag(config=True)
    notebook_output_bytes = Integer(
        int(os.environ.get("LMLOGITS_NOTEBOOK_OUTPUT_BYTES", 4 * 1024 * 1024)),
        help="Bytes of output kept per notebook.",
    ).tag(config=True)
    submission_seconds = Integer(
        int(os.environ.get("LMLOGITS_SUBMISSION_SECONDS", 900)),
        help="Wall-clock budget of one submission; later cells are not run.",
    ).tag(config=True)
    check_seconds = Integer(
        int(os.environ.get("LMLOGITS_CHECK_SECONDS", 30)),
        help="Time a student's function gets per call in a probe.",
    ).tag(config=True)

    # --- kernel start: sandboxed launcher, ipc sockets in a private folder -----------

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        mode = sandbox.sandbox_mode()
        settings = current_settings()
        self._kernel_dir = tempfile.mkdtemp(prefix="k-", dir=kernel_parent(settings))
        os.chmod(self._kernel_dir, 0o711)
        km.transport = "ipc"
        km.ip = os.path.join(self._kernel_dir, "k")
        km.connection_file = os.path.join(self._kernel_dir, "connection.json")
        warm = os.environ.get(WARM_SOCKET_ENV)
        if warm:
            argv = [sys.executable, "-m", "lmlogits_grader.warm_kernel", "launch"]
        elif mode == "bwrap":
            argv = [sys.executable, "-m", "lmlogits_grader.sandbox", "run"]
        else:
            argv = [sys.executable, "-m", "ipykernel_launcher"]
        env = {sandbox.MODE_ENV: mode, sandbox.SETTINGS_ENV: settings.to_json(),
               sandbox.KERNEL_DIR_ENV: self._kernel_dir}
        if warm:
            env[WARM_SOCKET_ENV] = warm
        km._kernel_spec = KernelSpec(
            argv=[*argv, "-f", "{connection_file}"], display_name="sandboxed", language="python",
            interrupt_mode="signal", env=env,
        )
        return km

    # --- the notebook ------------------------------------------------------------------

    def preprocess(self, nb, resources=None, km=None):
        _require_sandbox()
        self._kernel_died = ""
        self._answers: dict[str, object] = {}
        self._function_timed_out = False
        self._notebook_bytes = 0
        self._deadline = time.monotonic() + self.submission_seconds
        self._kernel_dir = None
        nb.metadata.pop(PROBES_KEY, None)
        broken = nb.metadata.get(BROKEN_KEY)
        if broken:  # collect could not read the file: run nothing, the judge scores 0
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs = [_error_output("BrokenSubmission", f"not run: {broken}")]
            nb.metadata[PROBES_KEY] = {"answers": {}, "lost_reason": str(broken)}
            return nb, resources
        try:
            nb, resources = self._execute_notebook(nb, resources, km)
        except DeadKernelError:
            self._kernel_died = self._kernel_died or "the kernel died"
        finally:
            if self._kernel_dir:
                shutil.rmtree(self._kernel_dir, ignore_errors=True)
        nb.metadata[PROBES_KEY] = {"answers": self._answers, "lost_reason": self._kernel_died}
        return nb, resources

    def _execute_notebook(self, nb, resources, km):
        """nbconvert's ``ExecutePreprocessor.preprocess``, then the function's probes.

        The probes that call ``predict_next_tokens`` on hidden inputs run after the
        notebook's last cell, so no cell of the notebook runs after a hidden call (a
        function that keeps its arguments has no cell left to print them in).
        """
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._probe_seconds = 0.0
        self._cell_seconds: dict[str, float] = {}
        started = time.perf_counter()
        with self.setup_kernel():
            info_msg = self.wait_for_reply(self.kc.kernel_info())
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            kernel_started = time.perf_counter()
            for index, cell in enumerate(self.nb.cells):
                self.preprocess_cell(cell, resources, index)
            present = {
                cell.metadata.nbgrader.get("grade_id") for cell in self.nb.cells
                if cell.cell_type == "code" and utils.is_grade(cell)
            }
            for grade_id in sorted(probe.FUNCTION_CELLS & present):
                if self._kernel_died or time.monotonic() >= self._deadline:
                    break
                self._run_probe(grade_id)
            finished = time.perf_counter()
        self.set_widgets_metadata()
        write_timings({
            "kernel start": kernel_started - started,
            "notebook cells": finished - kernel_started - self._probe_seconds,
            "probes": self._probe_seconds,
            "kernel shutdown": time.perf_counter() - finished,
            **{f"cell {name}": seconds for name, seconds in self._cell_seconds.items()},
        })
        return self.nb, self.resources

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        if cell is not None and cell.get("metadata", {}).get("lmlogits_probe"):
            timeout = cell.metadata["lmlogits_probe"]
        remaining = max(1, int(self._deadline - time.monotonic()))
        return remaining if timeout is None else min(timeout, remaining)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._kernel_died:
            cell.outputs = [_error_output("DeadKernelError", f"not run: {self._kernel_died}")]
            return cell, resources
        if time.monotonic() >= self._deadline:
            cell.outputs = [_error_output(
                "SubmissionTimeLimit",
                f"not run: this submission used up its {self.submission_seconds} s")]
            return cell, resources
        self._cell_bytes = 0
        self._cut = False
        began = time.perf_counter()
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._kernel_died = "the kernel died in an earlier cell"
            cell.outputs.append(_error_output("DeadKernelError",
                                              "the kernel died while running this cell"))
            return cell, resources
        name = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"
        self._cell_seconds[name] = time.perf_counter() - began
        if self._cut:
            cell.outputs.append(_note(
                f"[output cut: more than {self.cell_output_bytes:,} bytes in this cell or "
                f"{self.notebook_output_bytes:,} in the notebook]"))
        if any(o.get("ename") in _TIMEOUT_ENAMES for o in cell.outputs):
            self._stop_if_unresponsive()
        graded = utils.is_grade(cell)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") if graded else None
        if grade_id in probe.VARIABLES and not self._kernel_died:
            self._run_probe(grade_id)
        return cell, resources

    # --- probes ------------------------------------------------------------------------

    def _run_hidden(self, source: str, timeout: int) -> NotebookNode:
        """Run code that is not part of the notebook; return its cell (outputs included).

        nbclient writes an executed cell back at its index, so the cell is appended for
        the run and removed afterwards. Only the probe's answer is kept (see output()).
        """
        cell = NotebookNode(cell_type="code", id=f"lmlogits-probe-{len(self.nb.cells)}",
                            source=source, outputs=[], execution_count=None,
                            metadata=NotebookNode(lmlogits_probe=timeout))
        self.nb.cells.append(cell)
        self._probing = True
        try:
            self.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self._probing = False
            self.nb.cells.pop()
        return cell

    def _run_probe(self, grade_id: str) -> None:
        seconds = self.check_seconds
        source = probe.probe_source(grade_id, seconds, skip_calls=self._function_timed_out)
        calls = len(probe.CALLS.get(grade_id, ())) + 2 * len(probe.ISOLATED_CALLS)
        timeout = int(seconds * (1 if self._function_timed_out else calls)) + 10
        began = time.perf_counter()
        try:
            cell = self._run_hidden(source, timeout)
        except DeadKernelError:
            self._kernel_died = "the kernel died while the grader called predict_next_tokens"
            return
        finally:
            self._probe_seconds += time.perf_counter() - began
        answer = None
        for output in cell.outputs:
            data = output.get("data", {}) if output.get("output_type") == "display_data" else {}
            if isinstance(data.get(probe.MIME), dict):
                answer = data[probe.MIME]
        if answer is not None:
            self._answers[grade_id] = answer
            if probe.timed_out(answer):
                self._function_timed_out = True
        if any(o.get("ename") in _TIMEOUT_ENAMES for o in cell.outputs):
            self._function_timed_out = True
            self._stop_if_unresponsive()

    # --- outputs -----------------------------------------------------------------------

    def output(self, outs, msg, display_id, cell_index):
        if getattr(self, "_probing", False):
            # only the probe's own answer is kept, and only for the grader
            if probe.MIME not in msg.get("content", {}).get("data", {}):
                return None
            return super().output(outs, msg, display_id, cell_index)
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return out
        size = _output_size(out)
        if (self._cell_bytes + size > self.cell_output_bytes
                or self._notebook_bytes + size > self.notebook_output_bytes):
            self._cut = True
            keep = min(self.cell_output_bytes - self._cell_bytes,
                       self.notebook_output_bytes - self._notebook_bytes)
            if out.get("output_type") == "stream" and keep > 0:
                out["text"] = out["text"][:keep]
                size = len(out["text"])
            else:
                outs.remove(out)
                return None
        self._cell_bytes += size
        self._notebook_bytes += size
        return out

    # --- a kernel that does not come back --------------------------------------------

    def _stop_if_unresponsive(self) -> None:
        """After a timeout, and nbclient's wait for the cell's last outputs (iopub_timeout,
        4 s): give the kernel 2 s more to answer a ping; if it does not, kill it. A kernel
        that took the interrupt has answered in milliseconds by then."""
        # the ping prints nothing: no outputs to wait for after it
        waits_for_outputs, self.iopub_timeout = self.iopub_timeout, 1
        try:
            ping = self._run_hidden("pass", 2)
        except DeadKernelError:
            self._kernel_died = "the kernel died"
            return
        finally:
            self.iopub_timeout = waits_for_outputs
        if any(o.get("ename") in _TIMEOUT_ENAMES for o in ping.outputs):
            self._kernel_died = "the kernel stopped responding (it ignored an interrupt)"
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # already gone
                pass
