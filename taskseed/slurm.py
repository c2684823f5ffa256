"""Slurm array executor: one array job per stage, one array task per shard, same run directory.

`taskseed submit` prepares the run directory (config, stage fingerprints, source plans) and
chains one `sbatch --array` job per stage with `--dependency=afterok`; a last job runs
`taskseed run`, which finds every shard done, finalizes stages and writes the summary.
`taskseed shard` is one array task: it runs one shard of one stage in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import taskseed
from curation.errors import TaskseedError
from taskseed.budget import add_spend

if TYPE_CHECKING:
    from curation.rundir import RunDir, StageDir
    from curation.stage import BatchStage, FrameStage, SourceStage, Stage
    from taskseed.config import LoadedConfig

TEMPLATES_ENV = "TASKSEED_SLURM_TEMPLATES"
DEFAULT_TEMPLATES = Path(taskseed.__file__).resolve().parents[1] / "slurm"
STAGE_TEMPLATE = "stage_array.sbatch"
FINISH_TEMPLATE = "finish.sbatch"




def run_shard(
    config: Path,
    stage_index: int,
    shard: int,
    overlays: list[Path] | None = None,
    run_dir: Path | None = None,
) -> dict[int, dict] | None:
    """Run shard `shard` of stage `stage_index` (1-based); None when it was already done."""
    from curation.frames import set_backend
    from curation.rundir import RunDir
    from curation.stage import BatchStage, FrameStage, SourceStage
    from taskseed.config import load_config

    loaded = load_config(config, overlays, run_dir)
    stages = _build(loaded)
    if not 1 <= stage_index <= len(stages):
        raise TaskseedError(f"--stage {stage_index}: the config has stages 1..{len(stages)}")
    stage = stages[stage_index - 1]
    rd = RunDir(loaded.run_dir)
    out = rd.stage(stage_index, stage.name)
    rd.claim_stage(out, stage.fingerprint(), stage.name)
    set_backend(loaded.config.executor.backend)
    if isinstance(stage, FrameStage):
        if shard != 0:
            raise TaskseedError(f"stage '{stage.name}' is a frame stage: run it as --shard 0")
        src = _previous(rd, stages, stage_index)
        return _run_frame(stage, src, out) or None
    if out.is_done(shard):
        return None
    _check_budget(loaded, rd, stages, stage)
    if isinstance(stage, SourceStage):
        info = _run_source(stage, out, shard)
    elif isinstance(stage, BatchStage):
        info = _run_batch(stage, _previous(rd, stages, stage_index), out, shard)
    else:
        raise TaskseedError(f"stage '{stage.name}' has no executable shape")
    return {shard: info}


def _build(loaded: LoadedConfig) -> list[Stage]:
    from taskseed.pipeline import build_stages

    return build_stages(loaded)


def _previous(rd: RunDir, stages: list[Stage], stage_index: int) -> StageDir:
    if stage_index < 2:
        raise TaskseedError(f"stage '{stages[0].name}' needs an input stage")
    return rd.stage(stage_index - 1, stages[stage_index - 2].name)


def _run_source(stage: SourceStage, out: StageDir, shard: int) -> dict:
    from curation.shardrun import run_source_shard

    plan_path = out.plan_path()
    if not plan_path.exists():
        raise TaskseedError(f"{plan_path} is missing: `taskseed submit` plans source shards")
    plan = json.loads(plan_path.read_text())
    if not 0 <= shard < len(plan):
        raise TaskseedError(f"stage '{stage.name}' has {len(plan)} planned shards, not {shard}")
    return run_source_shard(stage, out, shard, plan[shard])


def _run_batch(stage: BatchStage, src: StageDir, out: StageDir, shard: int) -> dict:
    from curation.shardrun import run_batch_shard

    if not src.is_done(shard):
        raise TaskseedError(f"stage '{stage.name}' shard {shard}: input {src.done_path(shard)} "
                            "is not done")
    return run_batch_shard(stage, src, out, shard)


def _run_frame(stage: FrameStage, src: StageDir, out: StageDir) -> dict[int, dict]:
    """The whole frame stage in this process with Dask's threaded scheduler."""
    import dask

    from curation.shardrun import frame_shard_tasks

    with dask.config.set(scheduler="threads"):
        pending, tasks = frame_shard_tasks(stage, src, out)
        results = dask.compute(*tasks)
    return dict(zip(pending, results, strict=True))


def _check_budget(loaded: LoadedConfig, rd: RunDir, stages: list[Stage], stage: Stage) -> None:
    """Before a teacher shard: refuse when the run directory's spend reached a cap."""
    if not hasattr(stage, "teacher_cfg"):
        return
    spent: Counter[str] = Counter()
    for index, other in enumerate(stages, start=1):
        folder = rd.stage(index, other.name)
        for shard in folder.done_shards():
            add_spend(spent, folder.read_marker(shard))
    loaded.config.budget.check(spent)




@dataclass
class StageJob:
    """One stage's array job: its folder name, expected shard count and the shards to run."""

    index: int
    name: str
    shards: int
    pending: list[int]

    @property
    def folder(self) -> str:
        return f"{self.index:02d}-{self.name}"


