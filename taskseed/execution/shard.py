"""Running shards: the per-process stage cache and the one way a shard is committed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from taskseed.curation.record import Record
from taskseed.curation.stage import DoneMarker, Stage, StageResult
from taskseed.generation.model_stage import ModelStage
from taskseed.rundir.layout import StageDir

_READY: dict[str, Stage] = {}
_READY_LOCK = threading.RLock()


def ready(stage: Stage) -> Stage:
    """The process-wide instance of a stage, set up once (a model loads once per worker).

    A stage whose model runs on GPUs in this process first releases any other such model
    loaded here: each TensorRT-LLM `LLM` sizes its KV cache to most of the free GPU memory,
    so two on one GPU fail (a fused shard task with an in-process teacher and judge loads
    them in turn, not together).
    """
    key = f"{type(stage).__name__}:{stage.fingerprint()}"
    with _READY_LOCK:  # shards of a worker run in threads and share the instance
        if key not in _READY:
            _make_room_for(stage)
            stage.setup()
            _READY[key] = stage
        return _READY[key]


def gpu_model(stage: Stage) -> str | None:
    """The identity of the model a stage loads on GPUs in this process (None: none)."""
    if not isinstance(stage, ModelStage) or stage.model_cfg.in_process_gpus() == 0:
        return None
    return json.dumps(stage.model_cfg.identity(), sort_keys=True)


def _make_room_for(stage: Stage) -> None:
    mine = gpu_model(stage)
    if mine is None:
        return
    others = [key for key, other in _READY.items() if gpu_model(other) not in (None, mine)]
    _teardown([_READY.pop(key) for key in others])


def release_all() -> None:
    """Tear down every stage set up in this process (closes models and HTTP sessions)."""
    stages = list(_READY.values())
    _READY.clear()
    _teardown(stages)


def _teardown(stages: list[Stage]) -> None:
    """Tear `stages` down in a thread of its own: callers such as a Dask worker's event loop
    must not host the teardown of a backend that drives its own event loop."""
    if not stages:
        return

    def teardown() -> None:
        for stage in stages:
            stage.teardown()

    thread = threading.Thread(target=teardown, name="taskseed-teardown")
    thread.start()
    thread.join()


def commit(
    out: StageDir, shard: int, result: StageResult, kind: type, inputs: int, seconds: float
) -> DoneMarker:
    """Write one shard's items, rejects and done marker; returns the marker."""
    marker = DoneMarker(
        inputs=inputs, outputs=len(result.items),
        rejects=dict(Counter(r.reason for r in result.rejects)),
        counters=dict(result.counters), seconds=seconds,
        # requests a model could not answer usably, for failures.jsonl
        failures=[f.to_dict() for f in result.failures] or None)
    out.write_shard(shard, result.items, kind, result.rejects, marker)
    return marker


def marked_result(stage_name: str, part: Any) -> tuple[StageResult, int]:
    """A frame stage's marked partition as kept records and rejects, and its row count."""
    import pandas as pd

    from taskseed.curation.io.arrow import from_table
    from taskseed.curation.io.frames import to_arrow_records

    records = from_table(to_arrow_records(part.drop(columns=["_reason", "_detail"])), Record)
    result = StageResult()
    for record, reason, detail in zip(
        records, _column(part, "_reason"), _column(part, "_detail"), strict=True
    ):
        if reason is None or reason != reason or reason is pd.NA:  # null: kept
            result.items.append(record)
        else:
            result.drop(stage_name, record, str(reason), str(detail or ""))
    return result, len(records)


def _column(part: Any, name: str) -> list:
    column = part[name]
    if hasattr(column, "to_pandas"):  # cuDF
        column = column.to_pandas()
    return column.tolist()
