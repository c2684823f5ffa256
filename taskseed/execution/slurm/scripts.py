"""sbatch scripts and command lines of a submission, rendered from the `slurm/` templates.

Every job's script is complete: the config, overlays, `--set` values and run directory are
written into its command line, so a job needs nothing from the submitting shell. Resources
go on the sbatch command line, where the dry run shows them.
"""

from __future__ import annotations

import os
import shlex
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import taskseed
from taskseed.config.slurm import ContainerConfig, Resources, SlurmConfig
from taskseed.curation.errors import TaskseedError
from taskseed.execution.slurm.jobgraph import Job
from taskseed.generation.servers.managed import (
    ServerConfig,
    TPLaunch,
    connect_host,
    llm_api_options,
    server_command,
)

TEMPLATES_ENV = "TASKSEED_SLURM_TEMPLATES"
DEFAULT_TEMPLATES = Path(taskseed.__file__).resolve().parents[1] / "slurm"
TEMPLATES = {"shards": "shards.sbatch", "frame": "frame.sbatch", "finish": "finish.sbatch"}


@dataclass
class Invocation:
    """What every job passes to `python -m taskseed.slurm`: the config as the user gave it."""

    config: Path
    run_dir: Path
    overlays: list[Path] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)

    def args(self) -> str:
        words = [str(self.config.resolve()), "--run-dir", str(self.run_dir.resolve())]
        for overlay in self.overlays:
            words += ["--overlay", str(overlay.resolve())]
        for item in self.sets:
            words += ["--set", item]
        return " ".join(shlex.quote(w) for w in words)


@dataclass
class Script:
    """One job to submit: a label, its sbatch options (no dependency) and its script."""

    label: str
    options: list[str]
    text: str
    summary: str = ""


def templates_dir(override: Path | None) -> Path:
    folder = override or Path(os.environ.get(TEMPLATES_ENV) or DEFAULT_TEMPLATES)
    for name in TEMPLATES.values():
        if not (folder / name).is_file():
            raise TaskseedError(f"sbatch template {folder / name} is missing "
                                f"(set {TEMPLATES_ENV} to the folder holding it)")
    return folder


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


def _setup(slurm: SlurmConfig) -> str:
    lines = [f"export {key}={shlex.quote(value)}" for key, value in slurm.env.items()]
    return "\n".join(lines + list(slurm.setup))


def _python(slurm: SlurmConfig, container: ContainerConfig | None) -> str:
    if slurm.python:
        return slurm.python
    return "python3" if container else shlex.quote(sys.executable)


def _srun_container(container: ContainerConfig | None) -> str:
    if container is None:
        return ""
    return " ".join(shlex.quote(o) for o in container.srun_options())


def shell_words(words: list[str]) -> str:
    """A command line for a job script: words quoted, except that a word holding a shell
    variable (`$port_teacher`) is double-quoted so that it expands."""
    return " ".join(f'"{w}"' if "$" in w else shlex.quote(w) for w in words)


def model_note(name: str, served_name: str, server: ServerConfig | None, in_process: str
               ) -> str:
    """A comment line saying how the task itself runs model `name`: the command line of the
    server it starts on its node, or the model it loads in its own process."""
    if server is not None:
        words = server_command(server, served_name, "<free port>")
        return f"# {name}: the task starts `{shlex.join(words)}` on its node"
    return f"# {name}: {in_process}"


def server_step(name: str, served_name: str, server: ServerConfig, plan: TPLaunch,
                cpus_per_task: int | None, container: ContainerConfig | None,
                logs: Path) -> str:
    """Job-script lines that start a trtllm-serve as a step of its own under TensorRT-LLM's
    launcher, in the job's container, with its LLM-API options file written beside its log;
    the task finds it through `TASKSEED_SERVER_<NAME>_URL` and the script's EXIT trap stops
    it."""
    from taskseed.execution.serving import server_env

    var = name.lower().replace("-", "_")
    log = f"{logs}/server-{name}-${{SLURM_JOB_ID}}"
    port = str(server.port) if server.port else "$(( 20000 + SLURM_JOB_ID % 20000 ))"
    body = server_command(server.model_copy(update={"launcher": []}), served_name,
                          f"$port_{var}", f"$options_{var}")
    words = [*plan.launcher(cpus_per_task, container.srun_options() if container else ()),
             *body]
    options = yaml.safe_dump(llm_api_options(server), sort_keys=True).rstrip()
    host = connect_host(server.host)
    host = f"[{host}]" if ":" in host else host
    return "\n".join([
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
        f"# {name}: {server.launch}, tensor parallelism {plan.tensor_parallel_size} on "
        f"{plan.nodes} node(s), one MPI task per GPU under TensorRT-LLM's launcher",
        f"port_{var}={port}",
        f'options_{var}="{log}.llm-api.yaml"',
        f"cat > \"$options_{var}\" <<'LLMAPI'", options, "LLMAPI",
        f'{shell_words(words)} > "{log}.log" 2>&1 &',
        f'export {server_env(name)}="http://{host}:$port_{var}/v1"',
    ])


