"""`slurm:` in a pipeline config: resources per stage, the Dask cluster of frame jobs,
containers and job set-up lines.

Resources resolve per stage from the most general to the most specific entry of
`slurm.resources`: `default` (site defaults: partition, account, time), then `cpu` or
`model` (stages that call a teacher, judge or reward model), then `frame` for frame stages,
then the stage's own name; the finish job takes `default`, `cpu`, then `finish`. A model
stage with no `gpus` set asks for the GPUs its model needs (`tensor_parallel_size` of an
in-process backend or of a managed server; none for a remote endpoint or the embedded CPU
model).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskseed.curation.errors import TaskseedError

CLASSES = ("default", "cpu", "model", "frame", "finish")
JOB_KINDS = ("default", "model", "cpu", "frame", "finish")


class Resources(BaseModel):
    """What one Slurm job asks for; unset fields fall through to the more general entry."""

    model_config = ConfigDict(extra="forbid")

    gpus: int | None = Field(None, ge=0)  # per node (--gres=gpu:N)
    cpus: int | None = Field(None, ge=1)  # per task (--cpus-per-task)
    mem: str | None = None  # per node (--mem), e.g. 64G
    time: str | None = None  # --time, e.g. 04:00:00
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int | None = Field(None, ge=1)  # frame jobs: nodes of the Dask cluster
    # set by the plan for a tensor-parallel model: one task per GPU (`cpus` is then per task)
    tasks_per_node: int | None = Field(None, ge=1)
    sbatch_args: list[str] = Field(default_factory=list)  # any other sbatch option

    def over(self, base: Resources) -> Resources:
        """These settings over `base`: set fields win, sbatch_args add up."""
        mine = self.model_dump(exclude_unset=True, exclude={"sbatch_args"})
        merged = {**base.model_dump(), **{k: v for k, v in mine.items() if v is not None}}
        merged["sbatch_args"] = [*base.sbatch_args, *self.sbatch_args]
        return Resources(**merged)

    def sbatch_options(self) -> list[str]:
        """The resources as sbatch options."""
        opts: list[str] = []
        named = (("partition", self.partition), ("account", self.account),
                 ("qos", self.qos), ("time", self.time), ("mem", self.mem),
                 ("cpus-per-task", self.cpus), ("nodes", self.nodes),
                 ("ntasks-per-node", self.tasks_per_node))
        opts += [f"--{flag}={value}" for flag, value in named if value is not None]
        if self.gpus:
            opts.append(f"--gres=gpu:{self.gpus}")
        return opts + list(self.sbatch_args)

    def describe(self) -> str:
        """`2 GPU, 8 CPU, 64G, 04:00:00, partition gpu` for dry runs and status."""
        parts = [f"{self.gpus or 0} GPU", f"{self.cpus or 1} CPU"]
        if self.tasks_per_node:
            parts[1] = f"{self.tasks_per_node} tasks x {self.cpus or 1} CPU"
        parts += [v for v in (self.mem, self.time) if v]
        if self.nodes and self.nodes > 1:
            parts.insert(0, f"{self.nodes} nodes")
        if self.partition:
            parts.append(f"partition {self.partition}")
        if self.account:
            parts.append(f"account {self.account}")
        return ", ".join(parts)


class DaskClusterConfig(BaseModel):
    """The Dask cluster a frame job starts inside its allocation: a scheduler on the first
    node and workers on every node (`dask cuda worker` with `executor.backend: cudf`)."""

    model_config = ConfigDict(extra="forbid")

    workers_per_node: int = Field(2, ge=1)  # CPU workers; dask-cuda starts one per GPU
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "auto"
    startup_timeout_s: float = Field(300.0, gt=0)


class ContainerConfig(BaseModel):
    """Run a job's steps in a container through pyxis (`srun --container-image`)."""

    model_config = ConfigDict(extra="forbid")

    image: str
    mounts: list[str] = Field(default_factory=list)  # src:dst[:flags]
    workdir: str | None = None
    srun_args: list[str] = Field(default_factory=list)  # e.g. --no-container-mount-home

    def srun_options(self) -> list[str]:
        opts = [f"--container-image={self.image}"]
        if self.mounts:
            opts.append(f"--container-mounts={','.join(self.mounts)}")
        if self.workdir:
            opts.append(f"--container-workdir={self.workdir}")
        return opts + list(self.srun_args)


