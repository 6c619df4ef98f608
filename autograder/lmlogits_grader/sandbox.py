"""The sandbox a student's kernel runs in: bubblewrap outside, a locked-down process inside.

Nothing in this module may hold a secret: its file is the one piece of the grader that
is visible inside the sandbox (the warm-kernel zygote imports it there).

Two layers, both set up before any student code runs:

1. **bubblewrap** (``bwrap``, Debian package ``bubblewrap``) builds a new root from a
   short list of read-only folders: the system (``/usr``, ``/etc``, ...), the Python
   installation, the virtual environment, the student package ``lmlogits`` and the
   model. Everything else, the course folder, the gradebook, other submissions, the
   grader's source, the home folder, does not exist in there. There is no network (a
   new network namespace with only a loopback), a private ``/tmp`` of limited size and
   a PID namespace of its own.
2. **the kernel process** (:func:`lock_down`) then drops to an unprivileged user id
   (when the grader runs as root), sets ``no_new_privs`` and resource limits: processes,
   address space, CPU time, file size and open files. A warm kernel, forked from a
   zygote that lives inside one bubblewrap sandbox, first gets a PID namespace, mount
   namespace, IPC namespace and ``/tmp`` of its own (:func:`isolate_forked_kernel`), so
   that nothing it leaves behind, file, process or System V message queue or shared
   memory, reaches the next submission.

The grader talks to the kernel over Unix sockets (ZeroMQ ``ipc``) in a per-kernel folder,
the only folder the sandbox shares with the outside (a warm kernel's is inside its
worker's folder of kernels, which it sees with the zygote's folder: both closed to the
kernel's user by their permissions).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Environment variables the grader sets for the kernel launchers.
MODE_ENV = "LMLOGITS_SANDBOX"  # "bwrap" (default) or "off" (--no-sandbox)
SETTINGS_ENV = "LMLOGITS_SANDBOX_SETTINGS"  # JSON of SandboxSettings
KERNEL_DIR_ENV = "LMLOGITS_KERNEL_DIR"  # the per-kernel folder shared with the grader

UNSANDBOXED_WARNING = (
    "WARNING: submissions run UNSANDBOXED (--no-sandbox): student code can read and change "
    "the course, the gradebook and other submissions"
)

_GiB = 1 << 30
_MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (README "How grading is made safe" gives the reasons)."""

    memory_bytes: int = 3 * _GiB  # address space a kernel may add (warm) or use (fresh: + base)
    processes: int = 256  # threads count as processes for RLIMIT_NPROC
    cpu_seconds: int = 600
    file_bytes: int = 64 * _MiB  # largest file a kernel may write
    open_files: int = 1024
    tmp_bytes: int = 256 * _MiB  # size of the private /tmp (in memory)


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox shows and allows; computed by the grader, read by the launchers."""

    readonly: tuple[str, ...]  # folders and files bound read-only at the same path
    shared_root: str  # per-kernel folders are created below it (bound read-write)
    uid: int | None  # the kernel's user id; None keeps the grader's (non-root graders)
    env: dict[str, str] = field(default_factory=dict)  # the kernel's whole environment
    limits: Limits = field(default_factory=Limits)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SandboxSettings:
        data = json.loads(text)
        data["readonly"] = tuple(data["readonly"])
        data["limits"] = Limits(**data["limits"])
        return cls(**data)


def sandbox_mode() -> str:
    mode = os.environ.get(MODE_ENV, "bwrap").strip().lower() or "bwrap"
    if mode not in ("bwrap", "off"):
        raise ValueError(f"`{MODE_ENV}` must be 'bwrap' or 'off', got {mode!r}")
    return mode


def bwrap_problem() -> str:
    """'' when bubblewrap can build a sandbox here, else one line saying what is missing."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform}): grade with --no-sandbox"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed: `apt-get install bubblewrap` (Debian/Ubuntu)"
    probe = [bwrap, *_namespace_flags(), "--ro-bind", "/", "/", "--", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap does not run: {error}"
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.strip()[:200]}"
    return ""


class SandboxUnavailable(RuntimeError):
    """Grading was asked to sandbox student code, and this machine cannot."""


def require() -> None:
    """Refuse to grade unsandboxed unless the instructor said so (``--no-sandbox``)."""
    if sandbox_mode() == "off":
        return
    problem = bwrap_problem()
    if problem:
        raise SandboxUnavailable(
            f"cannot run student code in a sandbox here: {problem}. Grading unsandboxed "
            "lets student code read and change the course, the gradebook and other "
            "submissions; to do it anyway, pass --no-sandbox (make grade NO_SANDBOX=1)."
        )


