"""Arrow schemas and conversion: the only place records become columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from taskseed.curation.record import RawRow, Record, Reject

SOURCE_TYPE = pa.struct(
    [
        ("dataset", pa.string()),
        ("config", pa.string()),
        ("split", pa.string()),
        ("row", pa.int64()),
        ("path", pa.string()),
    ]
)
SAMPLING_TYPE = pa.struct(
    [
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("max_tokens", pa.int64()),
        ("seed", pa.int64()),
    ]
)
MODEL_TEXT_TYPE = pa.struct(
    [("stage", pa.string()), ("model", pa.string()), ("license", pa.string())]
)
LINEAGE_TYPE = pa.struct(
    [
        ("seed_ids", pa.list_(pa.string())),
        ("teacher_model", pa.string()),
        ("prompt_template", pa.string()),
        ("prompt_hash", pa.string()),
        ("sampling", SAMPLING_TYPE),
        ("stage", pa.string()),
        ("models", pa.list_(MODEL_TEXT_TYPE)),
    ]
)
# Scores as a list of (name, value) pairs: `datasets`, pandas and cuDF all read it (no map type).
SCORES_TYPE = pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())]))
RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("family", pa.string()),
        ("format", pa.string()),
        ("origin", pa.string()),
        ("context", pa.string()),
        ("question", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("answer_label", pa.string()),
        ("reasoning", pa.string()),
        ("knowledge", pa.string()),
        ("tests", pa.list_(pa.string())),
        ("source", SOURCE_TYPE),
        ("license", pa.string()),
        ("commercial", pa.bool_()),
        ("lineage", LINEAGE_TYPE),
        ("scores", SCORES_TYPE),
    ]
)
RAW_SCHEMA = pa.schema([("task", pa.string()), ("source", SOURCE_TYPE), ("payload", pa.string())])
REJECT_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("item_id", pa.string()),
        ("item", pa.string()),
    ]
)

_KINDS: dict[type, pa.Schema] = {Record: RECORD_SCHEMA, RawRow: RAW_SCHEMA, Reject: REJECT_SCHEMA}


def to_table(items: list[Any], kind: type) -> pa.Table:
    """Convert typed items to an Arrow table of the kind's schema."""
    rows = [item.to_dict() for item in items]
    if kind is Record:
        for row in rows:
            row["scores"] = [{"name": k, "value": v} for k, v in row["scores"].items()]
    return pa.Table.from_pylist(rows, schema=_KINDS[kind])


def from_table(table: pa.Table, kind: type) -> list[Any]:
    """Convert an Arrow table back to typed items."""
    rows = table.to_pylist()
    if kind is Record:
        for row in rows:
            row["scores"] = {s["name"]: s["value"] for s in row["scores"] or []}
    return [kind.from_dict(row) for row in rows]


def write_parquet(path: Path, items: list[Any], kind: type) -> None:
    """Write items atomically: a torn file never has the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    table = to_table(items, kind)
    if table.num_rows:
        pq.write_table(table, tmp)
    else:  # no row group at all: readers such as `datasets` refuse an empty one
        pq.ParquetWriter(tmp, table.schema).close()
    tmp.replace(path)


def read_parquet(path: Path, kind: type) -> list[Any]:
    return from_table(pq.read_table(path, schema=_KINDS[kind]), kind)
