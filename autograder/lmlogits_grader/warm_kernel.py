"""Warm kernels: pay for importing torch and loading the model once per worker.

Every submission of this assignment starts a kernel, imports torch, transformers and
pandas, and loads the model before any student code runs: seconds of identical work.
A *zygote* process does that work once, then, for each submission, forks a child that
becomes the submission's ipykernel. Each child is a separate process, a copy of the
untouched zygote: submissions stay isolated from one another, as with fresh kernels.

Pieces:

- ``serve``: the zygote. Pre-imports and pre-loads, then listens on a Unix socket; for
  each request it forks a kernel, reports its pid, and later its exit status.
- ``launch``: what the kernelspec runs (``argv`` in ``kernel.json``). jupyter_client
  sees this small process as "the kernel": it forwards interrupts and terminations to
  the forked kernel and exits with its exit status, so timeouts, interrupts and dead
  kernels behave as with an ordinary kernel. If it is killed, the forked kernel notices
  within a second and exits.

:func:`install_kernelspec` writes the kernelspec; :func:`start_zygote` starts a zygote.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

KERNEL_NAME = "lmlogits-warm"
_torch_threads = 1  # the zygote's torch thread count before it was set to 1
SOCKET_ENV = "LMLOGITS_WARM_SOCKET"


# --- the zygote ----------------------------------------------------------------------


def _preload() -> None:
    """Import what every submission imports, and load the model the grader uses."""
    import torch

    global _torch_threads
    _torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no OpenMP thread pool may exist before fork
    import ipykernel.kernelapp  # noqa: F401  (IPython, zmq, tornado)
    import matplotlib  # noqa: F401
    import pandas  # noqa: F401
    from transformers.utils import logging as transformers_logging

    import lmlogits
    import lmlogits_grader.checks  # noqa: F401

    transformers_logging.disable_progress_bar()  # the zygote's stderr is the grader's
    lmlogits.load_model_and_tokenizer()  # cached in lmlogits.model for every child
    transformers_logging.enable_progress_bar()


def _become_kernel(request: dict, fds: list[int], listener: socket.socket) -> None:
    """In the forked child: take the launcher's stdio, cwd and environment; run ipykernel."""
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # as jupyter_client does for its kernels: a parent to watch, and no console banner
    os.environ["JPY_PARENT_PID"] = str(request["launcher_pid"])
    sys.path[0] = request["cwd"]
    import torch

    torch.set_num_threads(_torch_threads)  # what torch would have chosen in this process
    launcher = request["launcher_pid"]

    def exit_with_launcher() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(launcher, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=exit_with_launcher, daemon=True).start()
    from ipykernel.kernelapp import launch_new_instance

    # a parent handle, as jupyter_client gives its kernels (ipykernel read JPY_PARENT_PID
    # when the zygote imported it): without one, ipykernel prints a console banner
    parent = f"--IPKernelApp.parent_handle={request['launcher_pid']}"
    sys.argv = ["ipykernel_launcher", *request["argv"], parent]
    try:
        launch_new_instance()
    finally:
        os._exit(0)


def serve(socket_path: str) -> None:
    """Run the zygote until its parent process goes away."""
    _preload()
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
    while os.getppid() == parent:
        for _ in selector.select(timeout=0.2):
            connection, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                _become_kernel(request, fds, listener)
            for fd in fds:
                os.close(fd)
            connection.sendall(f"{pid}\n".encode())
            children[pid] = connection
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
                    connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                connection.close()
    os.unlink(socket_path)


def start_zygote(socket_path: Path, env: dict[str, str] | None = None, wait: float = 600.0):
    """Start a zygote listening on ``socket_path``; return its ``Popen`` once it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lmlogits_grader.warm_kernel", "serve", str(socket_path)],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + wait
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the warm-kernel zygote did not start (socket {socket_path})")
        time.sleep(0.05)
    return process


# --- the launcher (what jupyter_client starts) ---------------------------------------


def launch(argv: list[str]) -> int:
    """Ask the zygote for a kernel with these ipykernel arguments; wait for it to end."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(os.environ[SOCKET_ENV])
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "launcher_pid": os.getpid(),
    }
    socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
    reader = connection.makefile("r")
    kernel_pid = int(reader.readline())

    def forward(signum, frame):
        try:
            os.kill(kernel_pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, forward)
    line = reader.readline()
    return int(line) if line.strip() else 1


def install_kernelspec(jupyter_dir: Path, socket_path: Path) -> Path:
    """Write ``<jupyter_dir>/kernels/lmlogits-warm/kernel.json`` for a zygote's socket.

    Put ``jupyter_dir`` on ``JUPYTER_PATH`` and select the kernel by name.
    """
    folder = jupyter_dir / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "lmlogits_grader.warm_kernel", "launch", "-f",
                 "{connection_file}"],
        "display_name": "Python 3 (warm, lmlogits grading)",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {SOCKET_ENV: str(socket_path)},
    }
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


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
