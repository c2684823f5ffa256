"""Run generated Python code in a sandboxed subprocess.

Layers, all set up before the code starts and all required (the call fails closed):

- new network, mount, PID, IPC and UTS namespaces (plus a user namespace when not run as root):
  no network but an unconfigured loopback, and every process of the run dies with the PID
  namespace's first process;
- a mount namespace where every mount is read-only except the run's temporary directory, with a
  private /proc, and closed directories on the way to the interpreter (such as /root) hidden
  under an empty tmpfs;
- an unprivileged uid (nobody) when run as root, no new privileges, a new session, and resource
  limits on address space, processes, CPU time, file size and core dumps;
- a wall-clock limit after which the whole PID namespace is killed, and output that is cut,
  not buffered, past `output_bytes`.

Process tree: the caller starts a launcher (outside the new PID namespace), which forks the
namespace's init, which forks the program. The launcher kills init at the caller's request and
waits for it; init's exit kills every process left in the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NoReturn

from taskseed.curation.errors import TaskseedError

NOBODY = 65534
WORKDIR_PREFIX = "taskseed-sandbox-"
_GRACE = 5.0

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _AT_RECURSIVE, _AT_FDCWD = 1, 2, 0x8000, -100
_SYS_MOUNT_SETATTR = 442
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38


@dataclass(frozen=True)
class SandboxLimits:
    seconds: float = 10.0
    memory_mb: int = 512
    processes: int = 32
    output_bytes: int = 65536
    file_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if min(self.seconds, self.memory_mb, self.processes, self.file_bytes) <= 0:
            raise ValueError(f"sandbox limits must be positive: {self}")
        if self.output_bytes < 0:
            raise ValueError(f"sandbox output_bytes must not be negative: {self}")


@dataclass(frozen=True)
class SandboxResult:
    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    stdout: str
    stderr: str
    truncated: bool
    seconds: float


class SandboxUnavailable(TaskseedError):
    """The sandbox cannot be set up here, so the code was not run."""


_PROBE = """\
import os, socket
assert os.getuid() != 0, "the code would run as root"
assert [n for _, n in socket.if_nameindex()] == ["lo"], "network interfaces are visible"
assert os.statvfs("/").f_flag & os.ST_RDONLY, "the root filesystem is writable"
open("probe", "w").close()
"""


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot be set up on this machine, in one line, or None when it can."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux, not {sys.platform}"
    try:
        result = _run(_PROBE, SandboxLimits(seconds=30))
    except (SandboxUnavailable, OSError) as err:
        return str(err)
    if result.status != "passed":
        lines = result.stderr.strip().splitlines() or [f"status {result.status}"]
        return f"sandbox self-test failed: {lines[-1]}"
    return None


def run_python(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run `source` as a Python program in the sandbox; raises SandboxUnavailable, never runs
    it unsandboxed."""
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(f"cannot run generated code safely: {problem}")
    return _run(source, limits)


def _run(source: str, limits: SandboxLimits) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
    read_end = write_end = -1
    try:
        Path(workdir, "main.py").write_text(source, encoding="utf-8")
        if os.geteuid() == 0:
            for path in (workdir, os.path.join(workdir, "main.py")):
                os.chown(path, NOBODY, NOBODY)
        read_end, write_end = os.pipe()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
               "LANG": "C.UTF-8"}
        config = {"workdir": workdir, "report": write_end, "limits": asdict(limits),
                  "python": sys.executable, "env": env, "expose": _interpreter_dirs()}
        boot = "from taskseed.judges.checks.sandbox import _launcher; _launcher()"
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, json.dumps(config)], cwd=workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(write_end,), start_new_session=True)
        os.close(write_end)
        write_end = -1
        stdout, stderr, truncated, timed_out = _collect(proc, limits)
        seconds = time.monotonic() - started
        os.set_blocking(read_end, False)
        try:
            report = os.read(read_end, 65536).decode()
        except BlockingIOError:
            report = ""
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
    lines = dict(line.split(" ", 1) for line in report.splitlines() if " " in line)
    if "error" in lines:
        raise SandboxUnavailable(f"sandbox setup failed: {lines['error']}")
    returncode = os.waitstatus_to_exitcode(int(lines["wait"])) if "wait" in lines else None
    if returncode is None and not timed_out:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [str(proc.returncode)]
        raise SandboxUnavailable(f"sandbox launcher ended unexpectedly: {tail[0]}")
    status = "timeout" if timed_out else "passed" if returncode == 0 else "failed"
    return SandboxResult(status, returncode, stdout.decode(errors="replace"),
                         stderr.decode(errors="replace"), truncated, round(seconds, 3))