def disable() -> None:
    """Grade without the sandbox in this process and the ones it starts."""
    os.environ[MODE_ENV] = "off"


def _namespace_flags() -> list[str]:
    flags = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
             "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        flags.append("--unshare-user")  # an unprivileged grader needs a user namespace
    return flags


def kernel_uid(slot: int = 0) -> int | None:
    """A dedicated unprivileged user id per worker slot when the grader is root."""
    return 61000 + slot if os.geteuid() == 0 else None


_claimed_slot: tuple[int, int] | None = None  # (slot, the open lock file's descriptor)


SLOTS_ENV = "LMLOGITS_SLOTS"  # "first-last": the worker slots this grader may claim


def slot_range() -> tuple[int, int]:
    """The worker slots to claim from: ``$LMLOGITS_SLOTS`` ("first-last", within 1-99),
    else 1-99. Two graders given ranges that do not overlap never share a kernel user."""
    text = os.environ.get(SLOTS_ENV, "").strip()
    if not text:
        return 1, 99
    first, _, last = text.partition("-")
    try:
        bounds = int(first), int(last)
    except ValueError:
        bounds = (0, 0)
    if not 1 <= bounds[0] <= bounds[1] <= 99:
        raise ValueError(f"{SLOTS_ENV} must be two slot numbers like 1-49 (within 1-99, "
                         f"first <= last), got {text!r}")
    return bounds


