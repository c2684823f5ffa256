"""Pretraining shards: records rendered as text, written as JSONL and Parquet, with a manifest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from taskseed.curation.formats import answer_format
from taskseed.curation.io.files import write_json
from taskseed.curation.mix.templates import render
from taskseed.curation.record import Origin, Record
from taskseed.curation.stage import KEEP, FilterStage, StageOutput, StageParams, Verdict, drop
from taskseed.curation.terms.commercial import obligations, terms_summary


class ExportParams(StageParams):
    include_seeds: bool = False


def mix_of(record: Record) -> str:
    """Which pretraining mix a record belongs to: multiple-choice or generative."""
    return answer_format(record.format).mix


def render_text(record: Record) -> str:
    """The training text of a record: the mix's `exam` template, the one renderer."""
    return render("exam", record.to_dict())


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


class ExportStage(FilterStage[ExportParams]):
    """Keeps the records that go into the mix; `finalize` writes JSONL shards and a manifest."""

    name = "export"
    params_model = ExportParams

    def check(self, record: Record) -> Verdict:
        if record.origin is Origin.SEED and not self.params.include_seeds:
            return drop("seed", "seeds are left out of the export (include_seeds: false)")
        return KEEP

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        verdicts = super().judge(batch, shard, counters)
        counters.update(f"mix:{mix_of(r)}" for r, v in zip(batch, verdicts, strict=True)
                        if v.keep)
        return verdicts

    def finalize(self, stage_dir: StageOutput) -> None:
        manifest = stage_dir.path / "manifest.json"
        if manifest.exists():
            return
        files = []
        totals: Counter[str] = Counter()
        for shard in stage_dir.done_shards():
            records = stage_dir.read_shard(shard, Record)
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
        terms = terms_summary(stage_dir.shard_path(s) for s in stage_dir.done_shards())
        write_json(manifest, {"files": files, "totals": dict(totals), "model_terms": terms,
                              "obligations": obligations(terms)})