@dataclass
class Renderer:
    """Renders the jobs of one submission."""

    slurm: SlurmConfig
    invocation: Invocation
    name: str
    templates: Path
    partition: str | None = None  # `--partition` of `taskseed submit`: every job
    sbatch_args: list[str] = field(default_factory=list)  # `--sbatch-arg`: every job
    max_parallel: int | None = None
    launch_prefix: dict[str, str] = field(default_factory=dict)  # per job label
    server_steps: dict[str, str] = field(default_factory=dict)  # per job label

    @property
    def logs(self) -> Path:
        return self.invocation.run_dir.resolve() / "logs"

    def _render(self, kind: str, container: ContainerConfig | None, **values: str) -> str:
        text = (self.templates / TEMPLATES[kind]).read_text()
        common = {"setup": _setup(self.slurm), "python": _python(self.slurm, container),
                  "args": self.invocation.args(), "logs": str(self.logs), "servers": ""}
        try:
            return string.Template(text).substitute({**common, **values})
        except (KeyError, ValueError) as err:
            raise TaskseedError(f"sbatch template {self.templates / TEMPLATES[kind]}: "
                                f"unknown placeholder {err}") from None

    def _options(self, job_name: str, output: str, resources: Resources) -> list[str]:
        if self.partition:
            resources = Resources(partition=self.partition).over(resources)
        return ["--parsable", "--kill-on-invalid-dep=yes", f"--chdir={Path.cwd()}",
                f"--job-name={self.slurm.job_prefix}-{self.name}-{job_name}",
                f"--output={self.logs}/{output}", *resources.sbatch_options(),
                *self.sbatch_args]

    def job(self, job: Job) -> Script:
        stages = " -> ".join(run.stage.name for run in job.runs)
        if job.kind == "frame":
            return self._frame(job, stages)
        parallel = self.max_parallel or self.slurm.max_parallel
        options = self._options(job.label, f"{job.label}-%A_%a.out", job.resources)
        options.insert(3, f"--array={array_spec(job.units, parallel)}")
        image = self.slurm.container_for("model" if job.models else "cpu")
        container = _srun_container(image)
        servers = self.server_steps.get(job.label, "")
        cpus = f" --cpus-per-task={job.resources.cpus}" if job.resources.cpus else ""
        # no `exec`: the script outlives the process to record a death by signal;
        # `--overlap`: the step shares the node with a server step the script started
        launch = self.launch_prefix.get(job.label) or (
            f"srun --ntasks=1 --nodes=1{cpus} --overlap {container}" if container else "")
        text = self._render(
            "shards", image, label=job.label, stages=stages, launch=launch, servers=servers,
            after=f"srun --ntasks=1 --nodes=1 --overlap {container}" if container else "",
            args=f"{self.invocation.args()} --stage {job.stage_span} --label {job.label}")
        summary = (f"{job.label}: shard job, {len(job.units)} array tasks, each runs "
                   f"{stages}; {job.resources.describe()}")
        if job.models:
            summary += f"; models: {', '.join(job.models)}"
        return Script(job.label, options, text, summary)

    def _frame(self, job: Job, stages: str) -> Script:
        dask = self.slurm.dask
        nodes = job.resources.nodes or 1
        gpu = bool(job.resources.gpus)
        if gpu:
            worker = "cuda worker"
            expected = nodes * (job.resources.gpus or 1)
        else:
            worker = (f"worker --nworkers {dask.workers_per_node} --nthreads "
                      f"{dask.threads_per_worker} --memory-limit {dask.memory_limit} "
                      "--no-dashboard")
            expected = nodes * dask.workers_per_node
        options = self._options(job.label, f"{job.label}-%j.out", job.resources)
        options.insert(3, "--ntasks-per-node=1")
        image = self.slurm.container_for("frame")
        text = self._render(
            "frame", image, label=job.label, stages=stages, worker=worker,
            srun_args=_srun_container(image),
            driver=(f"srun --overlap --nodes=1 --ntasks=1 {_srun_container(image)}"
                    if image else ""),
            args=(f"{self.invocation.args()} --stage {job.stage_span} --label {job.label} "
                  f"--workers {expected} --timeout {dask.startup_timeout_s:g}"))
        kind = "dask-cuda" if gpu else "Dask"
        summary = (f"{job.label}: frame job, {stages} on a {kind} cluster of {nodes} node(s), "
                   f"{expected} workers; {job.resources.describe()}")
        return Script(job.label, options, text, summary)

    def finish(self) -> Script:
        resources = self.slurm.stage_resources("finish", False, False)
        options = self._options("finish", "finish-%j.out", resources)
        image = self.slurm.container_for("finish")
        container = _srun_container(image)
        launch = f"srun --ntasks=1 {container}" if container else "exec"
        text = self._render("finish", image, launch=launch)
        return Script("finish", options, text, f"finish: {resources.describe()}")


def with_dependency(options: list[str], dependency: str | None) -> list[str]:
    return options if dependency is None else [f"--dependency=afterok:{dependency}", *options]


def dry_run_script(scripts: list[Script]) -> str:
    """The submission as a shell script: the job graph, then each sbatch with its script on
    standard input, each waiting on the one before it."""
    lines = ["#!/bin/bash", "# job graph, in order (each job after the one before it):"]
    lines += [f"#   {n}. {s.summary}" for n, s in enumerate(scripts, start=1)]
    lines.append("set -euo pipefail")
    previous: str | None = None
    for n, script in enumerate(scripts, start=1):
        var = f"JOB{n}"
        dep = f"${{{previous}%%;*}}" if previous else None
        words = ["sbatch", *(shlex.quote(a) for a in with_dependency(script.options, dep))]
        if dep is not None:
            words[1] = f"--dependency=afterok:{dep}"
        lines.append(f"# {script.label}")
        lines.append(f"{var}=$({' '.join(words)} <<'SBATCH'\n{script.text.rstrip()}\nSBATCH\n)")
        previous = var
    lines.append(f'echo "final job: ${{{previous}%%;*}}"')
    return "\n".join(lines) + "\n"