def claim_slot(first: int | None = None, last: int | None = None) -> int:
    """A worker slot (and with it its kernels' user id) that no other live grading
    worker on this machine holds, kept until this process ends; from ``first`` to
    ``last`` (default: :func:`slot_range`).

    Each slot is a lock file under ``shared_root()/lmlogits-slots-<uid>``; its ``flock`` goes
    away with the process that took it, however it ends, so a killed worker's slot is
    free again for the worker that replaces it.
    """
    global _claimed_slot
    if _claimed_slot is not None:
        return _claimed_slot[0]
    if first is None or last is None:
        first, last = slot_range()
    folder = shared_root() / f"lmlogits-slots-{os.geteuid()}"  # one set per grading user
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077 or folder.is_symlink():
        raise RuntimeError(f"{folder} is not this user's private folder: remove it")
    for slot in range(first, last + 1):
        descriptor = os.open(folder / f"slot-{slot}.lock",
                             os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        _claimed_slot = (slot, descriptor)
        return slot
    raise RuntimeError(f"every grading slot from {first} to {last} is taken on this machine")


def shared_root() -> Path:
    """Where per-kernel folders go: outside /tmp (which each kernel gets fresh)."""
    for candidate in ("/var/tmp", tempfile.gettempdir()):
        if os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path(tempfile.gettempdir())


def bwrap_command(settings: SandboxSettings, kernel_dir: str | None, command: list[str],
                  writable: tuple[str, ...] = ()) -> list[str]:
    """The bubblewrap command line that runs ``command`` in the sandbox.

    ``kernel_dir`` and ``writable`` are the only folders bound read-write.
    """
    writable = tuple(w for w in (*writable, kernel_dir) if w)
    args = ["bwrap", *_namespace_flags(), "--die-with-parent", "--new-session"]
    for system in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        if os.path.exists(system):
            args += ["--ro-bind", system, system]
    # the private /tmp first: folders bound below are visible on top of it (a repository
    # or venv under /tmp, as in a CI checkout)
    args += ["--size", str(settings.limits.tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    shown = [p for p in settings.readonly if os.path.exists(p)]
    # bwrap would create the folders above a mount point as 0700: the kernel's user
    # could not pass through them
    parents = {str(parent) for p in [*shown, *writable] for parent in Path(p).parents}
    for parent in sorted(parents - {"/"}, key=lambda p: p.count("/")):
        args += ["--perms", "0755", "--dir", parent]
    for path in shown:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(16 * _MiB), "--perms", "1777", "--tmpfs", "/dev/shm"]
    for folder in writable:
        args += ["--bind", folder, folder]
    args += ["--chdir", "/tmp", "--clearenv"]
    for name, value in settings.env.items():
        args += ["--setenv", name, value]
    # for lock_down() inside; it then leaves only settings.env
    args += ["--setenv", SETTINGS_ENV, settings.to_json(), "--setenv", KERNEL_DIR_ENV,
             kernel_dir or ""]
    return [*args, "--", *command]


# --- inside the sandbox: the kernel's own process ------------------------------------

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_MOVE = 0x1, 0x20, 0x1000, 0x2000


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    libc = _libc()
    result = libc.mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


def lock_down(settings: SandboxSettings, kernel_dir: str | None, current_address_space: int = 0):
    """Drop to the kernel's user id, forbid new privileges, set the resource limits.

    ``current_address_space``: the bytes the process already maps (a forked warm kernel
    inherits torch and the model); the address-space limit is that plus the budget.
    """
    limits = settings.limits
    libc = _libc()
    os.makedirs("/tmp/work", exist_ok=True)
    os.makedirs("/tmp/home", exist_ok=True)
    if settings.uid is not None:
        for folder in ("/tmp/work", "/tmp/home"):
            os.chown(folder, settings.uid, settings.uid)
        if kernel_dir is not None:  # the connection file is written by the grader
            os.chown(kernel_dir, settings.uid, settings.uid)
            for entry in os.scandir(kernel_dir):
                os.chown(entry.path, settings.uid, settings.uid, follow_symlinks=False)
    os.chdir("/tmp/work")
    limits_to_set = [
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    if current_address_space:
        limits_to_set.append((resource.RLIMIT_AS, current_address_space + limits.memory_bytes))
    for which, value in limits_to_set:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    if settings.uid is not None:
        os.setgroups([])
        os.setresgid(settings.uid, settings.uid, settings.uid)
        os.setresuid(settings.uid, settings.uid, settings.uid)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    # die with the parent (the relay, or bwrap): set after setresuid, which clears it
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    os.environ.clear()
    os.environ.update(settings.env)


def address_space() -> int:
    """Bytes this process maps now (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _under_tmp(path: str) -> str | None:
    relative = os.path.relpath(os.path.realpath(path), "/tmp")
    return None if relative == "." or relative.startswith("..") else relative


def _private_tmp(settings: SandboxSettings, kernel_dir: str | None) -> None:
    """A fresh tmpfs at /tmp that still shows the read-only folders under /tmp (and the
    kernel's folder): it is built at a staging point, then moved over /tmp."""
    staging = "/dev/.lmlogits-tmp"
    os.makedirs(staging, exist_ok=True)
    size = settings.limits.tmp_bytes
    _mount("tmpfs", staging, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},mode=1777")
    kept = [(p, True) for p in settings.readonly] + [(kernel_dir, False)] * bool(kernel_dir)
    for path, readonly in kept:
        relative = _under_tmp(path)
        if relative is None or not os.path.exists(path):
            continue
        target = os.path.join(staging, relative)
        parent = os.path.dirname(target)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            open(target, "a").close()
        _mount(path, target, None, _MS_BIND | _MS_REC, None)
        # as bubblewrap binds them for a fresh kernel: no set-user-id, no devices
        _mount("", target, None, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
               | (_MS_RDONLY if readonly else 0), None)
    device = os.stat(staging).st_dev
    for folder, subdirs, _ in os.walk(staging):  # the folders made above a mount point
        subdirs[:] = [d for d in subdirs if os.stat(os.path.join(folder, d)).st_dev == device]
        os.chmod(folder, 0o1777 if folder == staging else 0o755)
    _mount(staging, "/tmp", None, _MS_MOVE, None)


def isolate_forked_kernel(settings: SandboxSettings, kernel_dir: str | None = None) -> None:
    """In a child forked from the warm zygote: a PID namespace, mount namespace, IPC
    namespace (System V queues and shared memory die with the kernel) and /tmp of its
    own. Returns in the kernel process; the calling process becomes a relay and
    an init process is put between them (see below). Neither ever returns.

    Three processes::

        relay (zygote's namespace) -> init (PID 1 of the new one) -> kernel (PID 2)

    The relay forwards interrupts and stops; the init reaps, forwards interrupts to the
    kernel and exits when the relay goes away (an init must *handle* its parent-death
    signal: unhandled signals do not reach a PID namespace's init). When the init exits,
    the kernel and every process it started are killed.
    """
    libc = _libc()
    if os.geteuid() == 0:
        _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC), "unshare")
    else:  # an unprivileged grader: a user namespace of its own gives the rights to mount
        uid, gid = os.geteuid(), os.getegid()
        _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC),
               "unshare")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    _mount("", "/", None, _MS_REC | _MS_PRIVATE, None)
    _private_tmp(settings, kernel_dir)
    _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={16 * _MiB},mode=1777")
    init = os.fork()
    if init == 0:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PDEATHSIG)")
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
        # read-only, as bubblewrap leaves them in the /proc this one covers
        for folder in ("/proc/bus", "/proc/irq"):
            if os.path.isdir(folder):
                _mount(folder, folder, None, _MS_BIND | _MS_REC, None)
                _mount("", folder, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID
                       | _MS_NODEV | _MS_NOEXEC, None)
        kernel = os.fork()
        if kernel == 0:
            return
        _init(kernel)
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    _relay(init)


