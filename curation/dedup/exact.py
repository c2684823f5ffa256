"""Exact deduplication over normalized text, on pandas or cuDF partitions."""

from __future__ import annotations

from typing import Any

from taskseed.curation.io.frames import hash_strings, normalized_text
from taskseed.curation.stage import FrameParams, FrameStage


class ExactDedupParams(FrameParams):
    """`shards`: output shards (the key space is split among them)."""


# Joins the normalized fields of a key; normalization turns every \x1f inside a field into a
# space, so field boundaries cannot shift ("a b" + "c" and "a" + "b c" differ).
FIELD_SEPARATOR = "\x1f"


def dedup_keys(part: Any) -> Any:
    """64-bit hash of the normalized context, question and answer of each row."""
    fields = [normalized_text(part[name]) for name in ("context", "question", "answer")]
    return hash_strings(fields[0] + FIELD_SEPARATOR + fields[1] + FIELD_SEPARATOR + fields[2])


def mark_duplicates(part: Any) -> Any:
    """Within a partition holding whole key groups, keep the smallest id of each group."""
    part = part.sort_values(["_key", "id"])
    first = part.groupby("_key")["id"].transform("first")
    dup = part["_key"].duplicated()
    reason = dup.map({True: "duplicate", False: None})
    detail = ("same normalized text as " + first).where(dup, None)
    return part.assign(_reason=reason, _detail=detail).drop(columns=["_key"])


class ExactDedupStage(FrameStage[ExactDedupParams]):
    """Drops records whose normalized context+question+answer already occurs."""

    name = "exact_dedup"
    params_model = ExactDedupParams

    def run(self, frame: Any, shards: int) -> Any:
        keyed = frame.assign(_key=frame.map_partitions(dedup_keys, meta=("_key", "uint64")))
        shuffled = keyed.shuffle(on="_key", npartitions=shards)
        meta = shuffled._meta.assign(_reason=None, _detail=None).drop(columns=["_key"])
        meta = meta.astype({"_reason": object, "_detail": object})
        return shuffled.map_partitions(mark_duplicates, meta=meta)
