"""The layout half of the mix: global shuffle, fixed-size output files, JSONL and Parquet.

The kept rows of the stage's shards hold every copy of a record in one shard, so a copy's
number is its rank among its record's rows. Each copy gets a position in a shuffle by hash
(`seed`), each dataset is cut into files by a running count of records or tokens in that
order, and each file is written once, by the task that holds all its rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from taskseed.curation.io.arrow import LINEAGE_TYPE, SCORES_TYPE, SOURCE_TYPE
from taskseed.curation.mix.params import MixParams
from taskseed.curation.mix.plan import (
    MIX_OF,
    RENDER_COLUMNS,
    column,
    from_delayed,
    host,
    key_hash,
    render_texts,
    running_before,
    template_index,
    unique_index,
)
from taskseed.curation.mix.tokens import load_counter

OUTPUT_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("id", pa.string()),
        ("dataset", pa.string()),
        ("task", pa.string()),
        ("family", pa.string()),
        ("format", pa.string()),
        ("license", pa.string()),
        ("commercial", pa.bool_()),
        ("source", SOURCE_TYPE),
        ("lineage", LINEAGE_TYPE),
        ("scores", SCORES_TYPE),
        ("template", pa.string()),
        ("tokens", pa.int64()),
    ]
)
RENAMED = {"_text": "text", "_dataset": "dataset", "_template": "template", "_tokens": "tokens"}
BREAKDOWN = {"tasks": "task", "families": "family", "licenses": "license"}


def layout_keys(part: Any, params: MixParams, partition_info: dict | None = None) -> Any:
    """Copy number, dataset and shuffle position of each kept row."""
    view = host(part[["id", "format"]])
    copy = view.groupby("id", sort=False).cumcount().to_numpy(dtype=np.int64)
    out = unique_index(part, partition_info)
    suffix = column(out, copy.astype(str).astype(object), "object")
    order = key_hash(out, f"{params.seed}:order:", suffix) >> np.uint64(1)
    return out.assign(
        _copy=column(out, copy),
        _dataset=column(out, view["format"].map(MIX_OF).to_numpy(dtype=object), "object"),
        _order=column(out, order.astype(np.int64)),
    )


def render_rows(part: Any, params: MixParams) -> Any:
    """Each copy's template, training text and token count."""
    copy = host(part[["_copy"]])["_copy"].to_numpy()
    index = template_index(part, params.seed, copy, len(params.templates))
    texts = render_texts(host(part[RENDER_COLUMNS]), params.templates, index)
    tokens = np.asarray(load_counter(params.tokenizer).count(texts), dtype=np.int64)
    names = np.array([params.templates[i] for i in index.tolist()], dtype=object)
    return part.assign(_template=column(part, names, "object"),
                       _text=column(part, np.array(texts, dtype=object), "object"),
                       _tokens=column(part, tokens))


RUNNING = ["_one", "_tokens", "_cone", "_ctok"]


def _counted(part: Any) -> Any:
    flag = part["commercial"].astype("int64")
    return part.assign(_one=1, _cone=flag, _ctok=part["_tokens"] * flag)


def _dataset_totals(part: Any) -> pd.DataFrame:
    return host(_counted(part).groupby("_dataset")[RUNNING].sum()).astype("int64")


def _cut(part: Any, before: pd.DataFrame, shard_records: int | None,
         shard_tokens: int | None) -> Any:
    counted = _counted(part)
    start = {c: counted["_dataset"].map(before[c].to_dict()).fillna(0).astype("int64")
             for c in RUNNING}
    run = {c: counted.groupby("_dataset")[c].cumsum() + start[c] for c in RUNNING}
    if shard_records is not None:
        full = (run["_one"] - 1) // shard_records
        commercial = (run["_cone"] - 1) // shard_records
    else:
        full = (run["_tokens"] - counted["_tokens"]) // shard_tokens
        commercial = (run["_ctok"] - counted["_ctok"]) // shard_tokens
    return part.assign(_file=full, _cfile=commercial)


