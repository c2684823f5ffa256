"""The selection half of the mix, on pandas or cuDF partitions: copies, budgets, duplicates.

`plan_copies` turns each record into its copies (a weight of 2.5 makes two or three) or
into one dropped row (a seed, a record a weight below 1 leaves out). With token budgets,
the copies are sorted by their budget order, `price` counts the tokens of each copy under
its template, and `apply_budgets` keeps the running total of each task, then each family,
within its budget. `finish` puts every copy of a record into one output shard.

Budget order sorts by copy number first, then by a hash of the id: every record's first
copy comes before any second copy, so the copies a budget keeps are always the first ones.
The copy number of a kept row can then be found again from the kept rows alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xxhash
from taskseed.curation.errors import TaskseedError
from taskseed.curation.formats import DEFINITIONS
from taskseed.curation.io.frames import hash_strings
from taskseed.curation.mix.params import MixParams
from taskseed.curation.mix.templates import TEMPLATES, Example
from taskseed.curation.mix.tokens import load_counter

MIX_OF = {name: fmt.mix for name, fmt in DEFINITIONS.items()}
DATASETS = tuple(sorted(set(MIX_OF.values())))
COPY_SHIFT = 55  # budget order: copy number above a 55-bit hash of the id
RENDER_COLUMNS = ["format", "question", "answer", "context", "choices", "reasoning",
                  "knowledge", "tests"]
TIE_COLUMNS = ["origin", "license", "commercial", "source", "lineage", "scores"]
HELPERS = ["_dataset", "_copy", "_pick", "_tie", "_tokens"]
SEED_DETAIL = "seeds are left out of the mix (include_seeds: false)"
DUPLICATE_DETAIL = "a record with the same id is already in the mix"


def is_cudf(part: Any) -> bool:
    return type(part).__module__.split(".")[0] == "cudf"


def host(part: Any) -> pd.DataFrame:
    """A pandas view of a partition (cuDF partitions are copied to host memory)."""
    return part.to_pandas() if is_cudf(part) else part


def column(part: Any, values: np.ndarray, dtype: str | None = None) -> Any:
    """A host array as a column of the partition's own backend, on its index."""
    if is_cudf(part):
        import cudf

        return cudf.Series(values, index=part.index)
    return pd.Series(values, index=part.index, dtype=dtype)


def key_hash(part: Any, salt: str, suffix: Any = None) -> np.ndarray:
    """xxhash64 of `salt + id (+ suffix)` per row as host uint64 (the same on both backends)."""
    text = salt + part["id"]
    if suffix is not None:
        text = text + ":" + suffix
    return np.asarray(hash_strings(text).to_numpy(), dtype=np.uint64)


def template_index(part: Any, seed: int, copies: np.ndarray, count: int) -> np.ndarray:
    """Which of `count` templates each copy gets: a per-record start, then the next ones."""
    start = key_hash(part, f"{seed}:template:") % np.uint64(count)
    return ((start + copies.astype(np.uint64)) % np.uint64(count)).astype(np.int64)


def render_texts(view: pd.DataFrame, templates: list[str], index: np.ndarray) -> list[str]:
    """The training text of each row under its template."""
    rows = zip(*(view[c].tolist() for c in RENDER_COLUMNS), strict=True)
    return [TEMPLATES[templates[t]](Example.of(dict(zip(RENDER_COLUMNS, row, strict=True))))
            for t, row in zip(index.tolist(), rows, strict=True)]


def unique_index(part: Any, partition_info: dict | None) -> Any:
    """Row labels unique over the whole frame (dataframe alignment needs them)."""
    number = (partition_info or {}).get("number", 0)
    part = part.reset_index(drop=True)
    part.index = part.index + (int(number) << 40)
    return part


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _tie(view: pd.DataFrame) -> np.ndarray:
    """A hash of each row's provenance: which of two rows with one id is kept."""
    rows = zip(*(view[c].tolist() for c in TIE_COLUMNS), strict=True)
    return np.array([xxhash.xxh64_intdigest(json.dumps(r, default=_plain, sort_keys=True)
                                            .encode("utf-8")) >> 1
                     for r in rows], dtype=np.int64)