def _collect(proc: subprocess.Popen[bytes], limits: SandboxLimits) -> tuple[
        bytes, bytes, bool, bool]:
    """Read both pipes up to the output cap until the run ends; stop it at the time limit."""
    assert proc.stdout is not None and proc.stderr is not None
    outputs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    truncated = timed_out = False
    deadline = time.monotonic() + limits.seconds
    with selectors.DefaultSelector() as selector:
        for stream, buffer in outputs.items():
            selector.register(stream, selectors.EVENT_READ, buffer)
        while selector.get_map() or proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:
                    proc.kill()
                    break
                timed_out = True
                proc.terminate()
                deadline = time.monotonic() + _GRACE
                continue
            for key, _ in selector.select(min(left, 0.1)):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                room = limits.output_bytes - len(key.data)
                key.data.extend(data[:room])
                truncated = truncated or len(data) > room
    proc.wait()
    for stream in outputs:
        stream.close()
    return bytes(outputs[proc.stdout]), bytes(outputs[proc.stderr]), truncated, timed_out


def _interpreter_dirs() -> list[str]:
    """The directories the sandboxed interpreter needs to reach."""
    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
            os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    return sorted({os.path.realpath(d) for d in dirs}, key=len)


def _libc_call(name: str, *args: object) -> int:
    result = getattr(_libc(), name)(*args)
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")
    return result


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _libc_call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def _mount_setattr(path: str, flags: int, attr_set: int, attr_clr: int) -> None:
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, 0)
    _libc_call("syscall", ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD),
               path.encode(), ctypes.c_uint(flags), ctypes.byref(attr),
               ctypes.c_size_t(ctypes.sizeof(attr)))


def _fail(report: int, step: str, err: BaseException) -> NoReturn:
    os.write(report, f"error {step}: {err}\n".encode())
    os._exit(125)


def _launcher() -> None:
    """The launcher process: create the namespaces, fork their init, kill it on SIGTERM."""
    config = json.loads(sys.argv[1])
    report = config["report"]
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWUTS
    try:
        if os.geteuid() == 0:
            _libc_call("unshare", flags)
        else:
            uid, gid = os.getuid(), os.getgid()
            _libc_call("unshare", flags | _CLONE_NEWUSER)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    except OSError as err:
        _fail(report, "cannot create namespaces", err)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    child = os.fork()
    if child == 0:
        _init(config)
    child_fd = os.pidfd_open(child)

    def stop(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(child_fd, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.close(report)
    os.waitpid(child, 0)


def _init(config: dict) -> NoReturn:
    """The PID namespace's init: isolate the filesystem, fork the program, report its status."""
    report = config["report"]
    try:
        _libc_call("prctl", _PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        _libc_call("prctl", _PR_SET_DUMPABLE, 0, 0, 0, 0)
        _isolate_files(config["workdir"], config["expose"])
    except OSError as err:
        _fail(report, "cannot isolate the filesystem", err)
    child = os.fork()
    if child == 0:
        _program(config)
    while True:
        pid, status = os.wait()
        if pid == child:
            os.write(report, f"wait {status}\n".encode())
            os._exit(0)


def _isolate_files(workdir: str, expose: list[str]) -> None:
    """Make every mount read-only except `workdir`, with this namespace's own /proc."""
    fds = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in [*expose, workdir]}
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for path, fd in fds.items():
        _reach(path, fd)
    _mount(f"/proc/self/fd/{fds[workdir]}", workdir, None, _MS_BIND)
    _mount_setattr("/", _AT_RECURSIVE, _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0)
    _mount_setattr(workdir, 0, 0, _MOUNT_ATTR_RDONLY)
    for fd in fds.values():
        os.close(fd)


def _reach(path: str, fd: int) -> None:
    """Let an unprivileged user reach `path`: closed ancestors are hidden under an empty tmpfs
    and `path` (open as `fd`) is mounted back in place."""
    current = "/"
    for name in Path(path).parts[1:-1]:
        current = os.path.join(current, name)
        if not os.path.isdir(current):
            os.mkdir(current, 0o755)
        elif not os.stat(current).st_mode & stat.S_IXOTH:
            _mount("tmpfs", current, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=64k")
    if not os.path.isdir(path):
        os.mkdir(path, 0o755)
    if not os.path.samestat(os.stat(path), os.fstat(fd)):
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)


def _program(config: dict) -> NoReturn:
    """Drop privileges, set the limits and exec the program."""
    report, limits, python = config["report"], config["limits"], config["python"]
    try:
        os.setsid()
        cpu = math.ceil(limits["seconds"]) + 1
        for which, value in [
            (resource.RLIMIT_AS, limits["memory_mb"] << 20),
            (resource.RLIMIT_NPROC, limits["processes"]),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, limits["file_bytes"]),
            (resource.RLIMIT_CORE, 0),
        ]:
            resource.setrlimit(which, (value, value + 1 if which == resource.RLIMIT_CPU else value))
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
        _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        os.chdir(config["workdir"])
        os.set_inheritable(report, False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except OSError as err:
        _fail(report, "cannot drop privileges", err)
    try:
        script = os.path.join(config["workdir"], "main.py")
        os.execve(python, [python, "-I", script], config["env"])
    except OSError as err:
        os.write(2, f"sandbox: cannot start {python}: {err}\n".encode())
        os._exit(126)
