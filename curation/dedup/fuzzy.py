"""Fuzzy deduplication: MinHash + LSH candidates, verified on true n-gram Jaccard.

The text of a record is its normalized context, question, choices and answer. Records that
share an LSH bucket (within a task unless `across_tasks`) are candidate pairs; a pair is a
near-duplicate when the Jaccard similarity of the n-gram sets of the whole text, and of the
text without the context, both reach `threshold` (so questions about one shared passage
stay apart). Near-duplicates form clusters (connected components); each keeps one record:
a seed always wins, otherwise the record with the smallest id. The others are dropped as
`near_duplicate`, or as `near_copy_of_seed` when a generated record's cluster holds a seed
of its own task. With `against_seeds`, the run's normalized seeds join the clustering
without ever being output, so generated near-copies of seeds are caught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from taskseed.curation.dedup.minhash import (
    MinHashSpec,
    band_keys,
    is_cudf,
    jaccard,
    jaccard_pairs,
    ngram_set,
    signatures,
)
from taskseed.curation.io.frames import hash_strings, normalized_text, read_records
from taskseed.curation.stage import BuildContext, FrameParams, FrameStage

SEED_NODE = "\x1fseed"  # suffix of the node of a seed that joins only for comparison
NEAR_DUPLICATE = "near_duplicate"
NEAR_COPY_OF_SEED = "near_copy_of_seed"


class FuzzyDedupParams(FrameParams):
    """MinHash over `ngram` characters (words with `words`), LSH with `bands` x `rows`
    of the `num_perm` permutations, pairs verified at Jaccard >= `threshold`."""

    ngram: int = Field(5, ge=2)
    words: bool = False
    num_perm: int = Field(80, ge=1, le=1024)
    bands: int = Field(20, ge=1)
    rows: int = Field(4, ge=1)
    threshold: float = Field(0.7, gt=0.0, le=1.0)
    bits: Literal[32, 64] = 32
    seed: int = Field(0, ge=0, lt=2**32)
    across_tasks: bool = False  # compare records of different tasks too
    against_seeds: bool = True  # cluster with the run's seeds (never output)
    window: int = Field(64, ge=1)  # comparisons per record and bucket in huge buckets

    @model_validator(mode="after")
    def _consistent(self) -> FuzzyDedupParams:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm "
                             f"({self.num_perm})")
        if self.words and self.ngram < 3:
            raise ValueError("word n-grams need ngram >= 3")
        return self

    def spec(self) -> MinHashSpec:
        return MinHashSpec(num_perm=self.num_perm, ngram=self.ngram, words=self.words,
                           bits=self.bits, seed=self.seed)


def record_texts(part: Any) -> tuple[Any, Any]:
    """Normalized text of each row: context + question + choices + answer, and the same
    without the context (normalizing parts and joining them with a space is the same as
    normalizing the joined text)."""
    side = part["question"].fillna("")
    for field in (part["choices"].str.join(" ").fillna(""), part["answer"].fillna("")):
        side = side + " " + field
    side = normalized_text(side)
    context = normalized_text(part["context"])
    joined = (context + " " + side).where(side != "", context)
    return joined.where(context != "", side), side


def record_text(part: Any, context: bool = True) -> Any:
    """The whole normalized text of each row, or its question side without `context`."""
    return record_texts(part)[0 if context else 1]


def node_table(part: Any, params: FuzzyDedupParams, extra: bool) -> Any:
    """One row per record with text: node name, task, seed flags, both texts and the
    LSH band keys `_b0`..; `extra` marks seeds that join only for comparison."""
    text, side = record_texts(part)
    has_text = text != ""
    part, text, side = part[has_text], text[has_text], side[has_text]
    salt = None if params.across_tasks else hash_strings(part["task"]).values
    keys = band_keys(signatures(text, params.spec()), params.bands, params.rows, salt)
    out = part[["id", "task"]].rename(columns={"id": "_node"})
    if extra:
        out["_node"] = out["_node"] + SEED_NODE
    out = out.assign(_seed=part["origin"] == "seed", _extra=extra, _text=text, _qtext=side)
    return out.assign(**{f"_b{j}": keys[:, j] for j in range(params.bands)})


def bucket_rows(nodes: Any, bands: int) -> Any:
    """The nodes in long form: one (`_bucket`, `_node`, `_extra`) row per band."""
    parts = [nodes[[f"_b{j}", "_node", "_extra"]].rename(columns={f"_b{j}": "_bucket"})
             for j in range(bands)]
    return _concat(parts)


def bucket_pairs(part: Any, window: int) -> Any:
    """Pairs (a < b) of nodes sharing a bucket: all pairs in buckets of up to `window` + 1
    nodes, each node with its next `window` in node order beyond. Pairs of two
    comparison-only seeds are left out."""
    part = part[part["_bucket"].duplicated(keep=False)]
    part = part.sort_values(["_bucket", "_node"]).reset_index(drop=True)
    keys, extra = part["_bucket"].values, part["_extra"].values
    xp = _array_module(keys)
    frames = []
    for d in range(1, window + 1):
        left = xp.flatnonzero((keys[:-d] == keys[d:]) & ~(extra[:-d] & extra[d:]))
        if len(left) == 0:
            if not bool((keys[:-d] == keys[d:]).any()):
                break
            continue
        a = part["_node"].iloc[left].reset_index(drop=True)
        b = part["_node"].iloc[left + d].reset_index(drop=True)
        frames.append(a.to_frame("a").assign(b=b))
    if not frames:
        return _empty_like(part, {"a": "_node", "b": "_node"})
    pairs = _concat(frames)
    return pairs[pairs["a"] != pairs["b"]]


def verify_pairs(frame: pd.DataFrame, params: FuzzyDedupParams) -> pd.DataFrame:
    """Candidate pairs whose question-side and whole-text Jaccard both reach the
    threshold, with the whole-text Jaccard as `_jaccard`. The short question side is
    checked first: pairs that only share a passage stop there."""
    n, words, t = params.ngram, params.words, params.threshold
    side = jaccard_pairs(frame["_qtext_a"].tolist(), frame["_qtext_b"].tolist(), n, words, t)
    frame = frame[side >= t]
    score = jaccard_pairs(frame["_text_a"].tolist(), frame["_text_b"].tolist(), n, words, t)
    return frame.assign(_jaccard=score)[score >= t]


def cluster_drops(edges: pd.DataFrame, params: FuzzyDedupParams) -> pd.DataFrame:
    """From verified edges (with both ends' attributes), the dropped input records:
    `id`, `_reason`, `_detail`. Deterministic: nodes are numbered in sorted order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    columns = ["_node", "task", "_seed", "_extra", "_text"]
    ends = [edges[[f"{c}_{side}" for c in columns]].set_axis(columns, axis=1)
            for side in ("a", "b")]
    nodes = pd.concat(ends).drop_duplicates("_node").sort_values("_node", ignore_index=True)
    if nodes.empty:
        return _drops([], [], [])
    index = pd.Series(np.arange(len(nodes)), index=nodes["_node"].to_numpy())
    a = index[edges["_node_a"].to_numpy()].to_numpy()
    b = index[edges["_node_b"].to_numpy()].to_numpy()
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(nodes), len(nodes)))
    nodes["_label"] = connected_components(graph, directed=False)[1]
    nodes["_id"] = nodes["_node"].str.removesuffix(SEED_NODE)
    nodes["_rank_seed"] = ~nodes["_seed"].astype(bool)
    nodes = nodes.sort_values(["_label", "_rank_seed", "_extra", "_id"], ignore_index=True)
    heads = nodes.groupby("_label").head(1)
    first = dict(zip(heads["_label"], heads.index, strict=True))
    seeds = nodes[nodes["_seed"].astype(bool)].groupby(["_label", "task"]).head(1)
    seed_of = dict(zip(zip(seeds["_label"], seeds["task"], strict=True), seeds.index,
                       strict=True))
    grams: dict[int, set[str]] = {}

    def score(i: int, j: int) -> float:
        for k in (i, j):
            if k not in grams:
                grams[k] = ngram_set(nodes.at[k, "_text"], params.ngram, params.words)
        return jaccard(grams[i], grams[j])

    ids, reasons, details = [], [], []
    for i, (node, label, task, is_seed, extra) in enumerate(zip(
            nodes["_node"], nodes["_label"], nodes["task"], nodes["_seed"], nodes["_extra"],
            strict=True)):
        if extra or first[label] == i:
            continue
        copy_of = None if is_seed else seed_of.get((label, task))
        ref = first[label] if copy_of is None else copy_of
        kind = "near-duplicate of" if copy_of is None else "near-copy of seed"
        ids.append(node)
        reasons.append(NEAR_DUPLICATE if copy_of is None else NEAR_COPY_OF_SEED)
        details.append(f"{kind} {nodes.at[ref, '_id']} (jaccard {score(i, ref):.3f})")
    return _drops(ids, reasons, details)


