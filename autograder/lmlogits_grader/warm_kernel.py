"""Warm kernels: pay for importing torch and loading the model once per worker.

Every submission of this assignment starts a kernel, imports torch, transformers and
pandas, and loads the model before any student code runs: seconds of identical work.
A *zygote* process does that work once, then, for each submission, forks a child that
becomes the submission's ipykernel.

Nothing in this module may hold a secret: the zygote runs inside the sandbox
(:mod:`lmlogits_grader.sandbox`), where this file is visible.

- ``serve``: the zygote. It runs inside one bubblewrap sandbox per worker (started by
  :func:`start_zygote`), pre-imports and pre-loads, then listens on a Unix socket that
  only the grader's user can reach. For each request it forks a child that, before any
  student code runs, gets a PID, mount and IPC namespace and ``/tmp`` of its own and
  drops to the kernel's unprivileged user with resource limits
  (:func:`lmlogits_grader.sandbox.isolate_forked_kernel`, ``lock_down``). The child
  cannot see, signal or trace the zygote, and what it leaves behind (files in ``/tmp``,
  processes, System V queues and shared memory, changed weights in its copy-on-write
  memory) dies with it.
- ``launch``: what the kernelspec runs (``argv`` in ``kernel.json``), outside the
  sandbox. jupyter_client sees this small process as "the kernel": it forwards
  interrupts and terminations through the zygote and exits with the kernel's status.
  When it goes away, the zygote kills the kernel.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET_ENV = "LMLOGITS_WARM_SOCKET"
KERNEL_DIR_ENV = "LMLOGITS_KERNEL_DIR"  # sandbox.KERNEL_DIR_ENV: the launcher stays light
_torch_threads = 1  # the zygote's torch thread count before it was set to 1
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


# --- the zygote ----------------------------------------------------------------------


def _preload() -> None:
    """Import what every submission imports, and load the model the kernels load."""
    import torch

    global _torch_threads
    _torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP thread pool may exist before fork
    import ipykernel.kernelapp  # noqa: F401  (IPython, zmq, tornado)
    import pandas  # noqa: F401
    from transformers.utils import logging as transformers_logging

    import lmlogits

    transformers_logging.disable_progress_bar()  # the zygote's stderr is the grader's
    lmlogits.load_model_and_tokenizer()  # cached in lmlogits.model for every child
    transformers_logging.enable_progress_bar()
    # pyplot, with the backend ipykernel would choose (matplotlib reads MPLBACKEND when it
    # is imported). The backend module itself is loaded by each kernel on its first
    # figure, where it hooks into that kernel's IPython to display figures.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    import matplotlib.pyplot  # noqa: F401

    _draw_once()


def _draw_once() -> None:
    """Show a table and draw a chart as every submission does, without pyplot's list of
    figures: pandas' table template, matplotlib's fonts and renderer and IPython's PNG
    export are then loaded once here, not in each kernel's first table and first plot."""
    import pandas
    from IPython.core.pylabtools import print_figure  # what the inline backend calls
    from matplotlib.figure import Figure

    import lmlogits

    table = pandas.DataFrame({"tokens": [" a", " b"], "probabilities": [0.75, 0.25]})
    lmlogits.show_table(table).to_html()
    figure = Figure()
    lmlogits.plot_distribution(table, title="a", ax=figure.subplots())
    print_figure(figure, "png")


def _become_kernel(request: dict, fds: list[int], settings):
    """In the forked child: isolate (sandboxed mode), take the launcher's stdio, run ipykernel."""
    from lmlogits_grader import sandbox

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    kernel_dir = request.get("kernel_dir") or None
    if settings is not None:
        # returns in the kernel, PID 2 of a new PID namespace
        sandbox.isolate_forked_kernel(settings, kernel_dir)
        sandbox.close_inherited_files()
        sandbox.lock_down(settings, kernel_dir, sandbox.address_space())
    else:
        sandbox.close_inherited_files()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
    sys.path[0] = os.getcwd()
    import torch

    torch.set_num_threads(_torch_threads)  # what torch would have chosen in this process
    from ipykernel.kernelapp import launch_new_instance

    # parent_handle=1: no parent poller (the zygote kills the kernel when its launcher
    # goes away) and no console banner
    sys.argv = ["ipykernel_launcher", *request["argv"], "--IPKernelApp.parent_handle=1"]
    try:
        launch_new_instance()
    finally:
        os._exit(0)