def _init(kernel: int) -> None:
    """PID 1 of a warm kernel's namespace: reap, pass interrupts on, end with the kernel."""

    def interrupt(signum, frame):
        try:
            os.kill(kernel, signal.SIGINT)
        except ProcessLookupError:
            pass

    def stop(signum, frame):
        os._exit(1)

    signal.signal(signal.SIGINT, interrupt)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, stop)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _relay(init: int) -> None:
    """Forward interrupts to the init, stop it on any other signal; exit with its status."""

    def forward(signum, frame):
        try:
            os.kill(init, signal.SIGINT if signum == signal.SIGINT else signal.SIGKILL)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            _, status = os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def close_inherited_files(keep: tuple[int, ...] = (0, 1, 2)) -> None:
    """Close every file descriptor but ``keep`` (what a forked child inherits)."""
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


# --- the fresh-kernel launcher (kernelspec argv) -------------------------------------


def die_with_parent() -> None:
    """This process is killed when the one that started it dies (a kernel launcher whose
    grading process was killed must not keep its sandbox alive); exits at once if that
    already happened."""
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent or parent == 1:
        os._exit(1)


def run_kernel(argv: list[str]) -> int:
    """What jupyter_client starts for a fresh sandboxed kernel: bwrap around ipykernel.

    bwrap's own init is PID 1 of the sandbox: when the kernel exits, or this launcher or
    bwrap is killed, every process in the sandbox is killed; this launcher is killed when
    the grading process that started it dies. Interrupts are passed to
    the kernel (the init's child); any other signal to this launcher stops the sandbox.
    """
    die_with_parent()
    settings = SandboxSettings.from_json(os.environ[SETTINGS_ENV])
    kernel_dir = os.environ.get(KERNEL_DIR_ENV)
    inner = [sys.executable, "-m", "lmlogits_grader.sandbox", "enter", *argv]
    read_info, write_info = os.pipe()
    command = bwrap_command(settings, kernel_dir, inner)
    command[1:1] = ["--info-fd", str(write_info)]
    # a session of its own: jupyter_client interrupts by signalling the launcher's process
    # group, and bwrap would die of a SIGINT (the kernel gets it from forward() below)
    process = subprocess.Popen(command, pass_fds=(write_info,), env={}, start_new_session=True)
    os.close(write_info)
    with os.fdopen(read_info) as info:
        try:
            init = int(json.loads(info.read() or "{}").get("child-pid", 0))
        except ValueError:
            init = 0

    def forward(signum, frame):
        if signum == signal.SIGINT:
            for kernel in _children(init):
                try:
                    os.kill(kernel, signal.SIGINT)
                except ProcessLookupError:
                    pass
            return
        for pid in (init, process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        try:
            return process.wait()
        except InterruptedError:
            continue


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except (OSError, ValueError):
        return []


def enter(argv: list[str]) -> None:
    """Inside bwrap (fresh kernels): lock the process down, then become ipykernel."""
    settings = SandboxSettings.from_json(os.environ[SETTINGS_ENV])
    kernel_dir = os.environ.get(KERNEL_DIR_ENV) or None
    # a fresh process has nothing mapped yet that matters: give it a fixed budget
    lock_down(settings, kernel_dir, current_address_space=address_space() + _GiB)
    # parent_handle=1: no parent poller (bwrap ends the kernel with the launcher), no banner
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *argv,
                              "--IPKernelApp.parent_handle=1"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return run_kernel(argv[1:])
    if argv[:1] == ["enter"]:
        enter(argv[1:])
    if argv[:1] == ["check"]:
        problem = bwrap_problem()
        print(problem or "bubblewrap works here")
        return 1 if problem else 0
    print("usage: python -m lmlogits_grader.sandbox run|enter -f FILE | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
