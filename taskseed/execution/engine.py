"""The executor contract: what the local, Slurm and planning executors share.

An executor turns a list of stages into work on a run directory. Everything except *where*
the work runs is here, written once:

- `Engine.prepare` claims each stage folder (a changed stage config is refused), loads or
  creates each source stage's shard plan, and counts every stage's shards;
- `stage_run` is the only dispatch on stage shape: a `StageRun` per stage says which units
  of work are pending and runs one of them (`execute`), or previews it in memory (`preview`);
- `Engine.before_work` is the gate before a stage gets work: the budget cap, then the
  stage's own readiness check (a teacher server that cannot be reached);
- every shard is committed by `shardrun.commit` (items, rejects, then the done marker).

Units: a source or batch stage has one unit per shard; a frame stage needs the whole data
set and is one unit (0) that writes all its shards, with Dask parallelism inside it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from taskseed.config.budget import SPEND_KEYS, BudgetConfig
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.files import write_json
from taskseed.curation.record import Record
from taskseed.curation.stage import (
    BatchStage,
    DoneMarker,
    FrameStage,
    SourceStage,
    Stage,
    StageResult,
)
from taskseed.execution.rounds import AcceptConfig, Rounds
from taskseed.execution.shard import commit, marked_result, ready
from taskseed.rundir.layout import RunDir, StageDir
from taskseed.rundir.units import tracked


@dataclass
class StageRun:
    """One stage of a run: its folder, its input folder and how many shards it makes."""

    index: int  # 1-based, as in stages/NN-name
    stage: Stage
    out: StageDir
    src: StageDir | None
    shards: int
    whole_dataset: ClassVar[bool] = False

    @property
    def folder(self) -> str:
        return self.out.path.name

    def pending(self) -> list[int]:
        """Shards without a done marker."""
        return [i for i in range(self.shards) if not self.out.is_done(i)]

    def units(self) -> list[int]:
        """The units of work still to run."""
        return self.pending()

    def check_unit(self, unit: int) -> None:
        """Raise a one-line error when `unit` is not a unit of this stage."""

    def is_done(self, unit: int) -> bool:
        return self.out.is_done(unit)

    def execute(self, unit: int) -> dict[int, DoneMarker]:
        """Run one unit in this process and commit it; the done markers by shard."""
        raise NotImplementedError

    def run_tracked(self, unit: int) -> dict[int, DoneMarker]:
        """Execute one unit marked running (failed, with its reason, when it raises)."""
        with tracked(self.out, unit):
            return self.execute(unit)

    def preview(self, items: list[Any] | None, shard: int) -> StageResult | None:
        """This stage's result for one shard, in memory, touching no file (None: the stage
        needs the whole data set)."""
        return None

    def finalize(self) -> None:
        self.stage.finalize(self.out)

    def markers(self) -> list[DoneMarker]:
        return self.out.markers()


@dataclass
class SourceRun(StageRun):
    stage: SourceStage
    plan: list[Any] | None = None  # None: the plan file is missing and may not be created

    def check_unit(self, unit: int) -> None:
        if self.plan is None:
            raise TaskseedError(f"{self.out.plan_path()} is missing: `taskseed submit` plans "
                                "source shards")
        if not 0 <= unit < len(self.plan):
            raise TaskseedError(f"stage '{self.stage.name}' has {len(self.plan)} planned "
                                f"shards, not {unit}")

    def execute(self, unit: int) -> dict[int, DoneMarker]:
        self.check_unit(unit)
        assert self.plan is not None
        start = time.perf_counter()
        result = ready(self.stage).read(self.plan[unit])  # type: ignore[attr-defined]
        inputs = len(result.items) + len(result.rejects)
        seconds = time.perf_counter() - start
        return {unit: commit(self.out, unit, result, self.stage.output_kind, inputs, seconds)}

    def preview(self, items: list[Any] | None, shard: int) -> StageResult:
        self.check_unit(shard)
        assert self.plan is not None
        return self.stage.read(self.plan[shard])


@dataclass
class BatchRun(StageRun):
    stage: BatchStage
    src: StageDir
    rounds: Rounds | None = None  # set on the first stage of a generate-until-N loop

    def execute(self, unit: int) -> dict[int, DoneMarker]:
        source = unit if self.rounds is None else self.rounds.source_shard(unit)
        if not self.src.is_done(source):
            raise TaskseedError(f"stage '{self.stage.name}' shard {unit}: input "
                                f"{self.src.done_path(source)} is not done")
        start = time.perf_counter()
        batch = self.src.read_shard(source, self.stage.input_kind)  # type: ignore[arg-type]
        if self.rounds is not None:
            batch = self.rounds.select(unit, batch)
        result = ready(self.stage).process_shard(batch, unit)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - start
        return {unit: commit(self.out, unit, result, self.stage.output_kind, len(batch),
                             seconds)}

    def preview(self, items: list[Any] | None, shard: int) -> StageResult:
        return self.stage.process(items or [], shard)


@dataclass
class FrameRun(StageRun):
    stage: FrameStage
    src: StageDir
    whole_dataset: ClassVar[bool] = True

    def units(self) -> list[int]:
        return [0] if self.pending() else []

    def check_unit(self, unit: int) -> None:
        if unit != 0:
            raise TaskseedError(f"stage '{self.stage.name}' is a frame stage: run it as --shard 0")

    def is_done(self, unit: int) -> bool:
        return not self.pending()

    def execute(self, unit: int = 0) -> dict[int, DoneMarker]:
        """Every pending shard, computed by Dask: on the active distributed client when there
        is one (the local executor's cluster), else on local threads (a Slurm task)."""
        import dask

        self.check_unit(unit)
        pending, tasks = self.frame_tasks()
        return dict(zip(pending, dask.compute(*tasks), strict=True))

    def frame_tasks(self) -> tuple[list[int], list[Any]]:
        """The pending output shards and a delayed commit of each."""
        import dask

        from taskseed.curation.io.frames import read_records

        pending = self.pending()
        if not pending:
            return [], []
        files = [self.src.shard_path(i) for i in self.src.done_shards()]
        if not files:
            raise TaskseedError(f"stage '{self.stage.name}' has no input shards in "
                                f"{self.src.path}")
        parts = self.stage.run(read_records(files), self.shards).to_delayed()
        write = dask.delayed(_commit_partition)
        return pending, [write(parts[i], self.stage.name, self.out, i) for i in pending]


def _commit_partition(part: Any, stage_name: str, out: StageDir, shard: int) -> dict[str, Any]:
    start = time.perf_counter()
    result, rows = marked_result(stage_name, part)
    return commit(out, shard, result, Record, rows, time.perf_counter() - start)


def _add(spent: Counter[str], marker: DoneMarker) -> None:
    for key in SPEND_KEYS:
        spent[key] += marker.counters.get(key, 0)


def model_of(stage: Stage) -> str:
    """The named model a model-calling stage spends (its `model` parameter)."""
    return str(getattr(stage.params, "model", "teacher"))


PlanLoader = Callable[[SourceStage, StageDir], "list[Any] | None"]


def stage_run(
    index: int, stage: Stage, out: StageDir, previous: StageRun | None, load_plan: PlanLoader
) -> StageRun:
    """The `StageRun` for a stage's shape: the one place that dispatches on it."""
    if isinstance(stage, SourceStage):
        plan = load_plan(stage, out)
        return SourceRun(index, stage, out, None, len(plan or []), plan)
    if previous is None:
        raise TaskseedError(f"stage '{stage.name}' needs an input stage")
    if isinstance(stage, FrameStage):
        return FrameRun(index, stage, out, previous.out, stage.shard_count())
    if isinstance(stage, BatchStage):
        return BatchRun(index, stage, out, previous.out, previous.shards)
    raise TaskseedError(f"stage '{stage.name}' has no executable shape")


@dataclass
class Engine:
    """A pipeline on a run directory, as every executor sees it."""

    stages: list[Stage]
    run_dir: RunDir
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    accept: AcceptConfig | None = None
    runs: list[StageRun] = field(default_factory=list)
    loop: tuple[int, int] | None = None  # first and last run index of the accept loop
    acceptance: dict[str, dict[str, int]] = field(default_factory=dict)
    _spent: Counter[str] | None = field(default=None, repr=False)
    _by_model: dict[str, Counter[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def at(cls, stages: list[Stage], path: Path, budget: BudgetConfig | None = None,
           accept: AcceptConfig | None = None) -> Engine:
        return cls(stages, RunDir(path), budget or BudgetConfig(), accept)

    def prepare(self, *, write: bool = True, require_plans: bool = False) -> list[StageRun]:
        """Claim every stage folder, load or create source plans and count shards.

        `write=False` writes nothing (plans are computed in memory); `require_plans` never
        creates a plan (a Slurm task must find the one `taskseed submit` wrote).
        """
        def load_plan(stage: SourceStage, out: StageDir) -> list[Any] | None:
            return self._source_plan(stage, out, write, require_plans)

        runs: list[StageRun] = []
        for index, stage in enumerate(self.stages, start=1):
            out = self.run_dir.stage(index, stage.name)
            self.run_dir.claim_stage(out, stage.fingerprint(), stage.name, write)
            runs.append(stage_run(index, stage, out, runs[-1] if runs else None, load_plan))
        self.runs = runs
        self._spent = None
        if self.accept is not None:
            self._set_rounds(runs, self.accept)
        return runs

    def _set_rounds(self, runs: list[StageRun], accept: AcceptConfig) -> None:
        """Number the loop's shards by round (see `taskseed.execution.rounds`)."""
        first = next((i for i, r in enumerate(runs) if r.stage.name == accept.start), None)
        if first is None or not isinstance(runs[first], BatchRun):
            raise TaskseedError(f"accept.start: no batch stage named '{accept.start}'")
        last = first
        while last + 1 < len(runs) and isinstance(runs[last + 1], BatchRun):
            last += 1
        rounds = Rounds.load(self.run_dir.path, runs[first].shards)
        for run in runs[first:last + 1]:
            run.shards = rounds.shards
        runs[first].rounds = rounds  # type: ignore[attr-defined]
        self.loop = (first, last)

    def next_round(self) -> list[str]:
        """After the loop's last stage: count accepted records per task and add a round for
        the tasks still short (none: the loop is done). Writes `acceptance.json`."""
        assert self.accept is not None and self.loop is not None
        loop = self.runs[self.loop[0]:self.loop[1] + 1]
        rounds: Rounds = loop[0].rounds  # type: ignore[attr-defined]
        stats = rounds.progress([run.out for run in loop])
        short = rounds.extend(self.accept, stats)
        self.acceptance = {
            task: {"target": self.accept.target, "accepted": 0, **s,
                   "rounds": sum(1 for r in rounds.rounds if r is None or task in r)}
            for task, s in stats.items()}
        write_json(self.run_dir.path / "acceptance.json",
                   {"rounds": len(rounds.rounds), "tasks": self.acceptance})
        return short

    @staticmethod
    def _source_plan(
        stage: SourceStage, out: StageDir, write: bool, require: bool
    ) -> list[Any] | None:
        path = out.plan_path()
        if path.exists():
            return json.loads(path.read_text())
        if require:
            return None
        plan = stage.plan()
        if write:
            write_json(path, plan)
        return plan

    @property
    def spent(self) -> Counter[str]:
        """Model usage of the run directory so far: every committed shard counts."""
        if self._spent is None:
            spent: Counter[str] = Counter()
            self._by_model = {}
            for run in self.runs:
                if run.stage.calls_models:
                    for marker in run.markers():
                        _add(spent, marker)
                        _add(self._by_model.setdefault(model_of(run.stage), Counter()), marker)
            self._spent = spent
        return self._spent

    def spent_by(self, model: str) -> Counter[str]:
        """Usage of one named model so far."""
        _ = self.spent
        return self._by_model.setdefault(model, Counter())

    def add_spend(self, marker: DoneMarker, stage: Stage | None = None) -> None:
        """Count the usage of a shard committed since the total was last read."""
        if self._spent is not None:
            _add(self._spent, marker)
            if stage is not None:
                _add(self._by_model.setdefault(model_of(stage), Counter()), marker)

    def check_budget(self, run: StageRun) -> None:
        """The budget gate: before work that calls models, stop at a reached cap of the
        run or of the stage's model."""
        if run.stage.calls_models:
            model = model_of(run.stage)
            self.budget.check(self.spent, model, self.spent_by(model))

    def before_work(self, run: StageRun) -> None:
        """Before a stage gets pending work: the budget gate, then the stage's own check
        (a teacher server that cannot be reached fails here, in one line)."""
        self.check_budget(run)
        run.stage.check_ready()

    def account(self, run: StageRun, markers: dict[int, DoneMarker]) -> None:
        """Count the spend of units just committed (the next gate sees it)."""
        for marker in markers.values():
            self.add_spend(marker, run.stage)

    def run_unit(self, run: StageRun, unit: int) -> dict[int, DoneMarker]:
        """The unit loop in this process: gate, run it tracked, commit, count its spend.
        Executors that run units elsewhere (Dask workers) split it at `run_tracked`."""
        self.before_work(run)
        markers = run.run_tracked(unit)
        self.account(run, markers)
        return markers
