"""A Dask worker that dies explains itself.

Each worker of the local cluster writes its stderr (native libraries' output included) and
Python's fault handler to `RUN/logs/worker-<pid>.log`. The nannies' death notices give each
worker's exit status; a worker that dies running a unit becomes one line naming the stage,
the shard, the signal and the likely cause, with its last stderr lines printed above it.
The scheduler does not retry a task whose worker died (`allowed-failures: 0`): a native
crash is deterministic, so a retry only crashes the next worker.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from taskseed.generation.backends.crash import describe_exit, exit_signal, likely_cause, tail

DASK_CONFIG = {"distributed.scheduler.allowed-failures": 0}
_DEATH = re.compile(r"Worker process (\d+) (?:was killed by signal (\d+)|exited with status "
                    r"(-?\d+)|was killed by unknown signal)")
_MEMORY = re.compile(r"\(pid=(\d+)\) exceeded \d+% memory budget")


def worker_log(log_dir: Path, pid: int) -> Path:
    return Path(log_dir) / f"worker-{pid}.log"


class StderrToLog(WorkerPlugin):
    """A worker plugin: the worker's fd 2 goes to its log file, with the fault handler on."""

    name = "taskseed-stderr-to-log"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def setup(self, worker: Any) -> None:
        path = worker_log(Path(self.log_dir), os.getpid())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        faulthandler.enable(all_threads=True)


class DeathWatch(logging.Handler):
    """Collects the nannies' notices of worker deaths: exit code and memory-limit kills."""

    LOGGERS = ("distributed.nanny", "distributed.nanny.memory", "distributed.worker.memory")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.exits: dict[int, int | None] = {}
        self.over_memory: set[int] = set()
        self._changed = threading.Condition()
        self._saved: dict[str, tuple[int, bool]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self._changed:
            if match := _DEATH.search(message):
                pid = int(match.group(1))
                if match.group(2):
                    self.exits[pid] = -int(match.group(2))
                elif match.group(3):
                    self.exits[pid] = int(match.group(3))
                else:
                    self.exits[pid] = None
            if match := _MEMORY.search(message):
                self.over_memory.add(int(match.group(1)))
            self._changed.notify_all()

    def install(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._saved[name] = (logger.level, logger.propagate)
            logger.setLevel(logging.INFO)
            logger.propagate = False
            logger.addHandler(self)

    def uninstall(self) -> None:
        for name, (level, propagate) in self._saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate
        self._saved.clear()

    def exit_code(self, pid: int, wait_s: float = 3.0) -> int | None:
        """The worker's exit code (negative: a signal), waiting a little for the notice."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while pid not in self.exits and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            return self.exits.get(pid)


def explain(stage: str, unit: int, pid: int | None, watch: DeathWatch | None,
            log_dir: Path) -> tuple[str, str]:
    """The one line for a worker that died running `unit`, and its stderr tail."""
    code = watch.exit_code(pid) if (watch is not None and pid) else None
    log = worker_log(Path(log_dir).resolve(), pid) if pid else None
    stderr = tail(log) if log is not None else ""
    sig = exit_signal(code) if code is not None else None
    if sig is None and "Segmentation fault" in stderr:
        sig = "SIGSEGV"
    how = describe_exit(code) if code is not None else (
        f"was killed by {sig}" if sig else "died")
    over = watch is not None and pid in watch.over_memory
    where = f"; its stderr: {log}" if log is not None else ""
    line = (f"stage '{stage}' shard {unit}: its Dask worker (pid {pid or '?'}) {how}: "
            f"{likely_cause(sig, stderr, over)}{where}")
    return line, stderr
