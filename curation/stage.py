"""Stages: units of work over batches of typed items.

Three shapes cover the pipeline:

- `SourceStage` plans input shards and reads each one (seeds);
- `BatchStage` maps one input shard to one output shard (normalize, generate, filters);
- `FrameStage` needs the whole data set at once (dedup, mixing) and works on a Dask
  dataframe, whose backend is pandas on CPU and cuDF on GPU.

Stages know nothing about scale: executors decide where and how many shards run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import xxhash

from curation.record import Record, Reject


@dataclass
class StageResult:
    """What a stage made of one batch: kept items, rejects with reasons, and counters."""

    items: list[Any] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)


class Stage:
    """Base of every stage. `params` are the stage's validated config (a pydantic model)."""

    name: ClassVar[str]
    input_kind: ClassVar[type | None] = Record
    output_kind: ClassVar[type] = Record

    def __init__(self, params: Any = None) -> None:
        self.params = params

    def fingerprint(self) -> str:
        """Hash of the stage's name and parameters: a changed config is a different stage."""
        data = self.params.model_dump(mode="json") if self.params is not None else {}
        blob = json.dumps([self.name, data], sort_keys=True).encode()
        return xxhash.xxh3_64_hexdigest(blob)

    def setup(self) -> None:
        """Acquire per-process resources (models, clients) once before processing."""

    def teardown(self) -> None:
        """Release what setup acquired."""


class SourceStage(Stage):
    """A stage with no input stage: it plans its shards, then reads each one."""

    input_kind = None

    def plan(self) -> list[Any]:
        """JSON-serializable descriptions of the shards to read."""
        raise NotImplementedError

    def read(self, shard: Any) -> StageResult:
        raise NotImplementedError


class BatchStage(Stage):
    """Maps a batch (one shard) of input items to output items and rejects."""

    def process(self, batch: list[Any], shard: int) -> StageResult:
        raise NotImplementedError

    def finalize(self, stage_dir: Any) -> None:
        """Called once after every shard of the stage is done (e.g. to write a manifest)."""


class FrameStage(Stage):
    """Works on the whole data set as a Dask dataframe of records.

    `run` gets a Dask dataframe with the record columns and returns one with two more,
    `_reason` (null for kept rows) and `_detail`; each output partition is one shard.
    """

    def run(self, frame: Any, shards: int) -> Any:
        raise NotImplementedError
