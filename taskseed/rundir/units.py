"""Where a unit of work stands while it is not done: `part-NNNNN.running` while it runs,
`part-NNNNN.failed` when it raised. The `.done` marker (the commit) clears both.

They are what `taskseed status` reads: a running marker whose job or process is gone is a
failed unit too (killed at its time or memory limit, or its node failed).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taskseed.curation.io import live_counts
from taskseed.curation.io.files import write_json
from taskseed.rundir.layout import StageDir

PRINT_EVERY_S = float(os.environ.get("TASKSEED_PROGRESS_SECONDS", "30"))


def running_path(out: StageDir, unit: int) -> Path:
    return out.path / f"part-{unit:05d}.running"


def running_paths(out: StageDir) -> list[Path]:
    """The running markers of a stage folder's units."""
    return sorted(out.path.glob("part-*.running"))


def failed_path(out: StageDir, unit: int) -> Path:
    return out.path / f"part-{unit:05d}.failed"


def where() -> dict[str, Any]:
    """This process: host, pid, and the Slurm job and array task when there is one."""
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job:
        info["job_id"] = job
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        info["slurm_id"] = f"{job}_{task}" if task else job
    log = os.environ.get("TASKSEED_LOG")
    if log:
        info["log"] = log
    return info


def clear(out: StageDir, unit: int) -> None:
    for path in (running_path(out, unit), failed_path(out, unit)):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def tracked(out: StageDir, unit: int) -> Iterator[None]:
    """Mark `unit` running for the block; on an exception leave a failed marker with the
    error's one line and the end of its traceback, and re-raise."""
    failed_path(out, unit).unlink(missing_ok=True)
    out.path.mkdir(parents=True, exist_ok=True)
    info = {**where(), "started": time.time()}
    write_json(running_path(out, unit), info)
    try:
        with live_counts.watch(_live_sink(out, unit, info)):
            yield
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        reason = lines[-1].strip() if lines else type(exc).__name__
        tail = traceback.format_exc().strip().splitlines()[-6:]
        write_json(failed_path(out, unit), {**info, "failed": time.time(), "reason": reason,
                                            "traceback": tail})
        running_path(out, unit).unlink(missing_ok=True)
        raise
    clear(out, unit)


def _live_sink(out: StageDir, unit: int, info: dict[str, Any]) -> live_counts.Sink:
    """Keep the unit's live counts in its running marker; in a Slurm job's log also print
    them every `PRINT_EVERY_S` seconds."""
    printed = [time.monotonic()]
    in_job = bool(os.environ.get("TASKSEED_LOG"))

    def sink(live: dict[str, float]) -> None:
        path = running_path(out, unit)
        if path.exists():
            write_json(path, {**info, "live": live, "updated": time.time()})
        if in_job and time.monotonic() - printed[0] >= PRINT_EVERY_S:
            printed[0] = time.monotonic()
            print(f"{out.path.name} shard {unit}: {live_text(live, time.time() - info['started'])}",
                  flush=True)

    return sink


def live_text(live: dict[str, float], seconds: float) -> str:
    """`12/40 requests, 8 in flight, 310 tokens/s`."""
    done, planned = int(live.get("requests_done", 0)), int(live.get("requests_planned", 0))
    rate = live.get("completion_tokens", 0) / seconds if seconds > 0 else 0.0
    return (f"{done}/{planned} requests, {int(live.get('in_flight', 0))} in flight, "
            f"{rate:.0f} tokens/s")


def read(path: Path) -> dict[str, Any] | None:
    """A marker's content (None when it is gone or half written)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
