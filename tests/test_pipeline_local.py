"""The local Dask executor on real seed data: shards, markers, rejects, resume."""

import hashlib
import json
from pathlib import Path

import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.record import Record, Reject

from taskseed.execution.run import run_pipeline

PIPE = """name: seeds-only
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/gsm8k.yaml, {tasks}/arc_easy.yaml, {tasks}/commonsense_qa.yaml]
executor: {{workers: 2}}
stages:
  - {{name: seeds, max_per_task: {limit}, rows_per_shard: 40}}
  - {{name: normalize}}
  - {{name: validity}}
  - {{name: exact_dedup, shards: 2}}
  - {{name: export, include_seeds: true}}
"""


def write(tmp_path: Path, repo: Path, seeds: Path, limit: int = 100) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(
        PIPE.format(run=tmp_path / "run", seeds=seeds, tasks=repo / "configs" / "tasks",
                    limit=limit)
    )
    return path


def digests(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix in {".parquet", ".jsonl", ".done"}
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, repo, seeds_root):
    tmp = tmp_path_factory.mktemp("pipe")
    config = write(tmp, repo, seeds_root)
    summary = run_pipeline(config, progress=lambda line: None)
    return config, tmp / "run", summary


def test_counts_per_stage(finished):
    _, run, summary = finished
    stages = {s["name"]: s for s in summary["stages"]}
    assert list(stages) == ["seeds", "normalize", "validity", "exact_dedup", "export"]
    assert stages["seeds"]["outputs"] == 300
    assert stages["seeds"]["shards"] == 9
    # two of these seeds repeat an option and are refused
    assert stages["normalize"]["rejects"] == {"duplicate_choices": 2}
    assert stages["normalize"]["outputs"] == 298
    kept = stages["validity"]["outputs"]
    assert kept + sum(stages["validity"]["rejects"].values()) == 298
    assert stages["export"]["outputs"] == stages["exact_dedup"]["outputs"]
    lines = (run / "summary.txt").read_text().splitlines()
    assert len(lines) == 7  # the header, one line per stage, the commercial count
    assert lines[-1] == f"commercial: {stages['export']['outputs']} of " \
        f"{stages['export']['outputs']} records"
    assert json.loads((run / "summary.json").read_text())["config_hash"] == (
        (run / "config.hash").read_text().strip()
    )


def test_run_directory_layout(finished):
    _, run, _ = finished
    for stage in ["01-seeds", "02-normalize", "03-validity", "04-exact_dedup", "05-export"]:
        folder = run / "stages" / stage
        parts = sorted(folder.glob("part-*.parquet"))
        assert parts and all(p.with_suffix(".done").exists() for p in parts)
        assert (folder / "rejects").is_dir()
    assert (run / "config.yaml").exists()


def test_records_carry_source_split_and_license(finished):
    _, run, _ = finished
    records = [r for p in sorted((run / "stages" / "02-normalize").glob("*.parquet"))
               for r in read_parquet(p, Record)]
    by_task = {r.task: r for r in records}
    assert by_task["gsm8k"].source.dataset == "openai/gsm8k"
    assert by_task["gsm8k"].source.path == "gsm8k/train.jsonl"
    assert by_task["arc_easy"].license == "CC-BY-SA-4.0"
    assert all(r.source.split == "train" for r in records)
    assert all(r.answer and r.answer not in {"A", "B", "C", "D", "E"} for r in records
               if r.choices)


def test_export_writes_jsonl_parquet_and_manifest(finished):
    _, run, summary = finished
    export = run / "stages" / "05-export"
    manifest = json.loads((export / "manifest.json").read_text())
    exported = summary["stages"][-1]["outputs"]
    assert manifest["totals"]["records"] == exported
    lines = [json.loads(line) for p in sorted(export.glob("*.jsonl")) for line in p.open()]
    assert len(lines) == exported
    assert {line["mix"] for line in lines} == {"multiple_choice", "generative"}
    first = lines[0]
    assert first["text"].startswith(("Question:",)) and "Answer:" in first["text"]
    assert {"license", "source", "lineage", "commercial"} <= set(first)
    for entry in manifest["files"]:
        digest = hashlib.sha256((export / entry["path"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"]


def test_rerun_redoes_nothing(finished):
    config, run, _ = finished
    before = digests(run)
    summary = run_pipeline(config, progress=lambda line: None)
    assert all(s["shards_run"] == 0 for s in summary["stages"])
    assert digests(run) == before


def test_rerun_finishes_only_missing_shards(finished):
    config, run, _ = finished
    folder = run / "stages" / "02-normalize"
    (folder / "part-00003.done").unlink()
    (folder / "part-00003.parquet").unlink()
    summary = run_pipeline(config, progress=lambda line: None)
    ran = {s["name"]: s["shards_run"] for s in summary["stages"]}
    assert ran["seeds"] == 0 and ran["normalize"] == 1
    assert ran["validity"] == 0


def test_changed_config_is_refused_on_the_same_run_dir(finished, tmp_path):
    config, run, _ = finished
    changed = tmp_path / "changed.yaml"
    changed.write_text(config.read_text().replace("rows_per_shard: 40", "rows_per_shard: 50"))
    with pytest.raises(TaskseedError, match="different config for stage 'seeds'"):
        run_pipeline(changed, progress=lambda line: None)


def test_exact_dedup_drops_duplicates_with_reason(tmp_path, repo):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    rows = [
        {"q": "What is the capital of France?", "a": "Paris"},
        {"q": "what is the capital of France", "a": "paris."},
        {"q": "What is the capital of Spain?", "a": "Madrid"},
        {"q": "What is the capital of France? ", "a": "Paris"},  # not the same seed row
    ]
    (seeds / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "caps.yaml").write_text(
        "name: caps\nfamily: caps\nformat: free_form\nlicense: MIT\n"
        "source: {dataset: demo/caps}\nscored_split: test\n"
        "train: {split: train, files: [caps.jsonl], mapping: {question: q, answer: a}}\n"
    )
    (tmp_path / "pipe.yaml").write_text(
        f"name: caps\nrun_dir: {tmp_path / 'run'}\nseeds_root: seeds\ntasks: [caps.yaml]\n"
        "stages:\n  - {name: seeds, rows_per_shard: 2}\n  - {name: normalize}\n"
        "  - {name: exact_dedup, shards: 3}\n"
    )
    summary = run_pipeline(tmp_path / "pipe.yaml", progress=lambda line: None)
    dedup = summary["stages"][-1]
    assert dedup["inputs"] == 4 and dedup["outputs"] == 2
    assert dedup["rejects"] == {"duplicate": 2}
    folder = tmp_path / "run" / "stages" / "03-exact_dedup" / "rejects"
    rejects = [r for p in folder.glob("*.parquet") for r in read_parquet(p, Reject)]
    assert all(r.detail.startswith("same normalized text as ") for r in rejects)
