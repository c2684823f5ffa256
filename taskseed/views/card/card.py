"""The dataset card: a `README.md` beside a run's final data, as the Hugging Face hub reads it.

The card goes in the mix stage's folder (or, without a finished mix, the export stage's). Its
YAML block holds the license, task categories, size category and one `configs` entry per
dataset, so `datasets.load_dataset(folder, "multiple_choice")` loads the real files; its prose
gives provenance and licenses per source dataset, the models, the config hash, counts and
tokens, the decontamination summary and the known limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from taskseed.curation.io.packaged_models import DEFAULT, MODELS
from taskseed.curation.terms.commercial import obligations, terms_summary
from taskseed.curation.terms.dataset_licenses import load_license_policy
from taskseed.curation.terms.model_licenses import ModelTerms, load_model_licenses
from taskseed.generation.backends.catalog import ModelConfig
from taskseed.views.card.data import (
    CARD,
    DECONTAM_REPORT,
    DEDUP_STAGES,
    SMALL_MODEL,
    FinalData,
    card_metadata,
    final_data,
    hub_license,
    markers,
    read_config,
    source_rows,
    stage_folders,
)


def write_card(run_dir: Path) -> Path | None:
    """Write `README.md` beside the run's final data; its path, or None when no mix or export
    stage is done."""
    from huggingface_hub import DatasetCard, DatasetCardData

    run_dir = Path(run_dir)
    data = final_data(run_dir)
    if data is None:
        return None
    config, config_hash = read_config(run_dir)
    sources = source_rows(data.rows)
    meta = card_metadata(str(config.get("name") or run_dir.name), data, sources)
    yaml_block = DatasetCardData(**meta).to_yaml()
    body = card_body(run_dir, data, sources, config, config_hash, meta,
                     load_license_policy())
    card = DatasetCard(f"---\n{yaml_block}\n---\n\n{body}")
    path = data.folder / CARD
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(str(card), encoding="utf-8")
    tmp.replace(path)
    return path


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _count(n: int, word: str) -> str:
    return f"{n} {_plural(n, word)}"


def md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """A Markdown table; `|` and line breaks in cells are escaped."""
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def models_used(config: dict[str, Any]) -> dict[str, list[str]]:
    """The stages that call each named model (`teacher`, `judge`, ...)."""
    from taskseed.registry import stage_class

    used: dict[str, list[str]] = {}
    for entry in config.get("stages") or []:
        cls = stage_class(entry.get("name", ""))
        model = entry.get("model")
        if model is None and cls is not None and cls.calls_models:
            default = cls.params_model.model_fields.get("model")
            model = default.default if default is not None else "teacher"
        if model is not None:
            used.setdefault(str(model), []).append(entry["name"])
    return used


def packaged_of(model: dict[str, Any]) -> str | None:
    """The packaged model a model config runs (embedded, or served from `packaged:NAME`)."""
    if model.get("backend", "embedded") == "embedded":
        return None if model.get("model_path") else str(model.get("model") or DEFAULT)
    checkpoint = str((model.get("server") or {}).get("checkpoint") or "")
    return checkpoint.removeprefix("packaged:") if checkpoint.startswith("packaged:") else None


def model_label(model: dict[str, Any]) -> str:
    name = packaged_of(model)
    if name in MODELS:
        return f"{MODELS[name].title} ({MODELS[name].license}, packaged)"
    if model.get("model"):
        return str(model["model"])
    if model.get("model_path"):
        return str(model["model_path"])
    return "?"


def models_section(config: dict[str, Any], data: FinalData) -> str:
    models = {"teacher": config.get("teacher") or {"backend": "embedded"},
              **(config.get("models") or {})}
    used = models_used(config)
    rows = [[name, m.get("backend", "embedded"), model_label(m), model_terms(m).license,
             ", ".join(used.get(name, [])) or "no stage"] for name, m in models.items()]
    text = ("## Models\n\nThe teacher generates records from seed examples; judge and reward "
            "models score and filter them (scores are kept in the `scores` column).\n\n"
            + md_table(["name", "backend", "model", "license", "used by stages"], rows))
    if data.kind == "mix":
        tokenizer = data.manifest.get("tokenizer", {})
        text += ("\n\nToken counts come from the mix's tokenizer: "
                 + ", ".join(f"{k} {v}" for k, v in tokenizer.items() if v is not None) + ".")
    return text


def model_terms(model: dict[str, Any]) -> ModelTerms:
    """The terms of a model as the run's resolved config gives it."""
    try:
        return TypeAdapter(ModelConfig).validate_python(model).terms()
    except ValidationError:
        return load_model_licenses().resolve(model.get("model"), model.get("license"))


