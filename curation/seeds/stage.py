"""Seed stages: read training splits into raw rows, then normalize them into records."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError, TaskseedError
from taskseed.curation.record import RawRow, Record, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import TaskSpec
from taskseed.curation.stage import (
    BatchStage,
    BuildContext,
    NoParams,
    SourceStage,
    StageParams,
    StageResult,
)

_CURSOR_LOCK = threading.Lock()

class SeedParams(StageParams):
    max_per_task: int | None = Field(None, ge=0)
    rows_per_shard: int = Field(5000, ge=1)


def _specs_hash(specs: dict[str, TaskSpec]) -> str:
    blob = json.dumps({k: v.model_dump(mode="json") for k, v in sorted(specs.items())})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _Cursor:
    """Where a process is in one task's stream of training rows."""

    task: str
    rows: Iterator[tuple[str, int, Any]]
    position: int = 0


class SeedStage(SourceStage[SeedParams]):
    """Reads the training split of every task; held-out splits are never read here."""

    name = "seeds"
    params_model = SeedParams
    output_kind = RawRow

    def __init__(self, params: SeedParams, specs: dict[str, TaskSpec], seeds_root: Path) -> None:
        super().__init__(params)
        self.specs = specs
        self.seeds_root = seeds_root
        self._cursor: _Cursor | None = None

    @classmethod
    def build(cls, params: SeedParams, context: BuildContext) -> SeedStage:
        return cls(params, context.specs, context.seeds_root)

    def fingerprint(self) -> str:
        return super().fingerprint() + _specs_hash(self.specs)

    def _stream(self, spec: TaskSpec) -> Iterator[tuple[str, int, Any]]:
        assert spec.train is not None
        return islice(iter_split(spec.train, self.seeds_root), self.params.max_per_task)

    def _rows(self, spec: TaskSpec, start: int, stop: int) -> Iterator[tuple[str, int, Any]]:
        """Rows [start, stop) of the task's training split, streamed.

        A process keeps its place in the split: shards asked for in increasing order (as
        executors hand them out) read each file once, whatever the file's size.
        """
        cursor = self._cursor
        if cursor is None or cursor.task != spec.name or cursor.position > start:
            cursor = self._cursor = _Cursor(spec.name, self._stream(spec))
        try:
            for _ in islice(cursor.rows, start - cursor.position):
                cursor.position += 1
            for row in islice(cursor.rows, stop - start):
                cursor.position += 1
                yield row
        except BaseException:
            self._cursor = None  # a broken stream is never continued
            raise

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cursor": None}

    def plan(self) -> list[dict[str, Any]]:
        """Shards of `rows_per_shard` rows per task; the splits are counted, not kept. A row
        that repeats an earlier row of its task is marked, by its position, with the row it
        repeats; a training split without rows is a one-line error naming its files."""
        shards = []
        size = self.params.rows_per_shard
        for name, spec in sorted(self.specs.items()):
            if spec.train is None:
                continue
            total, repeats = self._count(spec)
            if not total and spec.train.files:
                files = ", ".join(str(self.seeds_root / f) for f in spec.train.files)
                raise TaskseedError(f"seeds: task '{name}': its training split ({files}) "
                                    "holds no rows")
            for start in range(0, total, size):
                stop = min(start + size, total)
                shard: dict[str, Any] = {"task": name, "start": start, "stop": stop}
                inside = {str(p): first for p, first in repeats.items() if start <= p < stop}
                if inside:
                    shard["repeats"] = inside
                shards.append(shard)
        return shards

    def _count(self, spec: TaskSpec) -> tuple[int, dict[int, str]]:
        """The split's row count, and the rows that repeat an earlier one (position: the
        earlier row's file and row)."""
        seen: dict[int, str] = {}
        repeats: dict[int, str] = {}
        total = 0
        for position, (path, index, row) in enumerate(self._stream(spec)):
            total += 1
            if isinstance(row, RowError):
                continue
            key = xxhash.xxh3_64_intdigest(
                json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            if key in seen:
                repeats[position] = seen[key]
            else:
                seen[key] = f"{self._relative(path)} row {index}"
        return total, repeats

    def read(self, shard: dict[str, Any]) -> StageResult:
        with _CURSOR_LOCK:  # shards that run in threads of one process share its cursor
            return self._read(shard)

    def _read(self, shard: dict[str, Any]) -> StageResult:
        spec = self.specs[shard["task"]]
        assert spec.train is not None
        result = StageResult()
        repeats = shard.get("repeats", {})
        rows = self._rows(spec, shard["start"], shard["stop"])
        for position, (path, index, row) in enumerate(rows, shard["start"]):
            source = Source(
                dataset=spec.source.dataset,
                config=spec.source.config,
                split=spec.train.split,
                row=index,
                path=self._relative(path),
            )
            if isinstance(row, RowError):
                raw = RawRow(spec.name, source, "")
                detail = f"{source.path} row {index}: {row}"
                result.drop(self.name, raw, row.reason, detail)
                continue
            payload = json.dumps(row, ensure_ascii=False, default=str)
            if str(position) in repeats:
                detail = f"{source.path} row {index}: repeats {repeats[str(position)]}"
                result.drop(self.name, RawRow(spec.name, source, payload), "duplicate_row",
                            detail)
                continue
            result.items.append(RawRow(spec.name, source, payload))
        result.counters[f"rows:{spec.name}"] = len(result.items)
        return result

    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).relative_to(self.seeds_root))
        except ValueError:
            return path


class NormalizeStage(BatchStage[NoParams]):
    """Normalizes raw rows into records with the task spec's mapping."""

    name = "normalize"
    input_kind = RawRow
    output_kind = Record

    def __init__(self, params: NoParams | None, specs: dict[str, TaskSpec]) -> None:
        super().__init__(params or NoParams())
        self.specs = specs

    @classmethod
    def build(cls, params: NoParams, context: BuildContext) -> NormalizeStage:
        return cls(params, context.specs)

    def fingerprint(self) -> str:
        return super().fingerprint() + _specs_hash(self.specs)

    def process(self, batch: list[RawRow], shard: int) -> StageResult:
        result = StageResult()
        for raw in batch:
            spec = self.specs[raw.task]
            assert spec.train is not None
            try:
                record = normalize_row(raw, spec, spec.train.mapping)
            except RowError as err:
                detail = f"{raw.source.path} row {raw.source.row}: {err}"
                result.drop(self.name, raw, err.reason, detail)
                continue
            result.items.append(record)
            result.counters[f"records:{raw.task}"] += 1
        return result