def serve(socket_path: str) -> None:
    """Run the zygote until its parent process goes away (or its socket is removed)."""
    from lmlogits_grader import sandbox

    settings = None
    if sandbox.sandbox_mode() == "bwrap":
        settings = sandbox.SandboxSettings.from_json(os.environ[sandbox.SETTINGS_ENV])
    _preload()
    import ctypes

    # kernels of the same user (non-root graders) may not trace or read the zygote
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    listener.bind(socket_path + ".tmp")
    os.replace(socket_path + ".tmp", socket_path)  # appears only once ready
    listener.listen()
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    while os.getppid() == parent and os.path.exists(socket_path):
        for key, _ in selector.select(timeout=0.2):
            if key.fileobj is listener:
                connection, _ = listener.accept()
                try:
                    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
                    request = json.loads(message)
                except (OSError, ValueError):
                    connection.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _become_kernel(request, fds, settings)
                for fd in fds:
                    os.close(fd)
                connection.sendall(f"{pid}\n".encode())
                children[pid] = connection
                selector.register(connection, selectors.EVENT_READ, pid)
            else:
                # the launcher sent a signal number, or went away (then: kill the kernel)
                pid = key.data
                try:
                    data = key.fileobj.recv(64)
                except OSError:
                    data = b""
                for line in data.decode(errors="replace").split():
                    if line.isdigit() and int(line) == signal.SIGINT:
                        _signal(pid, signal.SIGINT)
                    elif line.isdigit():
                        _signal(pid, signal.SIGTERM)  # the relay stops its namespace
                if not data:
                    _signal(pid, signal.SIGTERM)
                    selector.unregister(key.fileobj)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            connection = children.pop(pid, None)
            if connection is not None:
                try:
                    selector.unregister(connection)
                except (KeyError, ValueError):
                    pass
                try:
                    connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                connection.close()
    for pid in children:
        _signal(pid, signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def start_zygote(socket_path: Path, kernel_parent: Path | None = None,
                 wait: float = 600.0) -> subprocess.Popen:
    """Start a zygote listening on ``socket_path``; return its ``Popen`` once it is ready.

    In sandboxed mode the zygote runs inside bubblewrap and sees, besides the read-only
    system, only the socket's folder and ``kernel_parent`` (where its kernels' private
    folders are made).
    """
    from lmlogits_grader import sandbox
    from lmlogits_grader.execute import current_settings

    settings = current_settings()
    command = [sys.executable, "-m", "lmlogits_grader.warm_kernel", "serve", str(socket_path)]
    env = dict(os.environ)
    if sandbox.sandbox_mode() == "bwrap":
        command = sandbox.bwrap_command(settings, None, command, writable=(
            str(socket_path.parent), str(kernel_parent)))
        env = None
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + wait
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the warm-kernel zygote did not start (socket {socket_path})")
        time.sleep(0.05)
    return process


# --- the launcher (what jupyter_client starts) ---------------------------------------


def launch(argv: list[str]) -> int:
    """Ask the zygote for a kernel with these ipykernel arguments; wait for it to end.

    Killed when the grading process that started it dies: the zygote then sees the
    connection close and stops the kernel."""
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent or parent == 1:
        return 1
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(os.environ[SOCKET_ENV])
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "kernel_dir": os.environ.get(KERNEL_DIR_ENV, ""),
    }
    socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
    reader = connection.makefile("r")
    int(reader.readline())  # the kernel's pid in the zygote: it has started

    def forward(signum, frame):
        try:
            connection.sendall(f"{signum}\n".encode())
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        line = reader.readline()
        if not line:
            return 1
        if line.startswith("exit "):
            return int(line.split()[1]) & 0xFF


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1])
        return 0
    if argv[:1] == ["launch"]:
        return launch(argv[1:])
    print("usage: python -m lmlogits_grader.warm_kernel serve SOCKET | launch -f FILE",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