class SlurmConfig(BaseModel):
    """How `taskseed submit` lays a run out on a Slurm cluster."""

    model_config = ConfigDict(extra="forbid")

    resources: dict[str, Resources] = Field(default_factory=dict)
    dask: DaskClusterConfig = Field(default_factory=DaskClusterConfig)
    # One container for every job, or one per job kind (`model`: shard jobs that run a
    # model, `cpu`: other shard jobs, `frame`, `finish`, `default`: the rest), e.g. a RAPIDS
    # image for frame jobs and TensorRT-LLM's for model jobs: their Python and pins differ.
    container: ContainerConfig | dict[str, ContainerConfig | None] | None = None
    setup: list[str] = Field(default_factory=list)  # shell lines before work (module load...)
    env: dict[str, str] = Field(default_factory=dict)  # exported to every job
    max_parallel: int | None = Field(None, ge=1)  # array tasks of one job at once
    fuse: bool = True  # consecutive batch stages run per shard in one array task
    job_prefix: str = "taskseed"
    python: str | None = None  # the job's Python: this one, or python3 in a container
    gpus_per_node: int | None = Field(None, ge=1)  # tensor parallelism beyond: several nodes

    @field_validator("container")
    @classmethod
    def _container_kinds(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(JOB_KINDS))
            if unknown:
                raise ValueError(f"container: unknown job kind(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(JOB_KINDS)})")
        return value

    def container_for(self, kind: str) -> ContainerConfig | None:
        """The container of a job kind (`model`, `cpu`, `frame`, `finish`); None: the host."""
        if not isinstance(self.container, dict):
            return self.container
        return self.container.get(kind, self.container.get("default"))

    def stage_resources(self, name: str, calls_models: bool, frame: bool,
                        model_gpus: int = 0) -> Resources:
        """The resolved resources of one stage."""
        chain = ["default", "model" if calls_models else "cpu"]
        if frame:
            chain.append("frame")
        chain.append(name)
        resolved = Resources()
        if calls_models:
            resolved = Resources(gpus=model_gpus)
        elif not frame:
            resolved = Resources(gpus=0)
        for key in chain:
            if key in self.resources:
                resolved = self.resources[key].over(resolved)
        return resolved

    def check_names(self, stage_names: list[str], where: str) -> None:
        """Every key of `slurm.resources` is a class or a stage of the config."""
        for key in self.resources:
            if key not in CLASSES and key not in stage_names:
                raise TaskseedError(
                    f"{where}: slurm.resources.{key}: neither {', '.join(CLASSES)} nor a stage "
                    f"of this config ({', '.join(stage_names)})")


_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def mem_mb(value: str | None) -> float:
    """`64G` -> 65536 (MB, Slurm's default unit); None -> 0."""
    if not value:
        return 0.0
    match = _MEM.match(value.strip())
    if not match:
        raise TaskseedError(f"slurm.resources: mem '{value}' is not a size such as 64G")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]


def time_minutes(value: str | None) -> float:
    """Slurm time formats (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`) in minutes."""
    if not value:
        return 0.0
    days, _, rest = value.partition("-") if "-" in value else ("0", "", value)
    parts = [float(p) for p in rest.split(":")]
    if "-" in value:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return float(days) * 1440 + hours * 60 + minutes + seconds / 60


def combined(requests: list[Resources]) -> Resources:
    """What one job running several stages in turn asks for: the most GPUs, CPUs, memory,
    nodes and time of any of them, the partition and account of the stage with the most
    GPUs."""
    if not requests:
        return Resources()
    lead = max(requests, key=lambda r: r.gpus or 0)
    args: list[str] = []
    for r in requests:
        args += [a for a in r.sbatch_args if a not in args]
    return Resources(
        gpus=max(r.gpus or 0 for r in requests),
        cpus=max((r.cpus for r in requests if r.cpus), default=None),
        mem=max((r.mem for r in requests if r.mem), key=mem_mb, default=None),
        time=max((r.time for r in requests if r.time), key=time_minutes, default=None),
        partition=lead.partition or next((r.partition for r in requests if r.partition), None),
        account=lead.account or next((r.account for r in requests if r.account), None),
        qos=lead.qos,
        nodes=max((r.nodes for r in requests if r.nodes), default=None),
        tasks_per_node=max((r.tasks_per_node for r in requests if r.tasks_per_node),
                           default=None),
        sbatch_args=args,
    )

