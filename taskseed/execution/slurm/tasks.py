"""Slurm executor: fused shard jobs, Dask-cluster frame jobs, a finish job; one run directory.

`taskseed submit` prepares the run directory (config, stage fingerprints, source plans) and
submits the job graph of `taskseed.execution.slurm.jobgraph`, each job `afterok` on the one before:

- `taskseed.slurm shard CONFIG --stage 2-5 --shard I` is one array task: shard I through
  stages 2..5 in one process, starting the node's managed model server when a stage needs one;
- `taskseed.slurm frame CONFIG --stage 6-8 --scheduler-file F` drives frame stages on the
  Dask cluster its sbatch job started;
- `taskseed.slurm finish CONFIG` submits the next round of a generate-until-N loop (or the
  stages after it) chained to another finish job, and once nothing is pending finalizes
  every stage and writes the summary.

A rerun of `submit` submits only the units that are not done: failed, lost or never run.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.files import write_json
from taskseed.curation.stage import DoneMarker
from taskseed.execution.engine import Engine, StageRun, model_of
from taskseed.execution.slurm.jobgraph import Job, parse_span, plan_graph
from taskseed.execution.slurm.scripts import (
    Invocation,
    Renderer,
    Script,
    array_spec,
    dry_run_script,
    model_note,
    server_step,
    shell_words,
    templates_dir,
    with_dependency,
)

if TYPE_CHECKING:
    from taskseed.config.pipeline import LoadedConfig
    from taskseed.generation.servers.managed import TPLaunch

OPTIONS_FILE = "slurm-submit.json"
JOBS_FILE = "slurm-jobs.json"

__all__ = ["array_spec", "submit", "run_shard", "run_frames", "finish", "main"]


def _engine(loaded: LoadedConfig) -> Engine:
    from taskseed.execution.pipeline import build_engine

    return build_engine(loaded)


def _load(invocation: Invocation) -> LoadedConfig:
    from taskseed.config.pipeline import load_config

    return load_config(invocation.config, invocation.overlays, invocation.run_dir,
                       sets=invocation.sets)


def _group(engine: Engine, span: str, write: bool = False) -> list[StageRun]:
    runs = engine.prepare(write=write, require_plans=True)
    lo, hi = parse_span(span, len(runs))
    group = runs[lo - 1:hi]
    shapes = {run.whole_dataset for run in group}
    if len(shapes) > 1:
        raise TaskseedError(f"--stage {span}: mixes frame stages with batch stages")
    return group


def _check_shard(run: StageRun, shard: int) -> None:
    run.check_unit(shard)
    if not run.whole_dataset and not 0 <= shard < max(run.shards, 1):
        raise TaskseedError(f"stage '{run.stage.name}' has {run.shards} shards, not {shard}")


def _print_unit(folder: str, shard: int, marker: DoneMarker | None) -> None:
    if marker is None:
        print(f"{folder} shard {shard}: already done, skipped", flush=True)
    else:
        print(f"{folder} shard {shard}: {marker.inputs} in -> {marker.outputs} out "
              f"in {marker.seconds:.1f} s", flush=True)


def run_shard(invocation: Invocation, span: str, shard: int,
              report: Callable[[str, int, DoneMarker | None], None] = _print_unit,
              ) -> dict[str, DoneMarker | None]:
    """Shard `shard` through the stages of `span` (`3` or `2-5`), each stage's result
    committed before the next starts; done stages are skipped (None). `report` hears of
    each stage as it ends."""
    from taskseed.execution.serving import serving
    from taskseed.execution.shard import release_all

    loaded = _load(invocation)
    engine = _engine(loaded)
    group = _group(engine, span)
    for run in group:
        _check_shard(run, shard)
    todo = [run for run in group if not run.is_done(shard)]
    if not todo:
        for run in group:
            report(run.folder, shard, None)
        return {run.folder: None for run in group}
    models = {model_of(run.stage) for run in todo if run.stage.calls_models}
    logs = loaded.run_dir / "logs"
    with serving(loaded, models, logs,
                 gpus_per_node=loaded.config.slurm.gpus_per_node) as served:
        if served is not loaded:  # stages that call the node's server
            engine = _engine(served)
            group = _group(engine, span)
        # batch stages work on records: a shard job never imports cuDF (frame jobs do)
        done: dict[str, DoneMarker | None] = {}
        try:
            for run in group:
                if run.is_done(shard):
                    done[run.folder] = None
                    report(run.folder, shard, None)
                    continue
                done[run.folder] = engine.run_unit(run, shard).get(shard)
                report(run.folder, shard, done[run.folder])
        finally:
            release_all()
    return done


def mark_died(invocation: Invocation, span: str, shard: int, exit_code: int,
              log: Path | None) -> str:
    """After an array task's process died (a signal): turn the running marker of the stage it
    was in into a failed one whose reason names the stage, shard, signal and likely cause;
    return that reason."""
    from taskseed.generation.backends.crash import describe_exit, exit_signal, likely_cause, tail
    from taskseed.rundir.units import failed_path, read, running_path

    loaded = _load(invocation)
    group = _group(_engine(loaded), span)
    stderr = tail(log) if log is not None else ""
    cause = likely_cause(exit_signal(exit_code), stderr)
    where = f"; its log: {log}" if log is not None else ""
    for run in group:
        marker = read(running_path(run.out, shard))
        if marker is None:
            continue
        reason = (f"stage '{run.stage.name}' shard {shard}: its process (pid "
                  f"{marker.get('pid', '?')}) {describe_exit(exit_code)}: {cause}{where}")
        write_json(failed_path(run.out, shard), {**marker, "failed": time.time(),
                                                 "reason": reason,
                                                 "traceback": stderr.splitlines()})
        running_path(run.out, shard).unlink(missing_ok=True)
        return reason
    return f"shard {shard} of stages {span}: its process {describe_exit(exit_code)}: {cause}"


def run_frames(invocation: Invocation, span: str, scheduler_file: Path | None,
               workers: int = 1, timeout: float = 300.0) -> dict[str, int]:
    """Frame stages `span` on the Dask cluster of `scheduler_file` (local threads without
    one); returns the shards each stage committed."""
    from taskseed.curation.io.frames import set_backend

    loaded = _load(invocation)
    engine = _engine(loaded)
    group = _group(engine, span)
    if not group[0].whole_dataset:
        raise TaskseedError(f"--stage {span}: not frame stages; run them with `shard`")
    client = _connect(scheduler_file, workers, timeout) if scheduler_file else None
    set_backend(loaded.config.executor.backend)
    ran: dict[str, int] = {}
    try:
        for run in group:
            units = run.units()
            if not units:
                ran[run.folder] = 0
                continue
            started = time.perf_counter()
            markers = engine.run_unit(run, 0)
            ran[run.folder] = len(markers)
            print(f"{run.folder}: {len(markers)} shards in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
    finally:
        if client is not None:
            _stop_cluster(client)
    return ran


def _stop_cluster(client: Any) -> None:
    """Retire the workers (their nannies too), then stop the scheduler: the srun steps of
    the frame job end on their own."""
    import contextlib
    import logging

    workers = list(client.scheduler_info()["workers"])
    with contextlib.suppress(Exception):
        client.retire_workers(workers, close_workers=True, remove=True)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        client.shutdown()


def _connect(scheduler_file: Path, workers: int, timeout: float) -> Any:
    """A client of the job's Dask cluster, once `workers` workers have joined."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        client = Client(scheduler_file=str(scheduler_file), timeout=f"{timeout}s")
        client.wait_for_workers(workers, timeout=max(deadline - time.monotonic(), 1.0))
    except (OSError, TimeoutError) as err:
        raise TaskseedError(f"the Dask cluster of {scheduler_file} did not come up with "
                            f"{workers} workers within {timeout:g} s: {err}") from None
    info = client.scheduler_info()["workers"]
    hosts = sorted({w["host"] for w in info.values()})
    print(f"Dask cluster: {len(info)} workers on {len(hosts)} node(s) "
          f"({', '.join(hosts)}), scheduler {client.scheduler.address}", flush=True)
    return client


