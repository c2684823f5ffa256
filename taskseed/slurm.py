"""Slurm array executor: one array job per stage, one array task per shard, same run directory.

`taskseed submit` prepares the run directory (config, stage fingerprints, source plans) and
chains one `sbatch --array` job per stage with `--dependency=afterok`; a last job runs
`taskseed.slurm finish`. `taskseed shard` is one array task: it runs one shard of one stage
in-process.

With `accept:` (generate until N accepted) a submission stops at the loop's last stage. Its
finish job counts the accepted records; while tasks are short it submits the next round's
shards of the loop as array jobs, chained to another finish job, and once the loop is done
the stages after it. The last finish job finds every shard done and runs `taskseed run`,
which finalizes stages and writes the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import taskseed
from taskseed.curation.errors import TaskseedError
from taskseed.engine import Engine, StageRun

if TYPE_CHECKING:
    from taskseed.config import LoadedConfig

TEMPLATES_ENV = "TASKSEED_SLURM_TEMPLATES"
DEFAULT_TEMPLATES = Path(taskseed.__file__).resolve().parents[1] / "slurm"
STAGE_TEMPLATE = "stage_array.sbatch"
FINISH_TEMPLATE = "finish.sbatch"
OPTIONS_FILE = "slurm-submit.json"


def _engine(loaded: LoadedConfig) -> Engine:
    from taskseed.pipeline import build_stages

    return Engine.at(build_stages(loaded), loaded.run_dir, loaded.config.budget,
                     loaded.config.accept)


def run_shard(
    config: Path,
    stage_index: int,
    shard: int,
    overlays: list[Path] | None = None,
    run_dir: Path | None = None,
) -> dict[int, dict] | None:
    """Run unit `shard` of stage `stage_index` (1-based); None when it was already done."""
    from taskseed.config import load_config
    from taskseed.curation.frames import set_backend

    loaded = load_config(config, overlays, run_dir)
    engine = _engine(loaded)
    if not 1 <= stage_index <= len(engine.stages):
        raise TaskseedError(f"--stage {stage_index}: the config has stages "
                            f"1..{len(engine.stages)}")
    run = engine.prepare(require_plans=True)[stage_index - 1]
    run.check_unit(shard)
    if run.is_done(shard):
        return None
    set_backend(loaded.config.executor.backend)
    engine.before_work(run)
    return run.execute(shard)


@dataclass
class SubmitOptions:
    partition: str | None = None
    max_parallel: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    templates: Path | None = None

    def save(self, path: Path) -> None:
        """Keep the options for the finish jobs that submit later rounds."""
        from taskseed.curation.files import write_json

        data = {**self.__dict__, "templates": str(self.templates) if self.templates else None}
        write_json(path, data)

    @classmethod
    def load(cls, path: Path) -> SubmitOptions:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        templates = data.pop("templates", None)
        return cls(**data, templates=Path(templates) if templates else None)


def submission(engine: Engine, runs: list[StageRun]) -> list[StageRun]:
    """The stages one submission chains: with `accept:`, the loop's stages while it has
    pending shards, else the stages after it; without, every stage."""
    if engine.loop is None:
        return runs
    first, last = engine.loop
    if any(run.units() for run in runs[: last + 1]):
        return runs[: last + 1]
    return runs[last + 1:]


def plan_jobs(loaded: LoadedConfig, write: bool = True) -> list[StageRun]:
    """The stages of the next submission with their pending units (one array task each);
    `write=False` writes nothing to the run directory."""
    engine = _engine(loaded)
    if write:
        engine.run_dir.write_config(loaded.resolved, loaded.hash)
    return submission(engine, engine.prepare(write=write))


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
    env = {
        "TASKSEED_CONFIG": str(config.resolve()),
        "TASKSEED_RUN_DIR": str(loaded.run_dir.resolve()),
        "TASKSEED_OVERLAYS": os.pathsep.join(str(p.resolve()) for p in overlays),
        "TASKSEED_PYTHON": sys.executable,
    }
    for key, value in env.items():
        if "," in value:
            raise TaskseedError(f"{key}={value}: sbatch --export cannot pass values with commas")
    return env


def _export(env: dict[str, str]) -> str:
    return "--export=ALL," + ",".join(f"{k}={v}" for k, v in env.items())


def sbatch_commands(
    loaded: LoadedConfig,
    jobs: list[StageRun],
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
        units = job.units()
        if not units:
            continue
        argv = common + [
            f"--job-name={prefix}-{job.folder}",
            f"--array={array_spec(units, options.max_parallel)}",
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
    from taskseed.config import load_config
    overlays = list(overlays or [])
    options = options or SubmitOptions()
    loaded = load_config(config, overlays, run_dir)
    jobs = plan_jobs(loaded, write=not dry_run)
    commands = sbatch_commands(loaded, jobs, config, overlays, options)
    if dry_run:
        print(dry_run_script(commands), end="")
        return []
    (loaded.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    options.save(loaded.run_dir / "logs" / OPTIONS_FILE)
    return _sbatch_chain(loaded, commands, config, overlays)


def _sbatch_chain(loaded: LoadedConfig, commands: list[tuple[str, list[str]]], config: Path,
                  overlays: list[Path]) -> list[tuple[str, str]]:
    """Submit `commands`, each after the one before; appends them to logs/slurm-jobs.json."""
    from taskseed.curation.files import write_json

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
    record = loaded.run_dir / "logs" / "slurm-jobs.json"
    known = json.loads(record.read_text())["jobs"] if record.exists() else []
    write_json(record, {"jobs": known + [{"label": label, "job_id": jid}
                                         for label, jid in submitted]})
    return submitted


def finish(config: Path, overlays: list[Path] | None = None, run_dir: Path | None = None,
           ) -> list[tuple[str, str]]:
    """The finish job: submit the next round (or the stages after the loop) when shards are
    pending, chained to another finish job; else run `taskseed run` to finalize every stage
    and write the summary. Returns the jobs it submitted."""
    from taskseed.config import load_config
    from taskseed.run import run_pipeline

    overlays = list(overlays or [])
    loaded = load_config(config, overlays, run_dir)
    engine = _engine(loaded)
    runs = engine.prepare()
    if engine.loop is not None and not any(r.units() for r in runs[: engine.loop[1] + 1]):
        short = engine.next_round()
        if short:
            print(f"[accept] another round for {len(short)} tasks below the target: "
                  f"{', '.join(short)}", flush=True)
            runs = engine.prepare()
    jobs = [run for run in submission(engine, runs) if run.units()]
    if jobs:
        options = SubmitOptions.load(loaded.run_dir / "logs" / OPTIONS_FILE)
        commands = sbatch_commands(loaded, jobs, config, overlays, options)
        return _sbatch_chain(loaded, commands, config, overlays)
    run_pipeline(config, overlays, run_dir)
    return []




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

    end = subparsers.add_parser("finish", help="a submission's last job: submit the next "
                                "round or the remaining stages, else finalize and summarize")
    end.add_argument("config", type=Path)
    end.add_argument("--overlay", type=Path, action="append", default=[])
    end.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    end.set_defaults(func=finish_command)


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


def finish_command(args: argparse.Namespace) -> int:
    for label, job_id in finish(args.config, args.overlay, args.run_dir):
        print(f"submitted {label}: job {job_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m taskseed.slurm shard|submit|finish ...` (the same commands as `taskseed`)."""
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
