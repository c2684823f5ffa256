"""The job graph of a Slurm submission: which stages run together, on what, and in which order.

- A **shard job** is one array job for a group of consecutive source and batch stages (seeds,
  normalize, generate, filters, enrich, judges): array task `i` runs shard `i` through every
  stage of the group in one process, so a model loads once per task, not once per stage.
- A **frame job** runs consecutive frame stages (dedup, decontamination, mixing) on a Dask
  cluster that its own allocation starts, one or more nodes.
- Barriers stay where the data set must be whole (before a frame stage) and at the edges of
  a generate-until-N loop, whose rounds the finish job submits.

Each job asks for the resources of its stages (`slurm.resources`, see
`taskseed.config.slurm`): the most any of them needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from taskseed.config.slurm import Resources, SlurmConfig, combined
from taskseed.execution.engine import Engine, StageRun, model_of

JobKind = Literal["shards", "frame"]


@dataclass
class Job:
    """One sbatch job of a submission (the finish job is added by the submitter)."""

    kind: JobKind
    runs: list[StageRun]
    units: list[int]  # array indices (shard jobs); [0] for a frame job
    resources: Resources
    models: list[str]  # named models its stages call

    @property
    def label(self) -> str:
        """`02-normalize..05-enrich`, or the one stage folder."""
        first, last = self.runs[0].folder, self.runs[-1].folder
        return first if first == last else f"{first}..{last.split('-', 1)[0]}"

    @property
    def stage_span(self) -> str:
        """`2-5` or `3`: the `--stage` argument of the job's command."""
        first, last = self.runs[0].index, self.runs[-1].index
        return str(first) if first == last else f"{first}-{last}"

    def describe(self) -> str:
        names = " -> ".join(run.stage.name for run in self.runs)
        return f"{self.kind} job [{names}]"


def parse_span(span: str, count: int) -> tuple[int, int]:
    """`3` or `2-5` as a 1-based inclusive range within `count` stages."""
    from taskseed.curation.errors import TaskseedError

    try:
        first, _, last = span.partition("-")
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise TaskseedError(f"--stage {span}: give a stage number or a range such as 2-5") \
            from None
    if not 1 <= lo <= hi <= count:
        raise TaskseedError(f"--stage {span}: the config has stages 1..{count}")
    return lo, hi


def _groups(engine: Engine, runs: list[StageRun], fuse: bool) -> list[list[StageRun]]:
    """Consecutive runs that share a job: batch stages of one shard space; frame stages."""
    loop_edges = set()
    if engine.loop is not None:
        loop_edges = {engine.loop[0] + 1, engine.loop[1] + 2}  # 1-based first index of a part
    groups: list[list[StageRun]] = []
    for run in runs:
        if groups:
            last = groups[-1][-1]
            same_shape = last.whole_dataset == run.whole_dataset
            adjacent = run.index == last.index + 1
            if fuse and same_shape and adjacent and run.index not in loop_edges:
                groups[-1].append(run)
                continue
        groups.append([run])
    return groups


def plan_graph(engine: Engine, runs: list[StageRun], slurm: SlurmConfig,
               gpus_of: Callable[[str], int]) -> list[Job]:
    """The jobs for `runs` (the stages of one submission) that have pending work."""
    jobs: list[Job] = []
    for group in _groups(engine, runs, slurm.fuse):
        units = sorted({u for run in group for u in run.units()})
        if not units:
            continue
        frame = group[0].whole_dataset
        requests: list[Resources] = []
        models: list[str] = []
        for run in group:
            calls = run.stage.calls_models
            name = model_of(run.stage) if calls else ""
            if calls and name not in models:
                models.append(name)
            requests.append(slurm.stage_resources(run.stage.name, calls, frame,
                                                  gpus_of(name) if calls else 0))
        jobs.append(Job("frame" if frame else "shards", group, units, combined(requests),
                        models))
    return jobs
