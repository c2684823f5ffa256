"""What the dataset card says, read from a run directory: the final data, its sources and
licenses, and the card's YAML metadata."""


from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml

from taskseed.curation.formats import DEFINITIONS
from taskseed.curation.stage import DoneMarker
from taskseed.rundir.layout import RunDir, StageDir

CARD = "README.md"
DECONTAM_REPORT = "decontamination.json"
DATASETS = ("multiple_choice", "generative")
DEDUP_STAGES = ("exact_dedup", "fuzzy_dedup")
HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0",
    "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0",
    "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0",
    "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0",
    "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by",
    "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl",
    "lgpl-lr"
})  # the hub's license ids (hub-docs: repositories-licenses.md), `unknown`/`other` aside
HUB_ALIASES = {"odc-by-1.0": "odc-by", "odbl-1.0": "odbl", "c-uda-1.0": "c-uda",
               "cc-by": "cc", "pddl-1.0": "pddl"}
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
         (1_000_000, "100K<n<1M"), (10**7, "1M<n<10M"), (10**8, "10M<n<100M"),
         (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"),
         (10**12, "100B<n<1T"))
SMALL_MODEL = {
    "qwen2.5-coder-1.5b": (
        "A 1.5B model writes simple items, gets some answers wrong and judges weakly (README: "
        "judge quality); the cascade drops much of what it writes, and what it keeps is "
        "plain. Use a larger teacher and judge for data you train on."),
    "smollm2": (
        "With ~135M parameters it loops and copies, the filters drop most of what it writes, "
        "and its judge scores are weak signals; it is there for tests of the mechanics."),
}


@dataclass
class Subset:
    """One `configs` entry: its name, files (relative to the card) and totals."""

    name: str
    files: list[str]
    records: int
    tokens: int | None


@dataclass
class FinalData:
    """The run's final data: its stage folder, subsets, per-task totals and row files."""

    kind: str  # "mix" or "export"
    folder: Path
    subsets: list[Subset]
    tasks: dict[str, dict[str, int]]
    rows: list[Path]  # Parquet files of every record once (the full set)
    manifest: dict[str, Any] = field(default_factory=dict)