@dataclass
class SubmitOptions:
    partition: str | None = None
    max_parallel: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    templates: Path | None = None


def plan_jobs(loaded: LoadedConfig, stages: list[Stage], write: bool = True) -> list[StageJob]:
    """Claim stage folders, plan source shards and list each stage's pending shards.

    A batch stage has as many shards as the stage before it: a source stage's plan length or
    a frame stage's `shards`. A frame stage is one task (shard 0) writing all its shards.
    With `write=False` nothing is written to the run directory.
    """
    from curation.rundir import RunDir
    from curation.stage import BatchStage, FrameStage, SourceStage
    rd = RunDir(loaded.run_dir)
    if write:
        rd.write_config(loaded.resolved, loaded.hash)
    jobs: list[StageJob] = []
    count = 0
    for index, stage in enumerate(stages, start=1):
        out = rd.stage(index, stage.name)
        _claim(rd, out, stage, write)
        if isinstance(stage, SourceStage):
            count = len(_plan(stage, out, write))
            pending = [i for i in range(count) if not out.is_done(i)]
        elif isinstance(stage, FrameStage):
            count = stage.params.shards
            pending = [0] if any(not out.is_done(i) for i in range(count)) else []
        elif isinstance(stage, BatchStage):
            pending = [i for i in range(count) if not out.is_done(i)]
        else:
            raise TaskseedError(f"stage '{stage.name}' has no executable shape")
        jobs.append(StageJob(index, stage.name, count, pending))
    return jobs


def _claim(rd: RunDir, out: StageDir, stage: Stage, write: bool) -> None:
    """Claim the stage folder; without `write`, only check an existing claim."""
    if write:
        rd.claim_stage(out, stage.fingerprint(), stage.name)
        return
    meta = out.meta_path()
    if meta.exists() and json.loads(meta.read_text()).get("fingerprint") != stage.fingerprint():
        raise TaskseedError(f"{out.path}: made with a different config for stage "
                            f"'{stage.name}'; use a new run directory")


def _plan(stage: SourceStage, out: StageDir, write: bool) -> list[Any]:
    from curation.rundir import write_json
    path = out.plan_path()
    if path.exists():
        return json.loads(path.read_text())
    plan = stage.plan()
    if write:
        write_json(path, plan)
    return plan


def array_spec(indices: list[int], max_parallel: int | None = None) -> str:
    """`0-8`, `0,3,5-7`; with `%N` when at most N tasks may run at once."""
    ranges: list[str] = []
    start = prev = None
    for i in sorted(set(indices)):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            ranges.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        ranges.append(f"{start}-{prev}" if prev != start else str(start))
    spec = ",".join(ranges)
    return f"{spec}%{max_parallel}" if max_parallel else spec