def _weights(view: pd.DataFrame, params: MixParams) -> np.ndarray:
    tasks = view["task"].map(params.weights.tasks).astype("float64").fillna(1.0)
    families = view["family"].map(params.weights.families).astype("float64").fillna(1.0)
    return (tasks * families).to_numpy(dtype="float64")


def plan_copies(part: Any, params: MixParams, partition_info: dict | None = None) -> Any:
    """One row per copy of each record, or one dropped row; with dataset and budget keys."""
    view = host(part[["id", "task", "family", "format", "origin"]])
    weight = _weights(view, params)
    share = key_hash(part, f"{params.seed}:weight:") / float(2**64)
    whole = np.floor(weight)
    copies = (whole + (share < weight - whole)).astype(np.int64)
    reason = np.full(len(view), None, dtype=object)
    detail = np.full(len(view), None, dtype=object)
    out = np.flatnonzero(copies == 0)
    reason[out] = "down_weighted"
    detail[out] = [f"weight {w:g} (task '{t}', family '{f}')" for w, t, f in
                   zip(weight[out], view["task"].iloc[out], view["family"].iloc[out],
                       strict=True)]
    if not params.include_seeds:
        seeds = np.flatnonzero((view["origin"] == "seed").to_numpy(dtype=bool))
        reason[seeds], detail[seeds] = "seed", SEED_DETAIL
    rows = np.where(pd.isna(reason), copies, 1)
    at = np.repeat(np.arange(len(view)), rows)
    copy = np.arange(len(at)) - np.repeat(np.cumsum(rows) - rows, rows)
    order = key_hash(part, f"{params.seed}:pick:")[at] >> np.uint64(64 - COPY_SHIFT)
    pick = (copy.astype(np.int64) << COPY_SHIFT) | order.astype(np.int64)
    result = unique_index(part.iloc[at], partition_info)
    return result.assign(
        _dataset=column(result, view["format"].map(MIX_OF).to_numpy(dtype=object)[at], "object"),
        _copy=column(result, copy.astype(np.int64)),
        _pick=column(result, pick),
        _reason=column(result, reason[at], "object"),
        _detail=column(result, detail[at], "object"),
    )


def mark_duplicates(part: Any) -> Any:
    """Drop a second kept row of the same record and copy: of rows sharing an id, the one
    with the smallest provenance hash (`_tie`, 0 for a row without a twin) is kept."""
    twins = host(part[["id", "_copy"]]).duplicated(keep=False).to_numpy()
    tie = np.zeros(len(twins), dtype=np.int64)
    if twins.any():
        tie[twins] = _tie(host(part[TIE_COLUMNS])[twins])
    part = part.assign(_tie=column(part, tie))
    if not twins.any():
        return part
    kept = part[part["_reason"].isna()].sort_values(["id", "_copy", "_tie"])
    again = kept.duplicated(subset=["id", "_copy"]).reindex(part.index, fill_value=False)
    return part.assign(_reason=part["_reason"].mask(again, "duplicate"),
                       _detail=part["_detail"].mask(again, DUPLICATE_DETAIL))


def price(part: Any, params: MixParams) -> Any:
    """Drop duplicates, then count each kept copy's tokens under its template."""
    part = mark_duplicates(part)
    kept = host(part[["_reason"]])["_reason"].isna().to_numpy()
    index = template_index(part, params.seed, host(part[["_copy"]])["_copy"].to_numpy(),
                           len(params.templates))
    view = host(part[RENDER_COLUMNS])
    tokens = np.zeros(len(view), dtype=np.int64)
    if kept.any():
        texts = render_texts(view[kept], params.templates, index[kept])
        tokens[kept] = load_counter(params.tokenizer).count(texts)
    return part.assign(_tokens=column(part, tokens))


def _prefix(sums: list[pd.DataFrame]) -> list[pd.DataFrame]:
    out: list[pd.DataFrame] = []
    total = None
    for frame in sums:
        out.append(frame.iloc[:0] if total is None else total)
        total = frame if total is None else total.add(frame, fill_value=0)
    return out