@dataclass
class SubmitOptions:
    """Command-line options of `taskseed submit`, kept for the finish jobs' submissions."""

    partition: str | None = None
    max_parallel: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    templates: Path | None = None
    force: bool = False  # submit although jobs of the run are still queued

    def save(self, path: Path) -> None:
        from taskseed.curation.io.files import write_json

        data = {**self.__dict__, "templates": str(self.templates) if self.templates else None}
        data.pop("force")
        write_json(path, data)

    @classmethod
    def load(cls, path: Path) -> SubmitOptions:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        templates = data.pop("templates", None)
        return cls(**data, templates=Path(templates) if templates else None)


def submission(engine: Engine, runs: list[StageRun]) -> list[StageRun]:
    """The stages one submission covers: with `accept:`, the loop's stages (and those
    before it) while it has pending shards, else the stages after it; without, all."""
    if engine.loop is None:
        return runs
    last = engine.loop[1]
    if any(run.units() for run in runs[: last + 1]):
        return runs[: last + 1]
    return runs[last + 1:]


def _gpus_of(loaded: LoadedConfig) -> Any:
    from taskseed.execution.serving import model_config, model_gpus

    def gpus(name: str) -> int:
        cfg = model_config(loaded, name)
        return model_gpus(cfg, loaded.config.slurm.gpus_per_node) if cfg is not None else 0

    return gpus


