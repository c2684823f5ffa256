"""Pretraining shards: records rendered as text, written as JSONL and Parquet, with a manifest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from curation.arrow import read_parquet
from curation.record import Format, Record
from curation.rundir import StageDir, write_json
from curation.stage import BatchStage, StageResult

LETTERS = "ABCDEFGHIJ"


class ExportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_seeds: bool = False


def mix_of(record: Record) -> str:
    """Which pretraining mix a record belongs to: multiple-choice or generative."""
    return "multiple_choice" if record.format is Format.MULTIPLE_CHOICE else "generative"


def render_text(record: Record) -> str:
    """The training text of a record: context, question, options, reasoning and answer."""
    parts: list[str] = []
    if record.context:
        parts.append(record.context.strip())
    parts.append(f"Question: {record.question.strip()}")
    if record.choices:
        parts.extend(f"{LETTERS[i]}. {c}" for i, c in enumerate(record.choices))
    if record.knowledge:
        parts.append(f"Background: {record.knowledge.strip()}")
    if record.reasoning:
        parts.append(f"Reasoning: {record.reasoning.strip()}")
    if record.choices and record.answer in record.choices:
        letter = LETTERS[record.choices.index(record.answer)]
        parts.append(f"Answer: {letter}. {record.answer}")
    elif record.format is Format.CODE:
        parts.append(f"Answer:\n{record.answer}")
    else:
        parts.append(f"Answer: {record.answer}")
    return "\n".join(parts) + "\n"


def jsonl_row(record: Record) -> dict[str, Any]:
    data = record.to_dict()
    return {
        "text": render_text(record),
        "id": record.id,
        "mix": mix_of(record),
        "task": record.task,
        "family": record.family,
        "format": record.format.value,
        "origin": record.origin.value,
        "license": record.license,
        "commercial": record.commercial,
        "source": data["source"],
        "lineage": data["lineage"],
        "scores": record.scores,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ExportStage(BatchStage):
    """Keeps the records that go into the mix; `finalize` writes JSONL shards and a manifest."""

    name = "export"

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        for record in batch:
            if record.origin.value == "seed" and not self.params.include_seeds:
                result.counters["seeds_left_out"] += 1
                continue
            result.items.append(record)
            result.counters[f"mix:{mix_of(record)}"] += 1
        return result

    def finalize(self, stage_dir: StageDir) -> None:
        manifest = stage_dir.path / "manifest.json"
        if manifest.exists():
            return
        files = []
        totals: Counter[str] = Counter()
        for shard in stage_dir.done_shards():
            records = read_parquet(stage_dir.shard_path(shard), Record)
            jsonl = stage_dir.path / f"part-{shard:05d}.jsonl"
            tmp = jsonl.with_suffix(".jsonl.tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                for record in records:
                    fh.write(json.dumps(jsonl_row(record), ensure_ascii=False) + "\n")
            tmp.replace(jsonl)
            counts = Counter(mix_of(r) for r in records)
            counts["commercial"] = sum(r.commercial for r in records)
            totals.update(counts)
            totals["records"] += len(records)
            for path in (jsonl, stage_dir.shard_path(shard)):
                files.append(
                    {
                        "path": path.name,
                        "records": len(records),
                        "sha256": _sha256(path),
                        "mix": dict(counts),
                    }
                )
        write_json(manifest, {"files": files, "totals": dict(totals)})
