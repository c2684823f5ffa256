"""The report's data model and the basic readers of a run directory: stages, tasks and
families, the final and seed stages."""


from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from pydantic import ValidationError

from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Record
from taskseed.rundir.layout import RunDir, StageDir

SCORE_PREFIX = {"llm_judge": "judge.", "reward": "reward.", "self_consistency": "consistency.",
                "fact_check": "fact_check."}
DEFAULT_MODEL = {"llm_judge": "judge", "reward": "reward", "fact_check": "judge"}
OUTPUT_STAGES = ("mix", "export")  # stages that package records rather than curate them
DUPLICATE_REASONS = ("duplicate", "near_duplicate", "near_copy_of_seed", "copied_exemplar")
LENGTH_FIELDS = ("question", "answer", "reasoning", "knowledge")
MAX_LENGTH_ROWS = 200_000
_KEPT_ID = re.compile(r"(?:as|of(?: seed)?) (\S+?)(?: \(jaccard ([0-9.]+)\))?$")


@dataclass
class StageInfo:
    """One stage folder: its totals over every done shard and its parameters."""

    index: int
    name: str
    dir: StageDir
    params: dict[str, Any]
    shards: int = 0
    inputs: int = 0
    outputs: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    columns: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.index:02d} {self.name}"

    @property
    def has_records(self) -> bool:
        return "question" in self.columns

    def files(self) -> list[Path]:
        return [self.dir.shard_path(s) for s in self.dir.done_shards()]

    def reject_files(self, reason: str | None = None) -> list[Path]:
        """Reject files of done shards (those that hold `reason`, when given)."""
        out = []
        for shard in self.dir.done_shards():
            if reason is None or self.dir.read_marker(shard).rejects.get(reason):
                path = self.dir.rejects_path(shard)
                if path.exists():
                    out.append(path)
        return out


@dataclass
class ScoreSeries:
    """One score of a scoring stage: values on kept and dropped records, and its minimum."""

    stage: str
    name: str
    kept: list[float]
    dropped: list[float]
    threshold: float | None = None

    @property
    def discrete(self) -> bool:
        values = self.kept + self.dropped
        return bool(values) and all(float(v).is_integer() for v in values) and (
            max(values) - min(values) <= 10)


@dataclass
class UsageRow:
    stage: str
    model: str
    model_id: str
    calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    usd: float | None


@dataclass
class DropSample:
    stage: str
    reason: str
    count: int
    examples: list[tuple[str, Any]]  # (detail, item: a record dict or other JSON value)


@dataclass
class Duplicates:
    exact_sizes: Counter[int] = field(default_factory=Counter)
    fuzzy_sizes: Counter[int] = field(default_factory=Counter)
    jaccard: list[float] = field(default_factory=list)
    drops: list[tuple[str, str, int]] = field(default_factory=list)  # stage, reason, count
    examples: list[tuple[str, str, dict | None, dict]] = field(default_factory=list)