def running_before(parts: list[Any], totals: Callable[..., pd.DataFrame], *args: Any) -> list:
    """For ordered partitions, the per-group `totals` of every partition before each one
    (delayed: a running sum across partitions without aligning the frame with itself)."""
    import dask

    sums = [dask.delayed(totals, pure=True)(p, *args) for p in parts]
    before = dask.delayed(_prefix, pure=True)(sums)
    return [before[i] for i in range(len(parts))]


def from_delayed(parts: list[Any], meta: Any) -> Any:
    """A frame of delayed partitions, list columns left as they are (no string conversion)."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(parts, meta=meta, verify_meta=False)


def _kept_tokens(part: Any, key: str) -> pd.DataFrame:
    kept = part[part["_reason"].isna()]
    return host(kept.groupby(key)[["_tokens"]].sum()).astype("int64")


def _over_budget(part: Any, before: pd.DataFrame, key: str, limits: dict[str, int]) -> Any:
    kept = part["_reason"].isna()
    spend = part["_tokens"].where(kept, 0)
    start = part[key].map(before["_tokens"].to_dict()).fillna(0)
    spent = spend.groupby(part[key]).cumsum() + start
    over = kept & (spent > part[key].map(limits).astype("float64").fillna(np.inf))
    detail = part[key].map({name: f"{key} '{name}' token budget {budget}"
                            for name, budget in limits.items()})
    return part.assign(_reason=part["_reason"].mask(over, "over_budget"),
                       _detail=part["_detail"].mask(over, detail))


def apply_budgets(ranked: Any, params: MixParams) -> Any:
    """Drop copies past each task's, then each family's budget, in the frame's order."""
    import dask

    parts = ranked.to_delayed()
    budgets = params.token_budgets
    for key, limits in (("task", budgets.tasks), ("family", budgets.families)):
        if limits:
            before = running_before(parts, _kept_tokens, key)
            parts = [dask.delayed(_over_budget, pure=True)(p, b, key, limits)
                     for p, b in zip(parts, before, strict=True)]
    return from_delayed(parts, ranked._meta)


def finish(part: Any) -> Any:
    """A shard of the stage: every copy of its records, in a fixed order, helpers dropped.

    A shuffle may bring `_reason` back as a string column with NA: kept rows get None again.
    """
    part = mark_duplicates(part).sort_values(["id", "_copy", "_tie"])
    part = part.drop(columns=[c for c in HELPERS if c in part.columns]).reset_index(drop=True)
    if is_cudf(part):
        return part
    return part.assign(**{c: part[c].astype(object).where(part[c].notna(), None)
                          for c in ("_reason", "_detail")})


def check_keys(frame: Any, params: MixParams) -> None:
    """A one-line error for a weight or budget key that names no task or family in the data."""
    groups = {
        "weights.tasks": ("task", params.weights.tasks),
        "weights.families": ("family", params.weights.families),
        "token_budgets.tasks": ("task", params.token_budgets.tasks),
        "token_budgets.families": ("family", params.token_budgets.families),
    }
    if not any(names for _, names in groups.values()):
        return
    present = host(frame[["task", "family"]].drop_duplicates().compute())
    for where, (kind, names) in groups.items():
        known = set(present[kind].tolist())
        missing = sorted(set(names) - known)
        if missing:
            raise TaskseedError(f"mix: {where}: no {kind} '{missing[0]}' in the data "
                                f"({kind}s: {', '.join(sorted(known)) or 'none'})")


def select(frame: Any, params: MixParams, shards: int) -> Any:
    """The stage's output frame: kept copies and dropped rows, `shards` partitions by id."""
    check_keys(frame, params)
    plan = frame.map_partitions(plan_copies, params, meta=plan_copies(frame._meta, params))
    budgets = params.token_budgets
    if budgets.tasks or budgets.families:
        ranked = plan.sort_values("_pick")
        priced = ranked.map_partitions(price, params, meta=price(ranked._meta, params))
        plan = apply_budgets(priced, params)
    shuffled = plan.shuffle(on="id", npartitions=shards)
    return shuffled.map_partitions(finish, meta=finish(shuffled._meta))
