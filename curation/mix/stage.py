"""The `mix` stage: curated records into the two pretraining datasets, as Nemotron ships them.

A record goes to `multiple_choice` or `generative` by its format's `mix`. The stage's shards
(`run`) hold each kept copy of a record and the dropped ones with a reason: `seed`,
`down_weighted`, `over_budget` or `duplicate`. `finalize` shuffles the kept copies by hash,
renders each under its template and writes fixed-size files:

    <stage>/<dataset>/part-NNNNN.{jsonl,parquet}
    <stage>/commercial/<dataset>/part-NNNNN.{jsonl,parquet}   (commercial_subset: true)
    <stage>/manifest.json

Every choice is a hash of `seed` and the record id, so the same input gives the same bytes
however it is partitioned, and a finished stage (its manifest exists) is never rewritten.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from taskseed.curation.io.files import write_json
from taskseed.curation.mix.layout import totals, write_mix
from taskseed.curation.mix.params import MixParams
from taskseed.curation.mix.plan import DATASETS, select
from taskseed.curation.mix.tokens import file_digest, load_counter, tokenizer_file
from taskseed.curation.stage import BuildContext, FrameStage, StageOutput
from taskseed.curation.terms.commercial import obligations, terms_summary

__all__ = ["MixParams", "MixStage"]

STAGING = "_staging"
COMMERCIAL = "commercial"


def _clear(root: Path) -> None:
    """Remove what an interrupted finalize left behind."""
    for name in (STAGING, COMMERCIAL, *DATASETS):
        shutil.rmtree(root / name, ignore_errors=True)


def place(root: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move staged files to `<set>/<dataset>/part-NNNNN.*`, numbered from 0 per dataset; the
    manifest's file list."""
    files = []
    ordered = sorted(entries, key=lambda e: (e["set"] != "full", e["dataset"], e["number"]))
    previous, number = None, 0
    for entry in ordered:
        group = (entry["set"], entry["dataset"])
        number = number + 1 if group == previous else 0
        previous = group
        folder = Path(entry["dataset"]) if entry["set"] == "full" else (
            Path(COMMERCIAL) / entry["dataset"])
        for kind in ("jsonl", "parquet"):
            path = folder / f"part-{number:05d}.{kind}"
            (root / folder).mkdir(parents=True, exist_ok=True)
            os.replace(entry[kind]["staged"], root / path)
            files.append({"path": path.as_posix(), "set": entry["set"],
                          "dataset": entry["dataset"], "records": entry["records"],
                          "tokens": entry["tokens"], "sha256": entry[kind]["sha256"]})
    return files


class MixStage(FrameStage[MixParams]):
    """Selects, weights and budgets records, then writes the two pretraining datasets."""

    name = "mix"
    params_model = MixParams

    @classmethod
    def build(cls, params: MixParams, context: BuildContext) -> MixStage:
        tokenizer_file(params.tokenizer)
        return cls(params)

    def fingerprint(self) -> str:
        path = tokenizer_file(self.params.tokenizer)
        return super().fingerprint() + (file_digest(path.resolve())[:16] if path else "")

    def check_ready(self) -> None:
        load_counter(self.params.tokenizer)

    def run(self, frame: Any, shards: int) -> Any:
        return select(frame, self.params, shards)

    def finalize(self, output: StageOutput) -> None:
        manifest = output.path / "manifest.json"
        if manifest.exists():
            return
        _clear(output.path)
        shards = output.done_shards()
        kept = sum(output.read_marker(s).outputs for s in shards)
        entries: list[dict[str, Any]] = []
        if kept:
            from taskseed.curation.io.frames import read_records

            frame = read_records([output.shard_path(s) for s in shards])
            entries = write_mix(frame, self.params, output.path / STAGING)
        files = place(output.path, entries)
        shutil.rmtree(output.path / STAGING, ignore_errors=True)
        sets = {"full": totals([e for e in entries if e["set"] == "full"], DATASETS)}
        if self.params.commercial_subset:
            sets[COMMERCIAL] = totals([e for e in entries if e["set"] == COMMERCIAL], DATASETS)
        terms = terms_summary(output.shard_path(s) for s in shards)
        write_json(manifest, {
            "seed": self.params.seed,
            "tokenizer": self.params.tokenizer.model_dump(mode="json"),
            "templates": self.params.templates,
            "shard_records": self.params.shard_records,
            "shard_tokens": self.params.shard_tokens,
            "sets": sets,
            "model_terms": terms,
            "obligations": obligations(terms),
            "files": files,
        })
