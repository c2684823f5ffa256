"""What a run directory holds, gathered for the report: counts per stage and task, drops,
scores with their thresholds, lengths, contamination, duplicates, licenses, model usage
and sample records.

Everything is read from the run directory alone (config.yaml, stage folders, done markers,
rejects, summary.json, acceptance.json, decontamination.json, the mix manifest). Columns
are read selectively with pyarrow; whole records are read only for the samples.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from taskseed.curation.terms.commercial import terms_summary
from taskseed.views.report.loaders import (
    find_decontamination,
    load_drop_samples,
    load_duplicates,
    load_lengths,
    load_licenses,
    load_samples,
    load_scores,
    load_usage,
)
from taskseed.views.report.model import (
    ReportData,
    ScoreSeries,
    StageInfo,
    _read_json,
    _read_yaml,
    _value_counts,
    check_run_dir,
    load_stages,
    pick_final,
    pick_seeds,
    task_families,
)

__all__ = ["ReportData", "ScoreSeries", "headline", "load_report_data", "load_stages",
           "task_rows"]


def load_report_data(run_dir: Path, samples: int = 3) -> ReportData:
    """Everything the report shows about `run_dir`."""
    check_run_dir(run_dir)
    config = _read_yaml(run_dir / "config.yaml")
    stages = load_stages(run_dir, config)
    final, seeds = pick_final(stages), pick_seeds(stages)
    task_counts = {s.label: _value_counts(s.files(), "task") if "task" in s.columns
                   else Counter() for s in stages}
    mix = next((s for s in stages if (s.dir.path / "manifest.json").exists()), None)
    manifest = _read_json(mix.dir.path / "manifest.json") if mix else None
    licenses, license_source = load_licenses(manifest, final)
    model_terms = (manifest or {}).get("model_terms") or terms_summary(
        final.files() if final else [])
    usage, usage_by_task, priced = load_usage(stages, config)
    return ReportData(
        run_dir=run_dir, config=config, summary=_read_json(run_dir / "summary.json"),
        acceptance=_read_json(run_dir / "acceptance.json"), stages=stages,
        families=task_families(stages), task_counts=task_counts, final=final, seeds=seeds,
        scores=load_scores(stages), lengths=load_lengths(seeds, final),
        decontamination=find_decontamination(run_dir),
        duplicates=load_duplicates(stages, seeds, samples), licenses=licenses,
        license_source=license_source, model_terms=model_terms, usage=usage,
        usage_by_task=usage_by_task,
        priced=priced, manifest=manifest, samples=load_samples(final, seeds, samples),
        drop_samples=load_drop_samples(stages, samples))


# --- headline numbers -----------------------------------------------------------------------

def _stage(data: ReportData, name: str) -> StageInfo | None:
    return next((s for s in data.stages if s.name == name), None)


def task_rows(data: ReportData) -> list[dict[str, Any]]:
    """Per task: family, seeds, candidates, final records, and the accept target."""
    seeds = data.task_counts.get(data.seeds.label, Counter()) if data.seeds else Counter()
    generate = _stage(data, "generate")
    candidates: Counter[str] = Counter()
    if generate is not None:
        for key, value in generate.counters.items():
            name, _, task = key.partition(":")
            if name == "candidates" and task:
                candidates[task] += value
    final: Counter[str] = Counter()
    if data.final is not None:
        final = _value_counts(data.final.files(), "task", ("origin", "generated"))
    accept = (data.acceptance or {}).get("tasks", {})
    tasks = sorted(set(seeds) | set(candidates) | set(final) | set(accept))
    return [{"task": t, "family": data.families.get(t, "?"), "seeds": seeds.get(t, 0),
             "candidates": candidates.get(t, 0), "final": final.get(t, 0),
             "accepted": accept.get(t, {}).get("accepted"),
             "target": accept.get(t, {}).get("target")} for t in tasks]


def headline(data: ReportData) -> list[tuple[str, str, str]]:
    """(label, value, note) of the numbers a reader needs first."""
    out: list[tuple[str, str, str]] = []
    raw = _stage(data, "seeds")
    if data.seeds is not None:
        note = f"from {raw.outputs:,} seed rows" if raw is not None and raw is not data.seeds \
            else ""
        out.append(("seed records", f"{data.seeds.outputs:,}", note))
    generate = _stage(data, "generate")
    made = generate.outputs + sum(generate.rejects.values()) if generate is not None else 0
    if generate is not None:
        out.append(("generated candidates", f"{made:,}",
                    f"{generate.counters.get('planned', 0):,} teacher requests planned"))
    if data.final is not None:
        kept = data.final.outputs
        share = f"{kept / made:.0%} of candidates kept" if made else ""
        out.append((f"records out ({data.final.label})", f"{kept:,}", share))
    after = [s for s in data.stages if generate is None or s.index >= generate.index]
    dropped = sum(sum(s.rejects.values()) for s in after)
    reasons = len({r for s in after for r in s.rejects})
    out.append(("records dropped", f"{dropped:,}", f"{reasons} reasons"))
    if data.decontamination is not None:
        gen = data.decontamination.get("generated", {})
        seeds = data.decontamination.get("seeds") or {}
        out.append(("eval contamination", f"{gen.get('records_dropped', 0):,}",
                    f"of {gen.get('records_checked', 0):,} records dropped; "
                    f"{seeds.get('records_overlapping', 0):,} seeds overlap"))
    calls = sum(u.calls for u in data.usage)
    tokens = sum(u.prompt_tokens + u.completion_tokens for u in data.usage)
    out.append(("model tokens", f"{tokens:,}", f"{calls:,} model calls"))
    cost = sum(u.usd or 0.0 for u in data.usage)
    out.append(("cost", f"${cost:,.4f}" if data.priced else "n/a",
                "at the config's prices" if data.priced else "the config sets no prices"))
    if data.manifest is not None:
        sets = data.manifest.get("sets", {})
        full = sets.get("full", {})
        note = f"{full.get('tokens', 0):,} tokens"
        if "commercial" in sets:
            note += f"; commercial subset {sets['commercial'].get('records', 0):,} records"
        out.append(("mix records", f"{full.get('records', 0):,}", note))
    return out
