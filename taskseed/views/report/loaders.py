"""The report's loaders, one per section: scores and thresholds, lengths, duplicates,
licenses, model usage and cost, sample records and dropped records."""


from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from taskseed.config.budget import SPEND_KEYS, BudgetConfig
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.arrow import from_table
from taskseed.curation.record import Record
from taskseed.rundir.layout import RunDir
from taskseed.views.report.model import (
    _KEPT_ID,
    DEFAULT_MODEL,
    DUPLICATE_REASONS,
    LENGTH_FIELDS,
    MAX_LENGTH_ROWS,
    SCORE_PREFIX,
    DropSample,
    Duplicates,
    ScoreSeries,
    StageInfo,
    UsageRow,
    as_record,
)


def score_thresholds(stage: str, params: dict[str, Any]) -> dict[str, float]:
    """The minimum a record needs on each score of a scoring stage to be kept."""
    if stage == "llm_judge":
        from taskseed.judges.judge_prompts import load_rubric

        try:
            rubric = load_rubric(str(params.get("rubric", "default")))
        except TaskseedError:
            return {}
        given = params.get("thresholds") or {}
        return {f"judge.{n}": float(given.get(n, c.min)) for n, c in rubric.criteria.items()}
    if stage == "reward":
        out = {f"reward.{k}": float(v) for k, v in (params.get("thresholds") or {}).items()}
        if params.get("min_score") is not None:
            out["reward.score"] = float(params["min_score"])
        return out
    if stage == "self_consistency" and params.get("min_agreement") is not None:
        return {"consistency.agreement": float(params["min_agreement"])}
    return {}