def terms_of_data(data: FinalData) -> dict[str, Any]:
    """The final data's model terms summary (from its manifest, else from its rows)."""
    return data.manifest.get("model_terms") or terms_summary(data.rows)


def model_terms_section(data: FinalData) -> str:
    summary = terms_of_data(data)
    text = ("## Model terms\n\nText a model wrote carries that model's terms. Each record's "
            "`lineage.models` lists the models whose text it contains (the generator, an "
            "enricher) with their license; judge and reward models only score and add none. "
            "A record is commercial only when its seeds' licenses are on the allowlist and "
            "every one of these models' terms allow training on its outputs "
            "(`configs/model_licenses.yaml`).")
    rows = [[m["stage"], m["model"], m["license"], m["outputs"], m["records"],
             m["source"] or "not listed"] for m in summary["models"]]
    if rows:
        text += "\n\n" + md_table(["stage", "model", "license", "training on outputs",
                                    "records", "terms read from"], rows)
    else:
        text += "\n\nNo record contains text a model wrote."
    duties = obligations(summary)
    if duties:
        text += ("\n\n**Obligations** of a model trained on this data:\n\n" + "\n".join(
            f"- {lic}: {duty}" for lic, items in duties.items() for duty in items))
    left = summary["not_commercial"]
    if left:
        text += (f"\n\n**Not commercial:** {summary['records'] - summary['commercial']} of "
                 f"{summary['records']} records (a record can have more than one reason):"
                 "\n\n" + md_table(["reason", "records"], left.items()))
    else:
        text += f"\n\nAll {summary['records']} records are commercial."
    return text


def summary_section(name: str, run_dir: Path, data: FinalData, sources: list[dict[str, Any]],
                    config_hash: str) -> str:
    records = sum(r["records"] for r in sources)
    generated = sum(r["generated"] for r in sources)
    tokens = data.manifest.get("sets", {}).get("full", {}).get("tokens")
    datasets = len({r["dataset"] for r in sources})
    lines = [
        f"# {name}",
        "",
        "Question-answer examples rendered as training text for LLM pretraining, made by "
        f"taskseed from the training {_plural(datasets, 'split')} of {datasets} public task "
        f"{_plural(datasets, 'dataset')}: {_count(records - generated, 'seed record')} and "
        f"{_count(generated, 'record')} a teacher model generated from seeds, kept by the "
        "stages under Processing.",
        "",
        f"- **Run:** `{run_dir.name}`, final stage `{data.folder.name}` ({data.kind})",
        f"- **Config hash:** `{config_hash or 'unknown'}` (the run's `config.yaml` holds the "
        "whole resolved config)",
        f"- **Records:** {records}" + (f", **tokens:** {tokens}" if tokens is not None else ""),
    ]
    return "\n".join(lines)


def subsets_section(data: FinalData) -> str:
    counted = data.kind == "mix"
    rows = [[f"`{s.name}`", s.records, *([s.tokens] if counted else []),
             ", ".join(f"`{f}`" for f in s.files)] for s in data.subsets]
    header = ["config", "records", *(["tokens"] if counted else []), "files"]
    first = data.subsets[0].name if data.subsets else "default"
    text = "## Subsets\n\n" + (md_table(header, rows) if rows
                               else "No records were kept: the subsets are empty.")
    if data.kind == "mix":
        text += ("\n\n`multiple_choice` holds multiple-choice records, `generative` every "
                 "other format; `commercial_*` subsets hold only records whose licenses allow "
                 "commercial use. Each Parquet file has a JSONL twin with the same rows, and "
                 "`manifest.json` lists every file with its sha256. Columns: `text` (the "
                 "training text), `id`, `dataset`, `task`, `family`, `format`, `license`, "
                 "`commercial`, `source`, `lineage`, `scores`, `template`, `tokens`.")
    else:
        text += ("\n\nThe export's JSONL files hold both pretraining datasets; the `mix` "
                 "column says which (`multiple_choice` or `generative`). `manifest.json` lists "
                 "every file with its sha256.")
    return (text + "\n\n```python\nfrom datasets import load_dataset\n\n"
            f'data = load_dataset("path/to/this/folder", "{first}", split="train")\n```')