@dataclass
class ReportData:
    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None
    acceptance: dict[str, Any] | None
    stages: list[StageInfo]
    families: dict[str, str]
    task_counts: dict[str, Counter[str]]  # stage label -> records per task
    final: StageInfo | None
    seeds: StageInfo | None
    scores: list[ScoreSeries]
    lengths: dict[str, dict[str, np.ndarray]]  # field -> {"seeds": ..., "generated": ...}
    decontamination: dict[str, Any] | None
    duplicates: Duplicates
    licenses: list[dict[str, Any]]
    license_source: str
    model_terms: dict[str, Any]  # models and licenses of the final data (curation.commercial)
    usage: list[UsageRow]
    usage_by_task: list[dict[str, Any]]
    priced: bool
    manifest: dict[str, Any] | None
    samples: dict[str, list[tuple[dict, list[dict]]]]
    drop_samples: list[DropSample]

    def family_counts(self, label: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for task, n in self.task_counts.get(label, Counter()).items():
            out[self.families.get(task, "?")] += n
        return out


# --- stages ---------------------------------------------------------------------------------

def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        problem = str(err).splitlines()[0]
        raise TaskseedError(f"{path}: not a readable run config ({problem})") from None
    return data if isinstance(data, dict) else {}


def as_record(item: Any) -> Any:
    """A dropped item as a complete record dict when it is a record, else as it is."""
    if not isinstance(item, dict) or "question" not in item:
        return item
    try:
        return Record.from_dict(item).to_dict()
    except (TypeError, KeyError, ValueError):
        return item


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def stage_params(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A stage's parameters with its defaults filled in (the entry as given when the stage
    class is unknown here or the entry does not validate)."""
    from taskseed.registry import stage_class

    raw = {k: v for k, v in entry.items() if k != "name"}
    cls = stage_class(name)
    if cls is None:
        return raw
    try:
        return cls.params_model.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return raw


def load_stages(run_dir: Path, config: dict[str, Any]) -> list[StageInfo]:
    """Every `stages/NN-name` folder with its done markers added up."""
    entries = config.get("stages") or []
    out = []
    for index, name, folder in RunDir(run_dir).stage_dirs():
        entry = entries[index - 1] if 0 < index <= len(entries) else {}
        entry = entry if isinstance(entry, dict) and entry.get("name") == name else {}
        info = StageInfo(index, name, folder, stage_params(name, entry))
        for shard in info.dir.done_shards():
            marker = info.dir.read_marker(shard)
            info.shards += 1
            info.inputs += marker.inputs
            info.outputs += marker.outputs
            info.rejects.update(marker.rejects)
            info.counters.update(marker.counters)
            info.seconds += marker.seconds
            if not info.columns and info.dir.shard_path(shard).exists():
                info.columns = pq.read_schema(info.dir.shard_path(shard)).names
        out.append(info)
    return out


def check_run_dir(run_dir: Path) -> None:
    """A one-line error unless `run_dir` is a run directory."""
    if not run_dir.exists():
        raise TaskseedError(f"{run_dir}: no such directory")
    if not run_dir.is_dir():
        raise TaskseedError(f"{run_dir}: not a run directory (a file)")
    has_stages = bool(RunDir(run_dir).stage_dirs())
    if not (run_dir / "config.yaml").exists() or not has_stages:
        raise TaskseedError(f"{run_dir}: not a run directory (it needs config.yaml and "
                            "stages/NN-name folders; `taskseed run` makes one)")


def _value_counts(files: list[Path], column: str, where: tuple[str, str] | None = None
                  ) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in files:
        columns = [column] + ([where[0]] if where else [])
        table = pq.read_table(path, columns=columns)
        if where:
            table = table.filter(pc.equal(table[where[0]], where[1]))
        for row in pc.value_counts(table[column]).to_pylist():
            counts[str(row["values"])] += row["counts"]
    return counts


def task_families(stages: list[StageInfo]) -> dict[str, str]:
    found: dict[str, str] = {}
    for stage in stages:
        if not stage.has_records:
            continue
        for path in stage.files():
            table = pq.read_table(path, columns=["task", "family"])
            for row in table.group_by(["task", "family"]).aggregate([]).to_pylist():
                found.setdefault(row["task"], row["family"])
        if found:
            break
    return found


def pick_final(stages: list[StageInfo]) -> StageInfo | None:
    """The last curating stage whose shards hold records (before a mix or export)."""
    final = None
    for stage in stages:
        if stage.name in OUTPUT_STAGES:
            break
        if stage.has_records:
            final = stage
    return final


def pick_seeds(stages: list[StageInfo]) -> StageInfo | None:
    """The stage holding the normalized seed records."""
    named = [s for s in stages if s.name == "normalize" and s.has_records]
    if named:
        return named[0]
    return next((s for s in stages if s.has_records), None)


# --- scores ---------------------------------------------------------------------------------