def assign_files(ordered: Any, params: MixParams) -> Any:
    """The output file of each row in the full set (`_file`) and the commercial one (`_cfile`):
    a running count of records or tokens per dataset, in shuffle order."""
    import dask

    parts = ordered.to_delayed()
    before = running_before(parts, _dataset_totals)
    cut = dask.delayed(_cut, pure=True)
    laid = [cut(p, b, params.shard_records, params.shard_tokens)
            for p, b in zip(parts, before, strict=True)]
    meta = _cut(ordered._meta, _dataset_totals(ordered._meta), params.shard_records,
                params.shard_tokens)
    return from_delayed(laid, meta)


def output_table(rows: Any) -> pa.Table:
    """The rows of one file as the output schema (text first, then metadata)."""
    frame = rows.rename(columns=RENAMED)[OUTPUT_SCHEMA.names]
    table = pa.Table.from_pandas(frame, schema=OUTPUT_SCHEMA, preserve_index=False)
    return table.replace_schema_metadata(None)


def jsonl_bytes(table: pa.Table) -> bytes:
    """One JSON object per row; scores as a name -> value mapping."""
    lines = []
    for row in table.to_pylist():
        row["scores"] = {s["name"]: s["value"] for s in row["scores"] or []}
        lines.append(orjson.dumps(row))
    return b"\n".join(lines) + b"\n"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _breakdown(rows: Any) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for name, key in BREAKDOWN.items():
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for value, tokens in zip(rows[key].tolist(), rows["_tokens"].tolist(), strict=True):
            counts[value][0] += 1
            counts[value][1] += int(tokens)
        out[name] = dict(counts)
    return out


def write_files(part: Any, staging: str, subset: str, file_column: str) -> list[dict[str, Any]]:
    """Write every file whose rows this partition holds; one entry per file."""
    view = host(part)
    entries = []
    for (dataset, number), rows in view.groupby(["_dataset", file_column], sort=True):
        rows = rows.sort_values("_order")
        table = output_table(rows)
        folder = Path(staging) / subset / str(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"set": subset, "dataset": str(dataset), "number": int(number),
                                 "records": len(rows), "tokens": int(rows["_tokens"].sum())}
        for kind, data in (("jsonl", jsonl_bytes(table)), ("parquet", parquet_bytes(table))):
            path = folder / f"{int(number):012d}.{kind}"
            path.write_bytes(data)
            entry[kind] = {"staged": str(path), "sha256": hashlib.sha256(data).hexdigest()}
        entry.update(_breakdown(rows))
        entries.append(entry)
    return entries


def write_mix(frame: Any, params: MixParams, staging: Path) -> list[dict[str, Any]]:
    """Shuffle the kept rows, cut them into files and write the files under `staging`."""
    import dask

    keyed = frame.map_partitions(layout_keys, params, meta=layout_keys(frame._meta, params))
    ordered = keyed.sort_values("_order")
    rendered = ordered.map_partitions(render_rows, params,
                                      meta=render_rows(ordered._meta, params))
    laid = assign_files(rendered, params)
    sets = [("full", laid, "_file")]
    if params.commercial_subset:
        sets.append(("commercial", laid[laid["commercial"]], "_cfile"))
    write = dask.delayed(write_files, pure=True)
    tasks = [write(part, str(staging), name, key)
             for name, rows, key in sets
             for part in rows.shuffle(on=["_dataset", key],
                                      npartitions=laid.npartitions).to_delayed()]
    return [entry for entries in dask.compute(*tasks) for entry in entries]


def totals(entries: list[dict[str, Any]], datasets: tuple[str, ...]) -> dict[str, Any]:
    """Records and tokens of one set: in all, per dataset, task, family and license."""
    out: dict[str, Any] = {"records": 0, "tokens": 0}
    groups: dict[str, dict[str, Counter[str]]] = {
        "datasets": {d: Counter(records=0, tokens=0) for d in datasets},
        **{name: {} for name in BREAKDOWN},
    }
    for entry in entries:
        out["records"] += entry["records"]
        out["tokens"] += entry["tokens"]
        groups["datasets"][entry["dataset"]].update(records=entry["records"],
                                                    tokens=entry["tokens"])
        for name in BREAKDOWN:
            for key, (records, tokens) in entry[name].items():
                groups[name].setdefault(key, Counter()).update(records=records, tokens=tokens)
    for name, group in groups.items():
        out[name] = {k: {"records": c["records"], "tokens": c["tokens"]}
                     for k, c in sorted(group.items())}
    return out
