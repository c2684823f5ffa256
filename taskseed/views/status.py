"""`taskseed status RUN`: per stage and shard, done, running, pending or failed.

It reads the run directory only (done markers, `.running` and `.failed` markers, job logs)
and asks Slurm (`squeue`) whether a running unit's job still exists: a unit whose job is
gone without a commit failed (time or memory limit, node failure, cancelled).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from taskseed.curation.errors import TaskseedError
from taskseed.execution.engine import StageRun
from taskseed.execution.slurm.scripts import array_spec
from taskseed.rundir.units import failed_path, read, running_path

STATES = ("done", "running", "pending", "failed")
LOG_LINES = 8


@dataclass
class UnitFailure:
    stage: str
    unit: int
    reason: str
    log: str | None = None
    log_tail: list[str] = field(default_factory=list)
    where: str = ""


@dataclass
class StageStatus:
    folder: str
    shards: int
    units: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STATES})
    live: dict[str, float] = field(default_factory=dict)  # summed over running units

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.folder, "shards": self.shards,
                **{state: array_spec(units) for state, units in self.units.items()}}


def live_slurm_ids() -> set[str] | None:
    """Job and array-task ids Slurm still knows (None: no Slurm here)."""
    if shutil.which("squeue") is None:
        return None
    done = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_live(info: dict[str, Any], live: set[str] | None) -> bool:
    slurm_id = info.get("slurm_id")
    if slurm_id and live is not None:
        return slurm_id in live or str(info.get("job_id")) in live
    if info.get("host") == socket.gethostname() and "pid" in info:
        return _pid_alive(int(info["pid"]))
    return True


def _tail(log: str | None) -> list[str]:
    if not log:
        return []
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return []
    return lines[-LOG_LINES:]


def unit_state(run: StageRun, unit: int, live: set[str] | None) -> tuple[str, UnitFailure | None]:
    """The state of one unit and, for a failed one, why."""
    if run.is_done(unit):
        return "done", None
    failed = read(failed_path(run.out, unit))
    if failed is not None:
        return "failed", UnitFailure(run.folder, unit, failed.get("reason", "failed"),
                                     failed.get("log"), _tail(failed.get("log")),
                                     failed.get("slurm_id") or failed.get("host", ""))
    running = read(running_path(run.out, unit))
    if running is not None:
        if _is_live(running, live):
            return "running", None
        reason = ("its job ended without committing the shard (time or memory limit, node "
                  "failure, or cancelled)")
        return "failed", UnitFailure(run.folder, unit, reason, running.get("log"),
                                     _tail(running.get("log")),
                                     running.get("slurm_id") or running.get("host", ""))
    return "pending", None


def collect(runs: list[StageRun]) -> tuple[list[StageStatus], list[UnitFailure]]:
    live = live_slurm_ids()
    stages: list[StageStatus] = []
    failures: list[UnitFailure] = []
    for run in runs:
        status = StageStatus(run.folder, run.shards)
        if run.whole_dataset:  # one unit (0) writes every shard
            done = run.out.done_shards()
            status.units["done"] = done
            rest = [i for i in range(run.shards) if i not in done]
            if rest:
                state, failure = unit_state(run, 0, live)
                status.units["pending" if state == "done" else state] = rest
                failures += [failure] if failure else []
        else:
            for unit in range(run.shards):
                state, failure = unit_state(run, unit, live)
                status.units[state].append(unit)
                failures += [failure] if failure else []
                if state == "running":
                    counts = (read(running_path(run.out, unit)) or {}).get("live") or {}
                    for key, value in counts.items():
                        status.live[key] = status.live.get(key, 0) + value
        stages.append(status)
    return stages, failures


def _loaded_for(run_dir: Path, args: argparse.Namespace) -> Any:
    from taskseed.config.pipeline import load_config

    if args.config is not None:
        return load_config(args.config, args.overlay, run_dir, sets=args.sets)
    config = run_dir / "config.yaml"
    if not config.exists():
        raise TaskseedError(f"{run_dir}: no config.yaml; is this a run directory?")
    provenance = (yaml.safe_load(config.read_text()) or {}).get("provenance") or {}
    if not provenance.get("config"):
        raise TaskseedError(f"{config}: does not name its config file; pass --config")
    return load_config(Path(provenance["config"]),
                       [Path(p) for p in provenance.get("overlays", [])], run_dir,
                       sets=list(provenance.get("sets", [])))


def format_status(run_dir: Path, stages: list[StageStatus], failures: list[UnitFailure],
                  jobs: list[dict[str, Any]]) -> str:
    width = max([len(s.folder) for s in stages] + [5])
    lines = [f"run {run_dir}", f"{'stage':<{width}}  shards  " + "  ".join(
        f"{s:>7}" for s in STATES)]
    for s in stages:
        counts = "  ".join(f"{len(s.units[state]):>7}" for state in STATES)
        lines.append(f"{s.folder:<{width}}  {s.shards:>6}  {counts}")
        for state in ("running", "failed"):
            if s.units[state]:
                line = f"{'':<{width}}  {state}: shards {array_spec(s.units[state])}"
                if state == "running" and s.live.get("requests_planned"):
                    line += (f" ({int(s.live.get('requests_done', 0))}/"
                             f"{int(s.live['requests_planned'])} requests answered, "
                             f"{int(s.live.get('in_flight', 0))} in flight)")
                lines.append(line)
    for f in failures:
        lines.append(f"failed: {f.stage} shard {f.unit} ({f.where}): {f.reason}")
        if f.log:
            lines.append(f"  log {f.log}, last lines:")
            lines += [f"    {line}" for line in f.log_tail]
    if jobs:
        last = jobs[-1]
        lines.append(f"{len(jobs)} Slurm jobs submitted; the last: {last['label']} "
                     f"(job {last['job_id']})")
    pending = sum(len(s.units["pending"]) + len(s.units["failed"]) for s in stages)
    lines.append("complete" if not pending and not any(s.units["running"] for s in stages)
                 else f"{pending} units to run: `taskseed submit` (or `taskseed run`) with "
                 "the same config runs only those")
    return "\n".join(lines)


def status_command(args: argparse.Namespace) -> int:
    from taskseed.execution.pipeline import build_engine

    run_dir = args.run
    loaded = _loaded_for(run_dir, args)
    engine = build_engine(loaded, run_dir)
    runs = engine.prepare(write=False)
    stages, failures = collect(runs)
    record = run_dir / "logs" / "slurm-jobs.json"
    jobs = json.loads(record.read_text())["jobs"] if record.exists() else []
    if args.json:
        print(json.dumps({"run": str(run_dir), "stages": [s.as_dict() for s in stages],
                          "failures": [f.__dict__ for f in failures], "jobs": jobs}, indent=2))
    else:
        print(format_status(run_dir, stages, failures, jobs))
    return 1 if failures else 0


def add_status_command(subparsers: argparse._SubParsersAction) -> None:
    status = subparsers.add_parser("status", help="per stage and shard: done, running, "
                                   "pending or failed, with each failure's reason and log")
    status.add_argument("run", type=Path, help="the run directory")
    status.add_argument("--config", type=Path,
                        help="the run's config (default: the one named in RUN/config.yaml)")
    status.add_argument("--overlay", type=Path, action="append", default=[])
    status.add_argument("--set", action="append", default=[], dest="sets")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=status_command)