def _job_env(loaded: LoadedConfig, config: Path, overlays: list[Path]) -> dict[str, str]:
    pythonpath = [str(Path(taskseed.__file__).resolve().parents[1])]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    env = {
        "TASKSEED_CONFIG": str(config.resolve()),
        "TASKSEED_RUN_DIR": str(loaded.run_dir.resolve()),
        "TASKSEED_OVERLAYS": os.pathsep.join(str(p.resolve()) for p in overlays),
        "TASKSEED_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }
    for key, value in env.items():
        if "," in value:
            raise TaskseedError(f"{key}={value}: sbatch --export cannot pass values with commas")
    return env


def _export(env: dict[str, str]) -> str:
    return "--export=ALL," + ",".join(f"{k}={v}" for k, v in env.items())


def sbatch_commands(
    loaded: LoadedConfig,
    jobs: list[StageJob],
    config: Path,
    overlays: list[Path],
    options: SubmitOptions,
) -> list[tuple[str, list[str]]]:
    """(label, sbatch argv without --dependency) per job to submit: pending stages, then finish."""
    templates = options.templates or Path(os.environ.get(TEMPLATES_ENV) or DEFAULT_TEMPLATES)
    for name in (STAGE_TEMPLATE, FINISH_TEMPLATE):
        if not (templates / name).is_file():
            raise TaskseedError(f"sbatch template {templates / name} is missing "
                                f"(set {TEMPLATES_ENV} to the folder holding it)")
    env = _job_env(loaded, config, overlays)
    logs = loaded.run_dir.resolve() / "logs"
    common = ["sbatch", "--parsable", "--kill-on-invalid-dep=yes", f"--chdir={Path.cwd()}"]
    if options.partition:
        common.append(f"--partition={options.partition}")
    common += options.sbatch_args
    prefix = f"taskseed-{loaded.config.name}"
    commands: list[tuple[str, list[str]]] = []
    for job in jobs:
        if not job.pending:
            continue
        argv = common + [
            f"--job-name={prefix}-{job.folder}",
            f"--array={array_spec(job.pending, options.max_parallel)}",
            f"--output={logs}/{job.folder}-%A_%a.out",
            _export({**env, "TASKSEED_STAGE": str(job.index)}),
            str(templates / STAGE_TEMPLATE),
        ]
        commands.append((job.folder, argv))
    argv = common + [
        f"--job-name={prefix}-finish",
        f"--output={logs}/finish-%j.out",
        _export(env),
        str(templates / FINISH_TEMPLATE),
    ]
    commands.append(("finish", argv))
    return commands


def _with_dependency(argv: list[str], dependency: str | None) -> list[str]:
    if dependency is None:
        return argv
    return argv[:2] + [f"--dependency=afterok:{dependency}"] + argv[2:]


def dry_run_script(commands: list[tuple[str, list[str]]]) -> str:
    """The submission as a shell script: each job waits on the one before it."""
    lines = ["#!/bin/bash", "set -euo pipefail"]
    previous: str | None = None
    for n, (label, argv) in enumerate(commands, start=1):
        var = f"JOB{n}"
        dep = f"${{{previous}%%;*}}" if previous else None
        words = [shlex.quote(a) for a in argv]
        if dep is not None:
            words.insert(2, f"--dependency=afterok:{dep}")
        lines.append(f"# {label}")
        lines.append(f"{var}=$({' '.join(words)})")
        previous = var
    lines.append(f'echo "final job: ${{{previous}%%;*}}"')
    return "\n".join(lines) + "\n"


def submit(
    config: Path,
    overlays: list[Path] | None = None,
    run_dir: Path | None = None,
    options: SubmitOptions | None = None,
    dry_run: bool = False,
) -> list[tuple[str, str]]:
    """Submit the chained array jobs; returns (label, job id) per job (nothing when dry)."""
    from curation.rundir import write_json
    from taskseed.config import load_config
    overlays = list(overlays or [])
    options = options or SubmitOptions()
    loaded = load_config(config, overlays, run_dir)
    stages = _build(loaded)
    jobs = plan_jobs(loaded, stages, write=not dry_run)
    commands = sbatch_commands(loaded, jobs, config, overlays, options)
    if dry_run:
        print(dry_run_script(commands), end="")
        return []
    (loaded.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **_job_env(loaded, config, overlays)}
    submitted: list[tuple[str, str]] = []
    previous: str | None = None
    for label, argv in commands:
        argv = _with_dependency(argv, previous)
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise TaskseedError(f"sbatch failed for {label} ({done.returncode}): "
                                f"{done.stderr.strip() or done.stdout.strip()}")
        previous = done.stdout.strip().split(";")[0]
        submitted.append((label, previous))
    write_json(loaded.run_dir / "logs" / "slurm-jobs.json",
               {"jobs": [{"label": label, "job_id": jid} for label, jid in submitted]})
    return submitted




def add_slurm_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `shard` and `submit` on a CLI's subparsers."""
    shard = subparsers.add_parser("shard", help="run one shard of one stage (a Slurm array task)")
    shard.add_argument("config", type=Path)
    shard.add_argument("--stage", type=int, required=True,
                       help="stage number, 1-based as in stages/NN-name")
    shard.add_argument("--shard", type=int, required=True, help="shard index (0 for frame stages)")
    shard.add_argument("--overlay", type=Path, action="append", default=[])
    shard.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    shard.set_defaults(func=shard_command)

    sub = subparsers.add_parser("submit", help="submit a run as chained Slurm array jobs")
    sub.add_argument("config", type=Path)
    sub.add_argument("--overlay", type=Path, action="append", default=[],
                     help="a per-scale overlay merged over the config (repeatable)")
    sub.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    sub.add_argument("--partition", help="Slurm partition for every job")
    sub.add_argument("--max-parallel", type=int, default=None,
                     help="at most this many array tasks of a stage at once (--array=...%%N)")
    sub.add_argument("--sbatch-arg", action="append", default=[], dest="sbatch_args",
                     metavar="ARG", help="extra sbatch option for every job, e.g. "
                     "--sbatch-arg=--gres=gpu:1 (repeatable)")
    sub.add_argument("--dry-run", action="store_true", help="print the sbatch commands only")
    sub.set_defaults(func=submit_command)


def shard_command(args: argparse.Namespace) -> int:
    ran = run_shard(args.config, args.stage, args.shard, args.overlay, args.run_dir)
    where = f"stage {args.stage} shard {args.shard}"
    if ran is None:
        print(f"{where}: already done, skipped")
    else:
        for shard, info in sorted(ran.items()):
            print(f"stage {args.stage} shard {shard}: {info['inputs']} in -> "
                  f"{info['outputs']} out")
    return 0


def submit_command(args: argparse.Namespace) -> int:
    if args.max_parallel is not None and args.max_parallel < 1:
        raise TaskseedError("--max-parallel must be at least 1")
    options = SubmitOptions(args.partition, args.max_parallel, args.sbatch_args)
    submitted = submit(args.config, args.overlay, args.run_dir, options, args.dry_run)
    for label, job_id in submitted:
        print(f"submitted {label}: job {job_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m taskseed.slurm shard|submit ...` (the same commands as `taskseed`)."""
    parser = argparse.ArgumentParser(prog="taskseed", description=__doc__)
    add_slurm_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TaskseedError as err:
        print(f"taskseed: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
