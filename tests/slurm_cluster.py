"""A real one-node Slurm cluster for tests: munge plus slurmctld and slurmd in a temp dir.

Needs the Debian packages slurmctld, slurmd, slurm-client and munge, and root. `start` is
idempotent; `stop` ends only the daemons this helper started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = "slurmctld slurmd slurm-client munge"
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged", "munge", "unmunge")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET_DIR = Path("/run/munge")

CONF = """ClusterName=taskseedtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=30
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmMissing(RuntimeError):
    """Slurm or munge is not installed, or the cluster did not come up."""


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmMissing("cannot read MemTotal from /proc/meminfo")


def _wait(
    check: Callable[[], bool], what: str, log: Path | None = None, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise SlurmMissing(f"{what} did not come up within {timeout:.0f} s\n{tail}")


def _munge_works() -> bool:
    if shutil.which("munge") is None:
        return False
    cred = subprocess.run(["munge", "-n"], capture_output=True)
    if cred.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0


@dataclass
class SlurmCluster:
    """A one-node cluster; `env` holds SLURM_CONF for client commands."""

    root: Path | None = None
    started: list[Path] = field(default_factory=list)
    munged_pid: int | None = None
    running: bool = False

    @property
    def conf(self) -> Path:
        if self.root is None:
            raise SlurmMissing("the test Slurm cluster is not started")
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self) -> SlurmCluster:
        """Start munge (unless it already runs), slurmctld and slurmd; wait for an idle node."""
        if self.running:
            return self
        missing = missing_binaries()
        if missing:
            raise SlurmMissing(
                f"Slurm is not installed (missing: {', '.join(missing)}); "
                f"install it with: apt-get install -y {PACKAGES}"
            )
        if os.geteuid() != 0:
            raise SlurmMissing("the test Slurm cluster must be started as root")
        try:
            self._start_munge()
            self.root = Path(tempfile.mkdtemp(prefix="taskseed-slurm-"))
            self._write_conf()
            for daemon in ("slurmctld", "slurmd"):
                self.started.append(self.root / f"{daemon}.pid")
                done = subprocess.run([daemon, "-f", str(self.conf)], env=self.env,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise SlurmMissing(f"{daemon} did not start: {done.stderr.strip()}")
            _wait(self._node_idle, "the Slurm node", self.root / "slurmd.log")
        except BaseException:
            self.stop()
            raise
        self.running = True
        return self

    def _start_munge(self) -> None:
        if _munge_works():
            return
        user = pwd.getpwnam("munge")
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(1024))
        os.chown(MUNGE_KEY, user.pw_uid, user.pw_gid)
        MUNGE_KEY.chmod(0o400)
        for folder in (MUNGE_SOCKET_DIR, Path("/var/lib/munge"), Path("/var/log/munge")):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, user.pw_uid, user.pw_gid)
        pidfile = MUNGE_SOCKET_DIR / "munged.pid"
        done = subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SlurmMissing(f"munged did not start: {done.stderr.strip()}")
        _wait(_munge_works, "munged")
        if pidfile.exists():
            self.munged_pid = int(pidfile.read_text().split()[0])

    def _write_conf(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(
            host=socket.gethostname(), root=self.root, cpus=os.cpu_count() or 1,
            memory=max(256, int(_memory_mb() * 0.9)),
            ctld_port=_free_port(), slurmd_port=_free_port(),
        ))

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                             env=self.env)
        return out.returncode == 0 and out.stdout.strip() in {"idle", "mix", "alloc"}

    def stop(self) -> None:
        """Stop slurmd, slurmctld and (when started here) munged; remove the temp dir."""
        for pidfile in reversed(self.started):
            _kill_pidfile(pidfile)
        self.started.clear()
        if self.munged_pid is not None:
            _kill(self.munged_pid)
            self.munged_pid = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.running = False


def _kill_pidfile(pidfile: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    _kill(pid)


def _kill(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_for_jobs(cluster: SlurmCluster, job_ids: list[str], timeout: float = 90.0) -> None:
    """Poll `squeue -h -j IDS` until none of the jobs is queued, running or completing."""
    if not job_ids:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, env=cluster.env)
        if out.returncode == 0 and not out.stdout.strip():
            return
        if out.returncode != 0 and "Invalid job id" in out.stderr:
            return
        time.sleep(0.5)
    queue = subprocess.run(["squeue"], capture_output=True, text=True, env=cluster.env).stdout
    raise TimeoutError(f"Slurm jobs {job_ids} still queued after {timeout:.0f} s:\n{queue}")