def _kept_scores(files: list[Path], prefix: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for path in files:
        flat = pc.list_flatten(pq.read_table(path, columns=["scores"])["scores"])
        if not len(flat):
            continue
        flat = flat.combine_chunks() if isinstance(flat, pa.ChunkedArray) else flat
        names, values = flat.field("name"), flat.field("value")
        mine = pc.starts_with(names, prefix)
        names, values = names.filter(mine), values.filter(mine)
        for name in pc.unique(names).to_pylist():
            picked = pc.drop_null(values.filter(pc.equal(names, name)))
            out[name].extend(picked.to_numpy(zero_copy_only=False).tolist())
    return out


def _dropped_scores(files: list[Path], prefix: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for path in files:
        for text in pq.read_table(path, columns=["item"])["item"].to_pylist():
            scores = orjson.loads(text).get("scores") or {}
            for name, value in scores.items():
                if name.startswith(prefix) and value is not None:
                    out[name].append(float(value))
    return out


def load_scores(stages: list[StageInfo]) -> list[ScoreSeries]:
    series = []
    for stage in stages:
        prefix = SCORE_PREFIX.get(stage.name)
        if prefix is None:
            continue
        kept = _kept_scores(stage.files(), prefix)
        dropped = _dropped_scores(stage.reject_files(), prefix)
        minimum = score_thresholds(stage.name, stage.params)
        for name in sorted(set(kept) | set(dropped)):
            series.append(ScoreSeries(stage.label, name, kept.get(name, []),
                                      dropped.get(name, []), minimum.get(name)))
    return series


# --- lengths --------------------------------------------------------------------------------

def word_counts(files: list[Path], origin: str | None) -> dict[str, np.ndarray]:
    """Words per field of up to MAX_LENGTH_ROWS records (of one origin, when given)."""
    parts: dict[str, list[np.ndarray]] = {f: [] for f in LENGTH_FIELDS}
    rows = 0
    for path in files:
        if rows >= MAX_LENGTH_ROWS:
            break
        table = pq.read_table(path, columns=[*LENGTH_FIELDS, "origin"])
        if origin is not None:
            table = table.filter(pc.equal(table["origin"], origin))
        rows += table.num_rows
        for name in LENGTH_FIELDS:
            column = pc.drop_null(table[name])
            column = column.filter(pc.greater(pc.utf8_length(column), 0))
            words = pc.list_value_length(pc.utf8_split_whitespace(column))
            parts[name].append(words.to_numpy(zero_copy_only=False))
    return {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in parts.items()}


def load_lengths(seeds: StageInfo | None, final: StageInfo | None
                 ) -> dict[str, dict[str, np.ndarray]]:
    seed_words = word_counts(seeds.files(), None) if seeds else {}
    generated = word_counts(final.files(), "generated") if final else {}
    return {name: {"seeds": seed_words.get(name, np.zeros(0)),
                   "generated": generated.get(name, np.zeros(0))} for name in LENGTH_FIELDS}


# --- contamination, duplicates, licenses ----------------------------------------------------

def find_decontamination(run_dir: Path) -> dict[str, Any] | None:
    for path in [run_dir / "decontamination.json",
                 *RunDir(run_dir).stage_files("decontamination.json")]:
        if path.exists():
            return json.loads(path.read_text())
    return None


def read_records(files: list[Path], ids: set[str]) -> dict[str, dict]:
    """Records with these ids, as dicts."""
    if not ids:
        return {}
    wanted = pa.array(sorted(ids), pa.string())
    out = {}
    for path in files:
        table = pq.read_table(path)
        table = table.filter(pc.is_in(table["id"], value_set=wanted))
        for record in from_table(table, Record):
            out[record.id] = record.to_dict()
    return out


def load_duplicates(stages: list[StageInfo], seeds: StageInfo | None, samples: int
                    ) -> Duplicates:
    dup = Duplicates()
    for stage in stages:
        for reason in DUPLICATE_REASONS:
            if stage.rejects.get(reason):
                dup.drops.append((stage.label, reason, stage.rejects[reason]))
        if stage.name not in ("exact_dedup", "fuzzy_dedup"):
            continue
        sizes = dup.exact_sizes if stage.name == "exact_dedup" else dup.fuzzy_sizes
        clusters: Counter[str] = Counter()
        shown: list[tuple[str, str, dict]] = []
        for path in stage.reject_files():
            table = pq.read_table(path, columns=["reason", "detail"])
            items: list[str] | None = None  # read only while examples are wanted
            for row, (reason, detail) in enumerate(zip(
                    table["reason"].to_pylist(), table["detail"].to_pylist(), strict=True)):
                found = _KEPT_ID.search(detail or "")
                if reason not in DUPLICATE_REASONS or found is None:
                    continue
                clusters[found.group(1)] += 1
                if found.group(2):
                    dup.jaccard.append(float(found.group(2)))
                if len(shown) < samples:
                    if items is None:
                        items = pq.read_table(path, columns=["item"])["item"].to_pylist()
                    shown.append((found.group(1), detail, as_record(orjson.loads(items[row]))))
        sizes.update(Counter(n + 1 for n in clusters.values()))
        files = stage.files() + (seeds.files() if seeds else [])
        kept = read_records(files, {kept_id for kept_id, _, _ in shown})
        for kept_id, detail, item in shown:
            dup.examples.append((stage.label, detail, kept.get(kept_id), item))
    return dup


def load_licenses(manifest: dict[str, Any] | None, final: StageInfo | None
                  ) -> tuple[list[dict[str, Any]], str]:
    """Records (and tokens) per license: from the mix manifest when there is one, else
    from the final records."""
    if manifest is not None:
        sets = manifest.get("sets", {})
        full = sets.get("full", {}).get("licenses", {})
        commercial = sets.get("commercial", {}).get("licenses", {})
        rows = [{"license": name, "records": v["records"], "tokens": v["tokens"],
                 "commercial_records": commercial.get(name, {}).get("records", 0),
                 "commercial_tokens": commercial.get(name, {}).get("tokens", 0)}
                for name, v in full.items()]
        return sorted(rows, key=lambda r: -r["records"]), "mix"
    if final is None:
        return [], "none"
    totals: Counter[str] = Counter()
    commercial_n: Counter[str] = Counter()
    for path in final.files():
        table = pq.read_table(path, columns=["license", "commercial"])
        groups = table.group_by(["license", "commercial"]).aggregate([([], "count_all")])
        for row in groups.to_pylist():
            totals[row["license"]] += row["count_all"]
            commercial_n[row["license"]] += row["count_all"] if row["commercial"] else 0
    rows = [{"license": k, "records": n, "tokens": None, "commercial_records": commercial_n[k],
             "commercial_tokens": None} for k, n in totals.most_common()]
    return rows, "records"


# --- model usage ----------------------------------------------------------------------------

def model_id(config: dict[str, Any], model: str) -> str:
    """`backend model` of a named model of the config."""
    cfg = config.get("teacher") if model == "teacher" else (config.get("models") or {}).get(model)
    if not isinstance(cfg, dict):
        return "?"
    backend = cfg.get("backend", "embedded")
    name = cfg.get("model") or (Path(cfg["model_path"]).name if cfg.get("model_path") else "")
    return f"{backend} {name}".strip()


def is_priced(budget: BudgetConfig) -> bool:
    prices = [budget.usd_per_1m_prompt_tokens, budget.usd_per_1m_completion_tokens]
    for line in budget.models.values():
        prices += [line.usd_per_1m_prompt_tokens or 0, line.usd_per_1m_completion_tokens or 0]
    return any(p > 0 for p in prices)


def load_usage(stages: list[StageInfo], config: dict[str, Any]
               ) -> tuple[list[UsageRow], list[dict[str, Any]], bool]:
    """Per stage and per task: model calls, cache hits, tokens and USD (None: no prices)."""
    try:
        budget = BudgetConfig.model_validate(config.get("budget") or {})
    except ValidationError:
        budget = BudgetConfig()
    priced = is_priced(budget)
    rows: list[UsageRow] = []
    tasks: dict[str, Counter[str]] = defaultdict(Counter)
    task_usd: Counter[str] = Counter()
    for stage in stages:
        c = stage.counters
        if not any(c.get(k) for k in SPEND_KEYS):
            continue
        model = str(stage.params.get("model") or DEFAULT_MODEL.get(stage.name, "teacher"))
        prompt, completion = c.get("prompt_tokens", 0), c.get("completion_tokens", 0)
        usd = budget.cost(prompt, completion, model) if priced else None
        hits = c.get("cache_hits", 0) + c.get("reward_cached", 0)
        rows.append(UsageRow(stage.label, model, model_id(config, model),
                             c.get("teacher_calls", 0), hits, prompt, completion, usd))
        for key, value in c.items():
            name, _, task = key.partition(":")
            if task and name in ("calls", "prompt_tokens", "completion_tokens"):
                tasks[task][name] += value
        for task in {k.partition(":")[2] for k in c if k.startswith("prompt_tokens:")}:
            task_usd[task] += budget.cost(c.get(f"prompt_tokens:{task}", 0),
                                          c.get(f"completion_tokens:{task}", 0), model)
    by_task = [{"task": t, **{k: v.get(k, 0) for k in ("calls", "prompt_tokens",
                                                         "completion_tokens")},
                "usd": task_usd[t] if priced else None} for t, v in sorted(tasks.items())]
    return rows, by_task, priced


# --- samples --------------------------------------------------------------------------------

def pick_ids(files: list[Path], per_task: int) -> list[str]:
    """Up to `per_task` generated record ids of each task: the smallest ids (content
    hashes, so an even spread)."""
    best: pa.Table | None = None
    for path in files:
        table = pq.read_table(path, columns=["id", "task", "origin"])
        table = table.filter(pc.equal(table["origin"], "generated")).select(["id", "task"])
        if best is not None:
            table = pa.concat_tables([best, table])
        best = _smallest_per_task(table, per_task)
    return [] if best is None else sorted(best["id"].to_pylist())


def _smallest_per_task(table: pa.Table, per_task: int) -> pa.Table:
    frame = table.to_pandas().sort_values("id", kind="stable")
    frame = frame.groupby("task", sort=False).head(per_task)
    return pa.Table.from_pandas(frame, preserve_index=False).cast(table.schema)


def load_samples(final: StageInfo | None, seeds: StageInfo | None, per_task: int
                 ) -> dict[str, list[tuple[dict, list[dict]]]]:
    """Per task: generated records of the final stage, each with the seeds it came from."""
    if final is None or per_task <= 0:
        return {}
    records = read_records(final.files(), set(pick_ids(final.files(), per_task)))
    wanted = {sid for r in records.values() for sid in r["lineage"]["seed_ids"]}
    seed_records = read_records(seeds.files(), wanted) if seeds else {}
    out: dict[str, list[tuple[dict, list[dict]]]] = defaultdict(list)
    for rid in sorted(records):
        record = records[rid]
        seeds_of = [seed_records[s] for s in record["lineage"]["seed_ids"] if s in seed_records]
        out[record["task"]].append((record, seeds_of))
    return dict(sorted(out.items()))


def load_drop_samples(stages: list[StageInfo], per_reason: int) -> list[DropSample]:
    out = []
    for stage in stages:
        for reason, count in sorted(stage.rejects.items(), key=lambda kv: -kv[1]):
            examples: list[tuple[str, Any]] = []
            for path in stage.reject_files(reason):
                if len(examples) >= per_reason:
                    break
                table = pq.read_table(path, columns=["reason", "detail", "item"])
                table = table.filter(pc.equal(table["reason"], reason))
                table = table.slice(0, per_reason - len(examples))
                for detail, item in zip(table["detail"].to_pylist(), table["item"].to_pylist(),
                                        strict=True):
                    examples.append((detail or "", as_record(orjson.loads(item))))
            out.append(DropSample(stage.label, reason, count, examples))
    return out


# --- the whole run --------------------------------------------------------------------------