def _tp_plan(loaded: LoadedConfig, name: str) -> TPLaunch | None:
    from taskseed.execution.serving import model_config, slurm_launch

    return slurm_launch(model_config(loaded, name), loaded.config.slurm.gpus_per_node)


def plan_jobs(loaded: LoadedConfig, engine: Engine, runs: list[StageRun]) -> list[Job]:
    """The job graph of the next submission.

    A job with a tensor-parallel TensorRT-LLM model asks for the model's nodes and one task
    per GPU; its `cpus` are shared out among those tasks (`--cpus-per-task` per task).
    """
    slurm = loaded.config.slurm
    slurm.check_names([s.name for s in engine.stages], str(loaded.path))
    jobs = plan_graph(engine, submission(engine, runs), slurm, _gpus_of(loaded))
    for job in jobs:
        if job.kind == "frame" and loaded.config.executor.backend == "cudf":
            job.resources.gpus = job.resources.gpus or 1
        plans = [plan for name in job.models if (plan := _tp_plan(loaded, name)) is not None]
        if plans:
            widest = max(plans, key=lambda plan: plan.ntasks_per_node)
            per_node = widest.ntasks_per_node
            job.resources.nodes = max(job.resources.nodes or 1, *(p.nodes for p in plans))
            job.resources.tasks_per_node = per_node
            job.resources.cpus = max(1, (job.resources.cpus or per_node) // per_node)
    return jobs


def job_kind(job: Job) -> str:
    """The container kind of a job: `frame`, `model` (a shard job that runs a model) or
    `cpu`."""
    if job.kind == "frame":
        return "frame"
    return "model" if job.models else "cpu"


def scripts_for(loaded: LoadedConfig, jobs: list[Job], invocation: Invocation,
                options: SubmitOptions) -> list[Script]:
    """The sbatch scripts of `jobs` and the finish job after them."""
    renderer = Renderer(loaded.config.slurm, invocation, loaded.config.name,
                        templates_dir(options.templates), options.partition,
                        list(options.sbatch_args), options.max_parallel)
    for job in jobs:
        prefix = _launch_prefix(loaded, job)
        if prefix:
            renderer.launch_prefix[job.label] = prefix
        steps = _server_steps(loaded, job, renderer.logs)
        if steps:
            renderer.server_steps[job.label] = steps
    return [*(renderer.job(job) for job in jobs), renderer.finish()]


def _launch_prefix(loaded: LoadedConfig, job: Job) -> str:
    """How a shard job starts its work step: under TensorRT-LLM's launcher (`srun --mpi=pmix
    ... trtllm-llmapi-launch`) when an in-process TensorRT-LLM model has tensor parallelism
    above 1, on one node too; empty for the default (the batch step, or `srun` into the
    container). A trtllm-serve with tensor parallelism is a step of its own
    (`_server_steps`)."""
    from taskseed.execution.serving import model_config

    container = loaded.config.slurm.container_for(job_kind(job))
    for name in job.models:
        plan = _tp_plan(loaded, name)
        cfg = model_config(loaded, name)
        if plan is not None and cfg is not None and cfg.managed_server() is None:
            words = plan.launcher(job.resources.cpus,
                                  container.srun_options() if container else ())
            return shell_words(words)
    return ""


def _server_steps(loaded: LoadedConfig, job: Job, logs: Path) -> str:
    """The job-script lines that start each trtllm-serve with tensor parallelism as a step of
    its own, under TensorRT-LLM's launcher and in the job's container, and hand its URL to
    the task (`taskseed.execution.serving.server_env`)."""
    from taskseed.execution.serving import model_config, script_served

    container = loaded.config.slurm.container_for(job_kind(job))
    blocks: list[str] = []
    for name in job.models:
        cfg = model_config(loaded, name)
        if cfg is None:
            continue
        server = script_served(cfg)
        plan = _tp_plan(loaded, name)
        if server is not None and plan is not None:
            blocks.append(server_step(name, cfg.model, server, plan, job.resources.cpus,
                                      container, logs))
        elif cfg.managed_server() is not None or cfg.in_process_gpus():
            blocks.append(model_note(name, cfg.model, cfg.managed_server(), cfg.describe()))
    return "\n".join(blocks)


def submit(invocation: Invocation, options: SubmitOptions | None = None,
           dry_run: bool = False) -> list[tuple[str, str]]:
    """Submit the job graph; returns (label, job id) per job (nothing when dry)."""
    options = options or SubmitOptions()
    loaded = _load(invocation)
    if not dry_run and not options.force:
        _refuse_while_queued(loaded.run_dir)
    engine = _engine(loaded)
    if not dry_run:
        engine.run_dir.write_config(loaded.resolved, loaded.hash)
    runs = engine.prepare(write=not dry_run)
    scripts = scripts_for(loaded, plan_jobs(loaded, engine, runs), invocation, options)
    if dry_run:
        print(dry_run_script(scripts), end="")
        return []
    (loaded.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    options.save(loaded.run_dir / "logs" / OPTIONS_FILE)
    return _sbatch_chain(loaded, scripts)


def _refuse_while_queued(run_dir: Path) -> None:
    """A second submission while the first one's jobs are queued would run units twice."""
    from taskseed.views.status import live_slurm_ids

    record = run_dir / "logs" / JOBS_FILE
    live = live_slurm_ids()
    if not record.exists() or not live:
        return
    jobs = [j["job_id"] for j in json.loads(record.read_text())["jobs"]]
    queued = [job for job in jobs if job in live or any(i.startswith(f"{job}_") for i in live)]
    if queued:
        raise TaskseedError(f"{run_dir}: jobs of this run are still queued or running "
                            f"({', '.join(queued)}); wait for them (`taskseed status "
                            f"{run_dir}`) or scancel them, then submit again (or --force)")


def _sbatch_chain(loaded: LoadedConfig, scripts: list[Script]) -> list[tuple[str, str]]:
    """Submit each script after the one before; keeps the scripts under `slurm/` of the run
    directory and appends the job ids to `logs/slurm-jobs.json`."""
    from taskseed.curation.io.files import write_json

    folder = loaded.run_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    submitted: list[tuple[str, str]] = []
    previous: str | None = None
    for script in scripts:
        path = folder / f"{script.label}.sbatch"
        path.write_text(script.text)
        argv = ["sbatch", *with_dependency(script.options, previous), str(path)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise TaskseedError(f"sbatch failed for {script.label} ({done.returncode}): "
                                f"{done.stderr.strip() or done.stdout.strip()}")
        previous = done.stdout.strip().split(";")[0]
        submitted.append((script.label, previous))
    record = loaded.run_dir / "logs" / JOBS_FILE
    known = json.loads(record.read_text())["jobs"] if record.exists() else []
    write_json(record, {"jobs": known + [
        {"label": label, "job_id": jid, "submitted": time.time()} for label, jid in submitted]})
    return submitted


def finish(invocation: Invocation) -> list[tuple[str, str]]:
    """The finish job: submit the next round (or the stages after the loop) when units are
    pending, chained to another finish job; else run `taskseed run` to finalize every stage
    and write the summary. Returns the jobs it submitted."""
    from taskseed.execution.run import run_pipeline

    loaded = _load(invocation)
    engine = _engine(loaded)
    runs = engine.prepare()
    if engine.loop is not None and not any(r.units() for r in runs[: engine.loop[1] + 1]):
        short = engine.next_round()
        if short:
            print(f"[accept] another round for {len(short)} tasks below the target: "
                  f"{', '.join(short)}", flush=True)
            runs = engine.prepare()
    jobs = plan_jobs(loaded, engine, runs)
    if jobs:
        options = SubmitOptions.load(loaded.run_dir / "logs" / OPTIONS_FILE)
        return _sbatch_chain(loaded, scripts_for(loaded, jobs, invocation, options))
    run_pipeline(invocation.config, invocation.overlays, invocation.run_dir,
                 sets=invocation.sets)
    return []


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument("--overlay", type=Path, action="append", default=[],
                        help="a per-scale overlay merged over the config (repeatable)")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                        help="override one config value, e.g. accept.target=50 (repeatable)")
    parser.add_argument("--run-dir", type=Path, help="override the config's run_dir")


def _invocation(args: argparse.Namespace) -> Invocation:
    run_dir = args.run_dir
    if run_dir is None:
        loaded = _load(Invocation(args.config, Path("."), args.overlay, args.sets))
        run_dir = Path(loaded.config.run_dir)
    return Invocation(args.config, run_dir, args.overlay, args.sets)


def add_slurm_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `submit`, `shard`, `frame`, `finish` and `status` on a CLI's subparsers."""
    from taskseed.views.status import add_status_command

    sub = subparsers.add_parser("submit", help="submit a run to Slurm as fused shard jobs, "
                                "Dask-cluster frame jobs and a finish job")
    _config_args(sub)
    sub.add_argument("--partition", help="Slurm partition for every job (over the config's)")
    sub.add_argument("--max-parallel", type=int, default=None,
                     help="at most this many array tasks of a job at once (--array=...%%N)")
    sub.add_argument("--sbatch-arg", action="append", default=[], dest="sbatch_args",
                     metavar="ARG", help="extra sbatch option for every job, e.g. "
                     "--sbatch-arg=--exclusive (repeatable)")
    sub.add_argument("--force", action="store_true",
                     help="submit even while jobs of this run are still queued or running")
    sub.add_argument("--dry-run", action="store_true",
                     help="print the job graph and each job's sbatch line and script only")
    sub.set_defaults(func=submit_command)

    shard = subparsers.add_parser("shard", help="run one shard through a group of stages "
                                  "(a Slurm array task)")
    _config_args(shard)
    shard.add_argument("--stage", required=True,
                       help="stage number or range, 1-based as in stages/NN-name (2-5)")
    shard.add_argument("--shard", type=int, required=True, help="shard index")
    shard.add_argument("--label", help="the job's label (names its log)")
    shard.set_defaults(func=shard_command)

    frame = subparsers.add_parser("frame", help="run frame stages on a Dask cluster "
                                  "(a frame job's driver)")
    _config_args(frame)
    frame.add_argument("--stage", required=True, help="frame stage number or range")
    frame.add_argument("--scheduler-file", type=Path, help="the Dask cluster to run on")
    frame.add_argument("--workers", type=int, default=1, help="workers to wait for")
    frame.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for the workers")
    frame.add_argument("--label", help="the job's label")
    frame.set_defaults(func=frame_command)

    died = subparsers.add_parser("died", help="record why an array task's process died (run "
                                 "by the job script after a signal)")
    _config_args(died)
    died.add_argument("--stage", required=True, help="the task's stage number or range")
    died.add_argument("--shard", type=int, required=True)
    died.add_argument("--exit-code", type=int, required=True,
                      help="the shell's exit status of the process (128 + signal)")
    died.add_argument("--log", type=Path, help="the task's log, for its last lines")
    died.add_argument("--label", help="the job's label")
    died.set_defaults(func=died_command)

    end = subparsers.add_parser("finish", help="a submission's last job: submit the next "
                                "round or the remaining stages, else finalize and summarize")
    _config_args(end)
    end.set_defaults(func=finish_command)
    add_status_command(subparsers)


def shard_command(args: argparse.Namespace) -> int:
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.enable(all_threads=False)  # a native crash leaves its stack in the log
    run_shard(_invocation(args), args.stage, args.shard)
    return 0


def died_command(args: argparse.Namespace) -> int:
    reason = mark_died(_invocation(args), args.stage, args.shard, args.exit_code, args.log)
    print(f"taskseed: error: {reason}", file=sys.stderr)
    return 0


def frame_command(args: argparse.Namespace) -> int:
    run_frames(_invocation(args), args.stage, args.scheduler_file, args.workers, args.timeout)
    return 0


def submit_command(args: argparse.Namespace) -> int:
    if args.max_parallel is not None and args.max_parallel < 1:
        raise TaskseedError("--max-parallel must be at least 1")
    options = SubmitOptions(args.partition, args.max_parallel, args.sbatch_args,
                            force=args.force)
    for label, job_id in submit(_invocation(args), options, args.dry_run):
        print(f"submitted {label}: job {job_id}")
    return 0


def finish_command(args: argparse.Namespace) -> int:
    for label, job_id in finish(_invocation(args)):
        print(f"submitted {label}: job {job_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m taskseed.slurm submit|shard|frame|finish|status ...`."""
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
