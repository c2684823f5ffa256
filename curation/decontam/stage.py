"""Decontamination: drop records that overlap any held-out split of any task.

The n-gram index of every held-out split (`ngram_index.NgramIndex`) is built once per run
directory and settings, under `<run_dir>/index/`, by whichever process needs it first;
every other shard, process or Slurm task loads it.
"""

from __future__ import annotations

import fcntl
import glob
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import xxhash
from pydantic import Field
from taskseed.curation.decontam.eval_sets import EvalSplit, eval_splits, read_eval_split
from taskseed.curation.decontam.near_index import NearIndex, near_text
from taskseed.curation.decontam.ngram_index import MAX_NGRAM, EvalItem, NgramIndex
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.files import write_json
from taskseed.curation.record import Record
from taskseed.curation.seeds.readers import expand_files, iter_file
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs
from taskseed.curation.stage import (
    KEEP,
    BuildContext,
    FilterStage,
    StageOutput,
    StageParams,
    StageResult,
    Verdict,
    drop,
)

INDEX_VERSION = 2
REASON = "eval_overlap"
DETAIL_ITEMS = 5
REPORT = "decontamination.json"
TEXT_COLUMNS = ["task", "question", "answer", "choices", "context"]
CHECK_BATCH = 50_000


class DecontamParams(StageParams):
    """`ngram`: n-gram length (13, or 8 for a stricter check); `min_matches`: distinct
    n-grams a record must share with one eval item to be dropped; `hub`: what to do with
    a held-out split found only on the hub (`try` it and report it when it cannot be read,
    `require` it, or `skip` it); `extra_eval_files`: more held-out files (rows with
    `question`, `answer` and optional `choices`, `context`, `task`, `split`), relative to
    the seeds root; `include_seeds_report`: also check the run's seeds in the report;
    `eval_specs`: task spec files (globs, relative to the pipeline config's folder) whose
    held-out splits are indexed besides the run's own tasks: the whole catalog by default."""

    eval_specs: list[str] = Field(default_factory=lambda: ["tasks/*.yaml"])
    ngram: int = Field(13, ge=4, le=MAX_NGRAM)
    min_matches: int = Field(1, ge=1)
    hub: Literal["try", "require", "skip"] = "try"
    extra_eval_files: list[str] = Field(default_factory=list)
    include_seeds_report: bool = True


def text_pair(
    question: str | None, answer: str | None, choices: Iterable[str] | None,
    context: str | None,
) -> tuple[str, str]:
    """The (head, tail) text of an item: question and answer, then choices and context."""
    head = f"{question or ''}\n{answer or ''}"
    return head, "\n".join([*(choices or []), context or ""])


def record_texts(record: Record) -> tuple[str, str]:
    return text_pair(record.question, record.answer, record.choices, record.context)


@dataclass
class EvalCorpus:
    """The held-out items to index, their texts, and which splits were (not) read."""

    items: list[EvalItem] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    near_texts: list[str] = field(default_factory=list)
    choices: list[list[str]] = field(default_factory=list)
    indexed: list[dict[str, Any]] = field(default_factory=list)
    not_indexed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, item: EvalItem, question: str, answer: str, choices: list[str],
            context: str | None) -> None:
        self.items.append(item)
        self.texts.append(text_pair(question, answer, choices, context))
        self.near_texts.append(near_text(question, context))
        self.choices.append(list(choices))


def _read_split(target: EvalSplit, seeds_root: Path, hub: str) -> StageResult | str:
    """The split's records and rejects, or why it is not indexed (`require` makes a hub
    split that cannot be read an error)."""
    if target.local:
        return read_eval_split(target, seeds_root)
    assert target.split_spec.hub is not None
    if hub == "skip":
        return "hub-only split skipped (hub: skip)"
    try:
        return read_eval_split(target, seeds_root)
    except TaskseedError as err:
        if hub == "require":
            raise TaskseedError(
                f"held-out split {target.task}/{target.split} (hub "
                f"{target.split_spec.hub.path}) cannot be read: {err}") from None
        return f"hub-only split not readable: {err}"


