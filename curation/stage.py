"""Stages: units of work over batches of typed items.

Three shapes cover the pipeline:

- `SourceStage` plans input shards and reads each one (seeds);
- `BatchStage` maps one input shard to one output shard (normalize, generate, enrich);
  `FilterStage` is a batch stage that only keeps or drops records, each drop with a reason;
- `FrameStage` needs the whole data set at once (dedup, mixing) and works on a Dask
  dataframe, whose backend is pandas on CPU and cuDF on GPU.

Stages know nothing about scale or the run directory: executors decide where and how many
shards run, and hand a finished stage its output as a `StageOutput` for `finalize`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import xxhash
from pydantic import BaseModel, ConfigDict, Field
from taskseed.curation.record import Record, Reject
from taskseed.curation.seeds.taskspec import TaskSpec
from taskseed.curation.verdict import KEEP, Verdict, drop  # noqa: F401 - the filter contract


class StageParams(BaseModel):
    """Base of every stage's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class NoParams(StageParams):
    """Parameters of a stage that takes none."""


class FrameParams(StageParams):
    """Parameters every frame stage has: how many output shards it writes."""

    shards: int = Field(4, ge=1)


P = TypeVar("P", bound=StageParams)
FP = TypeVar("FP", bound=FrameParams)


@dataclass
class StageResult:
    """What a stage made of one batch: kept items, rejects with reasons, and counters."""

    items: list[Any] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    failures: list[Reject] = field(default_factory=list)  # model requests that gave nothing

    def drop(self, stage: str, item: Any, reason: str, detail: str = "") -> None:
        """Record a dropped item as a reject of `stage`."""
        self.rejects.append(Reject.of(stage, reason, detail or reason, item))

    def apply(self, stage: str, item: Any, verdict: Verdict) -> None:
        """Keep the item, or reject it with the verdict's reason."""
        if verdict.keep:
            self.items.append(item)
        else:
            self.drop(stage, item, verdict.reason, verdict.detail)


@dataclass
class DoneMarker:
    """A committed shard's done marker (`part-N.done`, written last: it is the commit): its
    inputs, outputs, drops per reason, counters, seconds, and the model requests that gave
    nothing usable (None for a shard committed before such lists were kept)."""

    inputs: int = 0
    outputs: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failures: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, marker: DoneMarker | dict[str, Any]) -> DoneMarker:
        """A marker, given as one or as its fields."""
        return marker if isinstance(marker, DoneMarker) else cls.from_dict(marker)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DoneMarker:
        return cls(inputs=data.get("inputs", 0), outputs=data.get("outputs", 0),
                   rejects=dict(data.get("rejects") or {}),
                   counters=dict(data.get("counters") or {}),
                   seconds=data.get("seconds", 0.0), failures=data.get("failures"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": self.inputs, "outputs": self.outputs,
                               "rejects": dict(sorted(self.rejects.items())),
                               "counters": dict(sorted(self.counters.items())),
                               "seconds": round(self.seconds, 3)}
        if self.failures:
            out["failures"] = self.failures
        return out


class StageOutput(Protocol):
    """A finished stage's committed shards, as `finalize` sees them."""

    path: Path

    def done_shards(self) -> list[int]: ...

    def shard_path(self, shard: int) -> Path: ...

    def read_shard(self, shard: int, kind: type) -> list[Any]: ...

    def read_rejects(self, shard: int) -> list[Reject]: ...

    def read_marker(self, shard: int) -> DoneMarker: ...


@dataclass(frozen=True)
class BuildContext:
    """What a stage may need from the pipeline config to be built."""

    specs: dict[str, TaskSpec]
    seeds_root: Path
    run_dir: Path
    teacher: Any = None  # the generator's backend config (generation/backends/catalog.py)
    models: dict[str, Any] = field(default_factory=dict)  # the named models besides teacher
    seeds: Any = None  # seed records by id: `.get(ids) -> list[Record]` (judges show them)
    config_dir: Path | None = None  # the pipeline config's folder (relative paths in params)

    def model(self, name: str) -> Any:
        """The backend config of the model a config names (`teacher`, `judge`, ...)."""
        if name == "teacher" and self.teacher is not None:
            return self.teacher
        if name not in self.models:
            known = ", ".join(sorted({"teacher", *self.models}))
            raise KeyError(f"no model named '{name}' (known: {known})")
        return self.models[name]


class Stage(Generic[P]):
    """Base of every stage. `params` are the stage's validated config (a `params_model`)."""

    name: ClassVar[str]
    params_model: ClassVar[type[StageParams]] = NoParams
    input_kind: ClassVar[type | None] = Record
    output_kind: ClassVar[type] = Record
    calls_models: ClassVar[bool] = False  # spends model budget (teacher, judge, reward model)

    def __init__(self, params: P) -> None:
        self.params = params

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> Stage:
        """The stage for validated `params` in a pipeline; override to take more from context."""
        return cls(params)

    def fingerprint(self) -> str:
        """Hash of the stage's name and parameters: a changed config is a different stage."""
        data = self.params.model_dump(mode="json") if self.params is not None else {}
        blob = json.dumps([self.name, data], sort_keys=True).encode()
        return xxhash.xxh3_64_hexdigest(blob)

    def check_ready(self) -> None:
        """Fail with a one-line error when the stage cannot work (e.g. its server is down);
        called once before a run gives the stage work."""

    def setup(self) -> None:
        """Acquire per-process resources (models, clients) once before processing."""

    def teardown(self) -> None:
        """Release what setup acquired."""

    def finalize(self, output: StageOutput) -> None:
        """Called once after every shard of the stage is done (e.g. to write a manifest)."""


class SourceStage(Stage[P]):
    """A stage with no input stage: it plans its shards, then reads each one."""

    input_kind = None

    def plan(self) -> list[Any]:
        """JSON-serializable descriptions of the shards to read."""
        raise NotImplementedError

    def read(self, shard: Any) -> StageResult:
        raise NotImplementedError


class BatchStage(Stage[P]):
    """Maps a batch (one shard) of input items to output items and rejects."""

    def process(self, batch: list[Any], shard: int) -> StageResult:
        raise NotImplementedError

    def process_shard(self, batch: list[Any], shard: int) -> StageResult:
        """What the runner calls: `process`, plus anything the stage keeps per shard."""
        return self.process(batch, shard)


class FilterStage(BatchStage[P]):
    """Keeps or drops each record; every drop becomes a reject with its reason.

    Give a verdict per record with `check`, or per batch with `judge` (an expensive judge
    scores a whole batch at once). Kept records pass through unchanged, apart from any
    scores the filter wrote into `record.scores`.
    """

    def check(self, record: Record) -> Verdict:
        raise NotImplementedError

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        return [self.check(record) for record in batch]

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        verdicts = self.judge(batch, shard, result.counters)
        if len(verdicts) != len(batch):
            raise RuntimeError(f"filter '{self.name}' gave {len(verdicts)} verdicts for "
                               f"{len(batch)} records")
        for record, verdict in zip(batch, verdicts, strict=True):
            result.apply(self.name, record, verdict)
        return result


class FrameStage(Stage[FP]):
    """Works on the whole data set as a Dask dataframe of records.

    `run` gets a Dask dataframe with the record columns and returns one with two more,
    `_reason` (null for kept rows) and `_detail`; each output partition is one shard.
    """

    params_model = FrameParams

    def shard_count(self) -> int:
        return self.params.shards

    def run(self, frame: Any, shards: int) -> Any:
        raise NotImplementedError