def tasks_section(data: FinalData) -> str:
    if data.kind == "mix":
        rows = [[task, t["records"], t["tokens"]] for task, t in data.tasks.items()]
        return "## Tasks\n\n" + md_table(["task", "records", "tokens"], rows)
    rows = [[task, t["records"]] for task, t in data.tasks.items()]
    return "## Tasks\n\n" + md_table(["task", "records"], rows)


def sources_section(sources: list[dict[str, Any]], policy: Any) -> str:
    rows = []
    for r in sources:
        entry = policy.entry(r["dataset"], r["config"])
        where = entry.source if entry is not None and entry.license == r["license"] else None
        rows.append([r["dataset"], r["config"] or "", r["license"], where or "task spec",
                     r["format"], r["records"], r["generated"], r["commercial"]])
    return ("## Source datasets and licenses\n\nEvery record keeps the license of the dataset "
            "its seeds came from; generated records inherit it. A record is commercial only "
            "when every license it carries is on the commercial allowlist "
            "(`configs/licenses.yaml`).\n\n"
            + md_table(["source dataset", "config", "license", "license read from", "format",
                        "records", "generated", "commercial"], rows))


def processing_section(run_dir: Path) -> str:
    rows = []
    for _, folder in stage_folders(run_dir):
        done = markers(folder)
        drops: dict[str, int] = {}
        for m in done:
            for reason, n in m.rejects.items():
                drops[reason] = drops.get(reason, 0) + n
        rows.append([folder.name, len(done), sum(m.inputs for m in done),
                     sum(m.outputs for m in done),
                     ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"])
    return ("## Processing\n\nStages in run order (`taskseed inspect RUN --stage NAME "
            "--rejects` shows the dropped records and why).\n\n"
            + md_table(["stage", "shards", "in", "out", "dropped"], rows))


def _split_stats(report: dict[str, Any] | None, bench: str, split: str, key: str) -> Any:
    if not report:
        return ""
    return report.get("benchmarks", {}).get(bench, {}).get(split, {}).get(key, 0)


def decontam_report_text(folder: str, report: dict[str, Any]) -> str:
    generated, seeds = report.get("generated", {}), report.get("seeds")
    text = (f"Stage `{folder}`: {report['ngram']}-gram overlap (at least "
            f"{report['min_matches']} shared n-gram(s) with one eval item, or every word of a "
            f"short item); {generated.get('records_checked', 0)} records checked, "
            f"{generated.get('records_dropped', 0)} dropped.")
    rows = [[e["benchmark"], e["split"], e.get("items", ""), e.get("source", ""),
             _split_stats(generated, e["benchmark"], e["split"], "eval_items_matched"),
             _split_stats(generated, e["benchmark"], e["split"], "records_dropped"),
             _split_stats(seeds, e["benchmark"], e["split"], "seed_records")]
            for e in report.get("indexed", [])]
    text += "\n\nBenchmarks indexed, with matches and drops:\n\n" + md_table(
        ["benchmark", "split", "eval items", "read from", "eval items matched",
         "records dropped", "seed records overlapping"], rows)
    missing = report.get("not_indexed", [])
    if missing:
        text += "\n\nNot indexed (not checked):\n\n" + md_table(
            ["benchmark", "split", "why"], [[e["benchmark"], e["split"], e["reason"]]
                                            for e in missing])
    return text


def decontam_reports(folders: list[tuple[str, Path]]) -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads((p / DECONTAM_REPORT).read_text()))
            for _, p in folders if (p / DECONTAM_REPORT).exists()]


