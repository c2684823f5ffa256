"""The README's quickstart, end to end, with the packaged default model on llama-server.

Its output quality is the point here: with the rubric's default thresholds it must export at
least 10 records over at least 4 formats."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.record import Origin, Record

pytestmark = pytest.mark.slow


def shard_digests(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run / "stages").rglob("*"))
        if p.is_file()
    }


def taskseed(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taskseed.cli.main", *args],
        cwd=repo, capture_output=True, text=True, timeout=1800,
    )


@pytest.fixture(scope="module")
def quickstart(repo, tmp_path_factory):
    run = tmp_path_factory.mktemp("qs") / "run"
    proc = taskseed(repo, "run", "configs/quickstart.yaml", "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run, proc


def test_writes_nonempty_shards_with_lineage_and_license(quickstart):
    run, proc = quickstart
    mix = next((run / "stages").glob("*-mix"))
    records = [r for p in sorted(mix.glob("part-*.parquet")) for r in read_parquet(p, Record)]
    assert records, proc.stderr[-2000:]
    for record in records:
        assert record.origin is Origin.GENERATED
        assert record.license == "Apache-2.0" and record.commercial
        assert record.lineage.teacher_model == "qwen2.5-coder-1.5b-instruct-q4_k_m"
        assert len(record.lineage.seed_ids) >= 1
        assert record.lineage.prompt_template.endswith(".j2") and record.lineage.prompt_hash
        assert record.lineage.sampling is not None
        assert record.source.dataset == "taskseed/quickstart"
    lines = [json.loads(x) for p in sorted(mix.glob("*/part-*.jsonl")) for x in p.open()]
    assert len(lines) == len(records)
    assert all(line["text"].strip() and line["lineage"]["seed_ids"] for line in lines)
    assert {line["dataset"] for line in lines} <= {"multiple_choice", "generative"}
    manifest = json.loads((mix / "manifest.json").read_text())
    assert manifest["sets"]["full"]["records"] == len(records)
    assert manifest["sets"]["commercial"]["records"] == len(records)  # all Apache-2.0


def test_summary_counts_every_stage_and_drop(quickstart):
    run, proc = quickstart
    summary = json.loads((run / "summary.json").read_text())
    names = [s["name"] for s in summary["stages"]]
    assert names == [
        "seeds", "normalize", "generate", "validity", "heuristics", "verify", "fact_check",
        "self_consistency", "llm_judge", "enrich", "heuristics", "exact_dedup", "fuzzy_dedup",
        "mix",
    ]
    gen = summary["stages"][2]
    assert gen["counters_this_run"]["teacher_calls"] > 0
    enrich = summary["stages"][names.index("enrich")]
    asked = enrich["counters_this_run"]
    # every input is asked at least once, unless it has its fields already; identical
    # prompts are answered from the cache
    assert asked["teacher_calls"] + asked.get("cache_hits", 0) + asked.get(
        "enrich_skipped", 0) >= enrich["inputs"] > 0
    model_stages = [s for s in summary["stages"] if "teacher_calls" in s["counters_this_run"]]
    assert {s["name"] for s in model_stages} >= {"generate", "fact_check", "llm_judge",
                                                 "enrich"}
    assert summary["teacher_calls_this_run"] == sum(
        s["counters_this_run"]["teacher_calls"] for s in model_stages)
    assert summary["acceptance"] and all(
        t["candidates"] <= 12 + 4 for t in summary["acceptance"].values())
    for stage in summary["stages"][1:]:
        assert stage["inputs"] == stage["outputs"] + sum(stage["rejects"].values()) or (
            stage["name"] in {"generate", "mix"}
        )
    assert "teacher calls this run" in proc.stdout


def test_exports_ten_records_over_four_formats_with_default_thresholds(repo, quickstart):
    run, proc = quickstart
    config = (repo / "configs" / "quickstart.yaml").read_text()
    assert "thresholds" not in config  # the rubric's defaults (judges/rubrics/default.yaml)
    mix = next((run / "stages").glob("*-mix"))
    records = [r for p in sorted(mix.glob("part-*.parquet")) for r in read_parquet(p, Record)]
    formats = {r.format for r in records}
    assert len(records) >= 10 and len(formats) >= 4, (len(records), formats)
    assert "[serve] teacher, judge: llama-server on http://127.0.0.1:" in proc.stdout + proc.stderr
    assert len(list((run / "logs").glob("server-*.log"))) == 1  # one server for both


def test_second_run_makes_no_teacher_calls_and_changes_nothing(repo, quickstart):
    run, _ = quickstart
    before = shard_digests(run)
    proc = taskseed(repo, "run", "configs/quickstart.yaml", "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["teacher_calls_this_run"] == 0
    assert all(s["shards_run"] == 0 for s in summary["stages"])
    assert "teacher calls this run: 0" in proc.stdout
    assert shard_digests(run) == before