def stage_folders(run_dir: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every stage folder in run order."""
    return [(name, folder.path) for _, name, folder in RunDir(run_dir).stage_dirs()]


def markers(folder: Path) -> list[DoneMarker]:
    return StageDir(folder).markers()


def final_data(run_dir: Path) -> FinalData | None:
    """The last finished mix stage, else the last finished export stage, else None."""
    folders = stage_folders(run_dir)
    for kind, read in (("mix", _mix_data), ("export", _export_data)):
        done = [p for name, p in folders if name == kind and (p / "manifest.json").exists()]
        if done:
            return read(done[-1], json.loads((done[-1] / "manifest.json").read_text()))
    return None


def _mix_data(folder: Path, manifest: dict[str, Any]) -> FinalData:
    subsets = []
    for subset_set in ("full", "commercial"):
        totals = manifest["sets"].get(subset_set)
        for dataset in DATASETS if totals else ():
            files = [f["path"] for f in manifest["files"] if f["set"] == subset_set
                     and f["dataset"] == dataset and f["path"].endswith(".parquet")]
            if files:
                name = dataset if subset_set == "full" else f"{subset_set}_{dataset}"
                got = totals["datasets"][dataset]
                subsets.append(Subset(name, files, got["records"], got["tokens"]))
    rows = [folder / s for sub in subsets if sub.name in DATASETS for s in sub.files]
    return FinalData("mix", folder, subsets, manifest["sets"]["full"]["tasks"], rows, manifest)


def _export_data(folder: Path, manifest: dict[str, Any]) -> FinalData:
    files = [f["path"] for f in manifest["files"]]
    jsonl = [p for p in files if p.endswith(".jsonl")]
    rows = [folder / p for p in files if p.endswith(".parquet")]
    records = int(manifest.get("totals", {}).get("records", 0))
    subsets = [Subset("default", jsonl, records, None)] if jsonl and records else []
    tasks: dict[str, dict[str, int]] = {}
    if rows:
        table = ds.dataset([str(p) for p in rows], format="parquet").to_table(columns=["task"])
        for row in table.group_by("task").aggregate([("task", "count")]).to_pylist():
            tasks[row["task"]] = {"records": row["task_count"]}
    return FinalData("export", folder, subsets, dict(sorted(tasks.items())), rows, manifest)


def source_rows(files: list[Path]) -> list[dict[str, Any]]:
    """Records per source dataset, config, license and format, with how many are generated
    and how many are commercial."""
    if not files:
        return []
    data = ds.dataset([str(p) for p in files], format="parquet")
    table = data.to_table(columns={
        "dataset": ds.field("source", "dataset"), "config": ds.field("source", "config"),
        "license": ds.field("license"), "format": ds.field("format"),
        "commercial": ds.field("commercial"),
        "generated": ds.field("lineage", "teacher_model").is_valid(),
    })
    table = table.set_column(4, "commercial", pc.cast(table["commercial"], pa.int64()))
    table = table.set_column(5, "generated", pc.cast(table["generated"], pa.int64()))
    keys = ["dataset", "config", "license", "format"]
    grouped = table.group_by(keys, use_threads=False).aggregate(
        [("license", "count"), ("commercial", "sum"), ("generated", "sum")])
    rows = [{"dataset": r["dataset"], "config": r["config"], "license": r["license"],
             "format": r["format"], "records": r["license_count"],
             "commercial": r["commercial_sum"], "generated": r["generated_sum"]}
            for r in grouped.to_pylist()]
    return sorted(rows, key=lambda r: (r["dataset"], r["config"] or "", r["license"],
                                       r["format"]))


def hub_license(license_id: str) -> str | None:
    """The hub's id for a record's license, or None when the hub has none for it."""
    key = license_id.strip().lower()
    key = HUB_ALIASES.get(key, key)
    return key if key in HUB_LICENSES else None


def license_metadata(counts: dict[str, int]) -> dict[str, Any]:
    """`license` as the hub takes it: one id, a list of ids, or `other` with a name and the
    per-record licenses spelled out."""
    hub = {name: hub_license(name) for name in counts}
    ids = sorted({i for i in hub.values() if i})
    if counts and all(hub.values()):
        return {"license": ids[0] if len(ids) == 1 else ids}
    if not counts:
        return {"license": "unknown"}
    spelled = "; ".join(f"{name} ({n} records)" for name, n in sorted(counts.items()))
    return {"license": "other", "license_name": "per-record-licenses",
            "license_details": "Each record keeps the license of its source dataset in its "
                               f"`license` column: {spelled}."}


def task_categories(formats: Iterable[str]) -> list[str]:
    found = {"text-generation"}
    for fmt in formats:
        known = DEFINITIONS.get(fmt)
        found.update(known.hub_tasks if known else ())
    return sorted(found)


def size_category(records: int) -> str:
    return next((label for limit, label in SIZES if records < limit), "n>1T")


def card_metadata(name: str, data: FinalData, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """The YAML block's fields."""
    licenses: dict[str, int] = {}
    for row in sources:
        licenses[row["license"]] = licenses.get(row["license"], 0) + row["records"]
    total = sum(r["records"] for r in sources)
    configs = [{"config_name": s.name, "data_files": [{"split": "train", "path": s.files}]}
               for s in data.subsets]
    return {
        **license_metadata(licenses),
        "pretty_name": name,
        "task_categories": task_categories(r["format"] for r in sources),
        "size_categories": [size_category(total)],
        "source_datasets": sorted({r["dataset"] for r in sources}),
        "tags": ["synthetic", "pretraining", "taskseed"],
        "configs": configs,
    }


def read_config(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The run's resolved config and its hash (empty when missing)."""
    path, hashed = run_dir / "config.yaml", run_dir / "config.hash"
    config = yaml.safe_load(path.read_text()) if path.exists() else {}
    return config or {}, hashed.read_text().strip() if hashed.exists() else ""