def collect_eval(
    specs: dict[str, TaskSpec], seeds_root: Path, hub: str = "try",
    extra_files: list[str] | None = None,
) -> EvalCorpus:
    """Every held-out split of every spec, plus the extra eval files."""
    corpus = EvalCorpus()
    for target in eval_splits(specs):
        got = _read_split(target, seeds_root, hub)
        entry: dict[str, Any] = {"benchmark": target.task, "split": target.split}
        if isinstance(got, str):
            corpus.not_indexed.append({**entry, "reason": got})
            continue
        files = {r.source.path for r in got.items}
        for record in got.items:
            name = Path(record.source.path or "").name if len(files) > 1 else ""
            corpus.add(EvalItem(target.task, target.split, record.source.row, name),
                       record.question, record.answer, record.choices, record.context)
        entry.update(items=len(got.items), source="files" if target.local else "hub")
        if got.rejects:
            entry["rows_not_normalized"] = len(got.rejects)
        corpus.indexed.append(entry)
    for name in extra_files or []:
        _add_extra(corpus, _extra_path(name, seeds_root))
    return corpus


def _extra_path(name: str, seeds_root: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else seeds_root / path


def _add_extra(corpus: EvalCorpus, path: Path) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    skipped = 0
    for row_index, row in enumerate(iter_file(path)):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            skipped += 1
            continue
        source = row.get("source") if isinstance(row.get("source"), dict) else {}
        bench = str(row.get("task") or path.name.split(".")[0])
        split = str(row.get("split") or source.get("split") or "extra")
        choices = row.get("choices")
        context = row.get("context")
        corpus.add(EvalItem(bench, split, row_index, path.name), row["question"],
                   str(row.get("answer") or ""),
                   [str(c) for c in choices] if isinstance(choices, list) else [],
                   None if context is None else str(context))
        counts[(bench, split)] += 1
    for (bench, split), n in sorted(counts.items()):
        corpus.indexed.append({"benchmark": bench, "split": split, "items": n,
                               "source": str(path)})
    if skipped:
        corpus.not_indexed.append({"benchmark": path.name, "split": "extra",
                                   "reason": f"{skipped} rows without a `question` string"})


def index_settings(
    specs: dict[str, TaskSpec], ngram: int, hub: str, extra_files: list[str]
) -> dict[str, Any]:
    """What an index is built from, apart from the files' contents."""
    return {
        "version": INDEX_VERSION,
        "ngram": ngram,
        "hub": hub,
        "splits": [[t.task, t.split, t.split_spec.model_dump(mode="json")]
                   for t in eval_splits(specs)],
        "extra_eval_files": list(extra_files),
    }


def _file_stats(specs: dict[str, TaskSpec], seeds_root: Path, extra: list[str]) -> list[list]:
    paths: list[Path] = []
    for target in eval_splits(specs):
        for data, labels in expand_files(target.split_spec, seeds_root):
            paths.extend(p for p in (data, labels) if p is not None)
    paths.extend(_extra_path(name, seeds_root) for name in extra)
    stats = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            stats.append([str(path), None, None])
            continue
        stats.append([str(path), st.st_size, st.st_mtime_ns])
    return stats


def index_key(specs: dict[str, TaskSpec], seeds_root: Path, params: DecontamParams) -> str:
    """Hash of the index settings and the eval files' names, sizes and mtimes."""
    settings = index_settings(specs, params.ngram, params.hub, params.extra_eval_files)
    settings["files"] = _file_stats(specs, seeds_root, params.extra_eval_files)
    return xxhash.xxh3_64_hexdigest(json.dumps(settings, sort_keys=True).encode())


@dataclass
class EvalIndex:
    """The n-gram index and the near-copy index (`near_index`) of the same held-out items."""

    ngram: NgramIndex
    near: NearIndex

    @property
    def items(self) -> list[EvalItem]:
        return self.ngram.items

    @property
    def meta(self) -> dict[str, Any]:
        return self.ngram.meta

    def match(self, rows: list[tuple[str, str, list[str], str | None]],
              min_matches: int = 1) -> list[np.ndarray]:
        """For each (question, answer, choices, context): the ids of the eval items it
        overlaps by n-grams or is a near copy of."""
        found = self.ngram.match([text_pair(*row) for row in rows], min_matches)
        by_near = self.near.match([near_text(q, c) for q, _, _, c in rows],
                                  [row[2] for row in rows])
        for i, near in enumerate(by_near):
            if len(near):
                found[i] = np.union1d(found[i], near).astype(np.int32)
        return found

    def save(self, npz: Path, table: Path) -> None:
        """The near-copy arrays, then the n-gram index (its `.npz` is the commit)."""
        npz.parent.mkdir(parents=True, exist_ok=True)
        self.near.save(near_path(npz))
        self.ngram.save(npz, table)

    @classmethod
    def load(cls, npz: Path, table: Path) -> EvalIndex:
        return cls(NgramIndex.load(npz, table), NearIndex.load(near_path(npz)))


def near_path(npz: Path) -> Path:
    """The near-copy arrays beside the n-gram index `decontam-<key>.npz`: `near-<key>.npz`."""
    return npz.with_name(npz.name.replace("decontam-", "near-", 1))


def record_fields(record: Record) -> tuple[str, str, list[str], str | None]:
    return record.question, record.answer, record.choices, record.context


def row_fields(row: dict[str, Any]) -> tuple[str, str, list[str], str | None]:
    """The fields of a record or eval row as a dict (fields of other types read as text)."""
    choices, context = row.get("choices"), row.get("context")
    return (str(row.get("question") or ""), str(row.get("answer") or ""),
            [str(c) for c in choices] if isinstance(choices, list) else [],
            None if context is None else str(context))


def build_index(
    specs: dict[str, TaskSpec], seeds_root: Path, params: DecontamParams
) -> EvalIndex:
    """The indexes of every held-out split (see `collect_eval`), with its split lists."""
    corpus = collect_eval(specs, seeds_root, params.hub, params.extra_eval_files)
    meta = {"indexed": corpus.indexed, "not_indexed": corpus.not_indexed,
            "settings": index_settings(specs, params.ngram, params.hub,
                                       params.extra_eval_files)}
    return EvalIndex(NgramIndex.build(corpus.items, corpus.texts, params.ngram, meta),
                     NearIndex.build(corpus.near_texts, corpus.choices))


def load_or_build(
    npz: Path, table: Path, build: Callable[[], EvalIndex]
) -> tuple[EvalIndex, bool]:
    """Load the index at `npz`/`table`, or build and save it under a lock so that one
    process builds it; the second value says whether this call built it."""
    if npz.exists():
        return EvalIndex.load(npz, table), False
    npz.parent.mkdir(parents=True, exist_ok=True)
    with npz.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if npz.exists():
                return EvalIndex.load(npz, table), False
            index = build()
            index.save(npz, table)
            return index, True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def overlap_summary(
    index: EvalIndex, rows: Iterable[dict[str, Any]], min_matches: int, count_name: str
) -> dict[str, Any]:
    """Per benchmark and split: eval items matched and `count_name` (records overlapping),
    by the records' own task too."""
    matched: dict[tuple[str, str], set[int]] = defaultdict(set)
    records: Counter[tuple[str, str]] = Counter()
    by_task: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    checked = overlapping = 0
    for chunk in _chunks(rows, CHECK_BATCH):
        checked += len(chunk)
        for row, found in zip(chunk, index.match([row_fields(r) for r in chunk], min_matches),
                              strict=True):
            overlapping += bool(len(found))
            splits = set()
            for item_id in found.tolist():
                item = index.items[item_id]
                matched[(item.benchmark, item.split)].add(item_id)
                splits.add((item.benchmark, item.split))
            for key in splits:
                records[key] += 1
                by_task[key][str(row.get("task"))] += 1
    benchmarks: dict[str, dict[str, Any]] = defaultdict(dict)
    for bench, split in sorted(matched):
        benchmarks[bench][split] = {"eval_items_matched": len(matched[(bench, split)]),
                                    count_name: records[(bench, split)],
                                    "by_task": dict(sorted(by_task[(bench, split)].items()))}
    return {"records_checked": checked, "records_overlapping": overlapping,
            "benchmarks": dict(benchmarks)}


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed_rows(files: list[Path]) -> Iterator[dict[str, Any]]:
    """The text columns of the run's normalized seed shards."""
    for path in files:
        yield from pq.read_table(path, columns=TEXT_COLUMNS).to_pylist()


def catalog_specs(patterns: list[str], context: BuildContext) -> dict[str, TaskSpec]:
    """The run's task specs plus those of the spec files `patterns` match (the run's win)."""
    base = context.config_dir or Path.cwd()
    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(Path(p) for p in glob.glob(str(base / pattern), recursive=True))
        if not found:
            raise TaskseedError(f"decontaminate.eval_specs: '{pattern}' matches no task spec "
                                f"file under {base}")
        paths += [p for p in found if p not in paths]
    return {**load_task_specs(paths), **context.specs}


class DecontaminateStage(FilterStage[DecontamParams]):
    """Drops records that share n-grams (or, for short eval items, all their words) with
    any held-out split of any task, naming the eval items they match."""

    name = "decontaminate"
    params_model = DecontamParams

    def __init__(
        self, params: DecontamParams, specs: dict[str, TaskSpec], seeds_root: Path,
        run_dir: Path, seeds: Any = None,
    ) -> None:
        super().__init__(params)
        self.specs, self.seeds_root, self.run_dir, self.seeds = specs, seeds_root, run_dir, seeds
        self._index: EvalIndex | None = None
        self.built_index = False

    @classmethod
    def build(cls, params: DecontamParams, context: BuildContext) -> DecontaminateStage:
        return cls(params, catalog_specs(params.eval_specs, context), context.seeds_root,
                   context.run_dir, context.seeds)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_index": None}

    def fingerprint(self) -> str:
        settings = index_settings(self.specs, self.params.ngram, self.params.hub,
                                  self.params.extra_eval_files)
        blob = json.dumps(settings, sort_keys=True).encode()
        return super().fingerprint() + xxhash.xxh3_64_hexdigest(blob)

    def index_paths(self) -> tuple[Path, Path]:
        """The index arrays (`.npz`) and item table (`.json`) for the current eval files."""
        stem = f"decontam-{index_key(self.specs, self.seeds_root, self.params)}"
        folder = self.run_dir / "index"
        return folder / f"{stem}.npz", folder / f"{stem}.json"

    @property
    def index(self) -> EvalIndex:
        """The run's index, loaded, or built once when no process has built it yet."""
        if self._index is None:
            npz, table = self.index_paths()
            self._index, self.built_index = load_or_build(
                npz, table, lambda: build_index(self.specs, self.seeds_root, self.params))
        return self._index

    def check_ready(self) -> None:
        self.index  # noqa: B018 - builds the index once, before shards start

    def setup(self) -> None:
        self.index  # noqa: B018

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        index = self.index
        found = index.match([record_fields(r) for r in batch], self.params.min_matches)
        verdicts: list[Verdict] = []
        for item_ids in found:
            if not len(item_ids):
                verdicts.append(KEEP)
                continue
            items = [index.items[i] for i in item_ids.tolist()]
            for bench, split in sorted({(i.benchmark, i.split) for i in items}):
                counters[f"eval_overlap:{bench}:{split}"] += 1
            shown = ", ".join(i.label() for i in items[:DETAIL_ITEMS])
            more = f" and {len(items) - DETAIL_ITEMS} more" if len(items) > DETAIL_ITEMS else ""
            verdicts.append(drop(REASON, f"overlaps {len(items)} eval item(s): {shown}{more}"))
        return verdicts

    def finalize(self, output: StageOutput) -> None:
        index = self.index
        shards = output.done_shards()
        dropped = [json.loads(r.item) for s in shards for r in output.read_rejects(s)
                   if r.stage == self.name and r.reason == REASON]
        generated = overlap_summary(index, dropped, self.params.min_matches, "records_dropped")
        generated["records_checked"] = sum(output.read_marker(s).inputs for s in shards)
        generated["records_dropped"] = generated.pop("records_overlapping")
        npz, _ = self.index_paths()
        report = {
            "ngram": self.params.ngram,
            "min_matches": self.params.min_matches,
            "hub": self.params.hub,
            "index": {"path": str(npz.relative_to(self.run_dir)),
                      "keys": int(len(index.ngram.keys)), "items": len(index.items),
                      "near_copy_keys": int(len(index.near.keys) + len(index.near.pair_codes))},
            "indexed": index.meta.get("indexed", []),
            "not_indexed": index.meta.get("not_indexed", []),
            "generated": generated,
            "seeds": self._seeds_report(index),
        }
        write_json(output.path / REPORT, report)

    def _seeds_report(self, index: EvalIndex) -> dict[str, Any] | None:
        if not self.params.include_seeds_report:
            return None
        files = self.seeds.files() if self.seeds is not None else []
        return overlap_summary(index, seed_rows(files), self.params.min_matches,
                               "seed_records")