def _drops(ids: list[str], reasons: list[str], details: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(ids, dtype=object),
                         "_reason": pd.Series(reasons, dtype=object),
                         "_detail": pd.Series(details, dtype=object)})


def finish_shard(part: Any, columns: list[str]) -> Any:
    """One output shard: rows sorted by id; repeated ids past the first are duplicates."""
    order = {} if is_cudf(part) else {"kind": "stable"}
    part = part.reset_index(drop=True).sort_values("id", **order).reset_index(drop=True)
    repeat = part["id"].duplicated() & part["_reason"].isna()
    if bool(repeat.any()):
        detail = "near-duplicate of " + part["id"] + " (jaccard 1.000)"
        part["_reason"] = part["_reason"].where(~repeat, NEAR_DUPLICATE)
        part["_detail"] = part["_detail"].where(~repeat, detail)
    if not is_cudf(part):  # kept rows carry None, whatever dtype the merge gave
        for name in ("_reason", "_detail"):
            column = part[name].astype(object)
            part[name] = column.where(column.notna(), None)
    return part[columns]


class FuzzyDedupStage(FrameStage[FuzzyDedupParams]):
    """Drops near-duplicate records (MinHash + LSH, verified Jaccard) and, against the
    run's seeds, generated near-copies of seeds."""

    name = "fuzzy_dedup"
    params_model = FuzzyDedupParams

    def __init__(self, params: FuzzyDedupParams, seeds: Any = None) -> None:
        super().__init__(params)
        self.seeds = seeds  # has `files() -> list[Path]`: the run's normalized seed shards

    @classmethod
    def build(cls, params: FuzzyDedupParams, context: BuildContext) -> FuzzyDedupStage:
        return cls(params, context.seeds)

    def seed_files(self) -> list[Path]:
        if not self.params.against_seeds or self.seeds is None:
            return []
        return list(self.seeds.files())

    def run(self, frame: Any, shards: int) -> Any:
        edges = self.verified_edges(frame)
        drops = cluster_drops(edges, self.params)
        return self.mark(frame, drops, shards)

    def verified_edges(self, frame: Any) -> pd.DataFrame:
        """Near-duplicate edges with both ends' attributes, as one small pandas frame.

        Signatures and band keys are made per partition and kept (persisted); buckets are
        shuffled by key and turned into candidate pairs; only the texts of candidate
        records are gathered, and the pairs are verified in parallel chunks.
        """
        import dask
        import dask.dataframe as dd

        params = self.params
        nodes = frame.map_partitions(node_table, params, False, meta=_node_meta(frame, params))
        files = self.seed_files()
        if files:
            seeds = read_records(files)
            extra = seeds.map_partitions(node_table, params, True,
                                         meta=_node_meta(seeds, params))
            nodes = dd.concat([nodes, extra])
        nodes = nodes.persist()
        buckets = nodes.map_partitions(bucket_rows, params.bands,
                                       meta=_bucket_meta(nodes._meta))
        pairs_meta = _empty_like(nodes._meta, {"a": "_node", "b": "_node"})
        pairs = buckets.shuffle(on="_bucket", npartitions=nodes.npartitions).map_partitions(
            bucket_pairs, params.window, meta=pairs_meta)
        pairs = _pandas(pairs.compute()).drop_duplicates(ignore_index=True)
        columns = ["_node", "task", "_seed", "_extra", "_text", "_qtext"]
        needed = pd.unique(pd.concat([pairs["a"], pairs["b"]])).tolist()
        texts = nodes[columns].map_partitions(_select, dask.delayed(needed),
                                              meta=nodes._meta[columns])
        texts = _pandas(texts.compute()) if needed else _pandas(nodes._meta[columns])
        cand = pairs.merge(_suffixed(texts, "a"), left_on="a", right_on="_node_a")
        cand = cand.merge(_suffixed(texts, "b"), left_on="b", right_on="_node_b")
        cand = cand.drop(columns=["a", "b"])
        step = max(5000, -(-len(cand) // max(1, nodes.npartitions)))
        chunks = [cand.iloc[i: i + step] for i in range(0, len(cand), step)]
        verified = dask.compute(*[dask.delayed(verify_pairs)(c, params) for c in chunks])
        edges = pd.concat([cand.iloc[:0].assign(_jaccard=np.zeros(0)), *verified])
        return edges.sort_values(["_node_a", "_node_b"], ignore_index=True)

    def mark(self, frame: Any, drops: pd.DataFrame, shards: int) -> Any:
        """The input rows with `_reason`/`_detail`, in `shards` partitions by id hash."""
        import dask

        columns = [*frame.columns, "_reason", "_detail"]
        empty = frame._meta["id"].iloc[:0] if is_cudf(frame._meta) else pd.Series(dtype=object)
        meta = frame._meta.assign(_reason=empty, _detail=empty)
        marked = frame.map_partitions(_mark_rows, dask.delayed(drops), shards,
                                      meta=_part_meta(meta))
        spread = marked.set_index("_part", divisions=[*range(shards), shards - 1])
        return spread.map_partitions(finish_shard, columns, meta=meta[columns])


def _mark_rows(part: Any, drops: pd.DataFrame, shards: int) -> Any:
    """Reason and detail of each row (None when kept) and its output shard."""
    reason = dict(zip(drops["id"], drops["_reason"], strict=True))
    detail = dict(zip(drops["id"], drops["_detail"], strict=True))
    ids = part["id"].to_pandas() if is_cudf(part) else part["id"]
    marks = {"_reason": [reason.get(i) for i in ids], "_detail": [detail.get(i) for i in ids]}
    if is_cudf(part):
        import cudf

        columns = {k: cudf.Series(v, dtype="str", index=part.index) for k, v in marks.items()}
    else:
        columns = {k: pd.Series(v, dtype=object, index=part.index) for k, v in marks.items()}
    return _with_part(part.assign(**columns), shards)


def _select(part: Any, needed: list[str]) -> Any:
    return part[part["_node"].isin(needed)]


def _pandas(frame: Any) -> pd.DataFrame:
    return frame.to_pandas() if is_cudf(frame) else frame


def _with_part(part: Any, shards: int) -> Any:
    return part.assign(_part=(hash_strings(part["id"]) % shards).astype("int64"))


def _part_meta(meta: Any) -> Any:
    return meta.assign(_part=np.array([], dtype=np.int64))


def _node_meta(frame: Any, params: FuzzyDedupParams) -> Any:
    return node_table(frame._meta, params, False)


def _bucket_meta(nodes_meta: Any) -> Any:
    return bucket_rows(nodes_meta, 1)


def _suffixed(frame: Any, side: str) -> Any:
    return frame.rename(columns={c: f"{c}_{side}" for c in frame.columns})


def _empty_like(frame: Any, columns: dict[str, str]) -> Any:
    """An empty frame of `frame`'s backend with the named columns typed like its own."""
    return _concat([frame[src].iloc[:0].rename(dst).reset_index(drop=True).to_frame()
                    for dst, src in columns.items()], axis=1)


def _concat(frames: list[Any], axis: int = 0) -> Any:
    if is_cudf(frames[0]):
        import cudf

        return cudf.concat(frames, axis=axis, ignore_index=axis == 0)
    return pd.concat(frames, axis=axis, ignore_index=axis == 0)


def _array_module(arr: Any) -> Any:
    if type(arr).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np
