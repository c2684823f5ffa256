"""Running one shard of one stage: the unit of work every executor schedules."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from curation.record import Record, Reject
from curation.rundir import StageDir
from curation.stage import BatchStage, FrameStage, SourceStage, Stage, StageResult

_READY: dict[str, Stage] = {}


def ready(stage: Stage) -> Stage:
    """The process-wide instance of a stage, set up once (a model loads once per worker)."""
    key = f"{type(stage).__name__}:{stage.fingerprint()}"
    if key not in _READY:
        stage.setup()
        _READY[key] = stage
    return _READY[key]


def release_all() -> None:
    """Tear down every stage set up in this process (closes models and HTTP sessions).

    Runs in a thread of its own: callers such as a Dask worker's event loop must not
    host the teardown of a backend that drives its own event loop.
    """

    def teardown() -> None:
        while _READY:
            _, stage = _READY.popitem()
            stage.teardown()

    thread = threading.Thread(target=teardown, name="taskseed-teardown")
    thread.start()
    thread.join()


def marker(result: StageResult, inputs: int, seconds: float) -> dict[str, Any]:
    reasons = Counter(r.reason for r in result.rejects)
    return {
        "inputs": inputs,
        "outputs": len(result.items),
        "rejects": dict(sorted(reasons.items())),
        "counters": dict(sorted(result.counters.items())),
        "seconds": round(seconds, 3),
    }


def run_source_shard(stage: SourceStage, out: StageDir, shard: int, spec: Any) -> dict:
    """Read one planned source shard and commit it."""
    start = time.perf_counter()
    result = ready(stage).read(spec)  # type: ignore[attr-defined]
    info = marker(result, len(result.items) + len(result.rejects), time.perf_counter() - start)
    out.write_shard(shard, result.items, stage.output_kind, result.rejects, info)
    return info


def run_batch_shard(stage: BatchStage, src: StageDir, out: StageDir, shard: int) -> dict:
    """Process one input shard into one output shard and commit it."""
    start = time.perf_counter()
    batch = src.read_shard(shard, stage.input_kind)  # type: ignore[arg-type]
    result = ready(stage).process(batch, shard)  # type: ignore[attr-defined]
    info = marker(result, len(batch), time.perf_counter() - start)
    out.write_shard(shard, result.items, stage.output_kind, result.rejects, info)
    return info


def split_marked(
    stage_name: str, records: list[Record], reasons: list, details: list
) -> StageResult:
    """Split a frame stage's marked rows into kept records and rejects."""
    result = StageResult()
    for record, reason, detail in zip(records, reasons, details, strict=True):
        if reason is None or reason != reason:  # None or NaN: kept
            result.items.append(record)
        else:
            result.rejects.append(Reject.of(stage_name, str(reason), str(detail or ""), record))
    return result


def write_frame_shard(part: Any, stage_name: str, out: StageDir, shard: int) -> dict:
    """Commit one partition of a frame stage's marked output as a shard."""
    from curation.arrow import from_table
    from curation.frames import to_arrow_records

    start = time.perf_counter()
    records = from_table(to_arrow_records(part.drop(columns=["_reason", "_detail"])), Record)
    reasons = _column(part, "_reason")
    details = _column(part, "_detail")
    result = split_marked(stage_name, records, reasons, details)
    info = marker(result, len(records), time.perf_counter() - start)
    out.write_shard(shard, result.items, Record, result.rejects, info)
    return info


def _column(part: Any, name: str) -> list:
    column = part[name]
    if hasattr(column, "to_pandas"):  # cuDF
        column = column.to_pandas()
    return column.tolist()


def frame_shard_tasks(stage: FrameStage, src: StageDir, out: StageDir) -> tuple[list[int], list]:
    """The pending output shards of a frame stage and a delayed write for each."""
    import dask

    from curation.errors import TaskseedError
    from curation.frames import read_records

    shards = stage.params.shards
    pending = [i for i in range(shards) if not out.is_done(i)]
    if not pending:
        return [], []
    files = [src.shard_path(i) for i in src.done_shards()]
    if not files:
        raise TaskseedError(f"stage '{stage.name}' has no input shards in {src.path}")
    parts = stage.run(read_records(files), shards).to_delayed()
    return pending, [dask.delayed(write_frame_shard)(parts[i], stage.name, out, i)
                     for i in pending]