def semantic_drops(folders: list[tuple[str, Path]]) -> list[tuple[str, int]]:
    return [(p.name, sum(sum(m.rejects.values()) for m in markers(p)))
            for name, p in folders if name == "semantic_decontam"]


def decontam_section(folders: list[tuple[str, Path]]) -> str:
    reports, semantic = decontam_reports(folders), semantic_drops(folders)
    if not reports and not semantic:
        return ("## Decontamination\n\nNo decontamination stage ran: the data was not checked "
                "against held-out benchmark splits.")
    parts = [decontam_report_text(folder, report) for folder, report in reports]
    parts += [f"Stage `{folder}`: embedding similarity (all-MiniLM-L6-v2) to held-out items; "
              f"{dropped} records dropped." for folder, dropped in semantic]
    return "## Decontamination\n\n" + "\n\n".join(parts)


def limits_section(config: dict[str, Any], sources: list[dict[str, Any]],
                   folders: list[tuple[str, Path]], data: FinalData) -> str:
    bullets = []
    models = {"teacher": config.get("teacher") or {}, **(config.get("models") or {})}
    used = models_used(config)
    small = {n: packaged_of(m) for n, m in models.items() if n in used}
    for name in sorted({p for p in small.values() if p in MODELS}):
        users = ", ".join(n for n, p in small.items() if p == name)
        bullets.append(f"**Small model.** {users}: {MODELS[name].title}. {SMALL_MODEL[name]}")
    total = sum(r["records"] for r in sources)
    closed = total - sum(r["commercial"] for r in sources)
    odd: dict[str, int] = {}
    for r in sources:
        if r["license"].lower() in ("unknown", "other") or hub_license(r["license"]) is None:
            odd[r["license"]] = odd.get(r["license"], 0) + r["records"]
    text = (f"**Licenses.** {closed} of {total} records are not cleared for commercial use. "
            "Licenses are recorded per source dataset (task specs and `configs/licenses.yaml`), "
            "not checked row by row upstream: check them before redistributing.")
    if odd:
        text += " Licenses without a standard id or unknown: " + ", ".join(
            f"{k} ({v} records)" for k, v in sorted(odd.items())) + "."
    bullets.append(text)
    reports = decontam_reports(folders)
    if reports or semantic_drops(folders):
        ngram = ", ".join(sorted({f"{r['ngram']}-gram" for _, r in reports})) or "no n-gram"
        semantic = ("an embedding pass ran too, but close paraphrases below its threshold "
                    "remain" if semantic_drops(folders) else "no embedding (semantic) pass ran")
        bullets.append(
            f"**Decontamination.** The {ngram} and near-copy checks find copied text and "
            "light edits of it (a word changed, dropped or added, options shuffled or "
            "reworded); paraphrases, translations and items with changed numbers slip "
            f"through ({semantic}). Only the splits listed as indexed were checked; benchmarks "
            "outside the task catalog and the splits not indexed were not.")
    else:
        bullets.append("**Decontamination.** None ran: records may copy benchmark test items.")
    if any(name in DEDUP_STAGES for name, _ in folders):
        bullets.append("**Deduplication** is within this run only; overlap with other "
                       "corpora is not checked.")
    else:
        bullets.append("**Deduplication.** None ran: records may repeat.")
    tokenizer = data.manifest.get("tokenizer", {})
    if tokenizer.get("kind") == "estimate":
        bullets.append(f"**Token counts** are estimates ({tokenizer.get('chars_per_token')} "
                       "characters per token), not a model tokenizer's counts.")
    return "## Known limits\n\n" + "\n".join(f"- {b}" for b in bullets)


def card_body(run_dir: Path, data: FinalData, sources: list[dict[str, Any]],
              config: dict[str, Any], config_hash: str, meta: dict[str, Any],
              policy: Any) -> str:
    """The card's Markdown below the YAML block."""
    folders = stage_folders(run_dir)
    parts = [
        summary_section(meta["pretty_name"], run_dir, data, sources, config_hash),
        subsets_section(data),
        tasks_section(data),
        sources_section(sources, policy),
        models_section(config, data),
        model_terms_section(data),
        processing_section(run_dir),
        decontam_section(folders),
        limits_section(config, sources, folders, data),
    ]
    return "\n\n".join(parts) + "\n"
