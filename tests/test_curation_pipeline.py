"""Curation end to end on the local executor: decontamination, fuzzy dedup and the mix.

A task's training file is built from real GSM8K rows of ../shared/seeds, with planted
held-out test items (verbatim and lightly edited) and near-duplicates of its own rows. The
pipeline must drop exactly the planted ones, and give the same datasets however the input
is partitioned, and nothing new on a rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_cluster import wait_for_jobs

from taskseed.execution.run import run_pipeline

REPO = Path(__file__).resolve().parents[1]

SPEC = """name: leaky_math
family: leaky_math
format: math
license: MIT
source: {dataset: demo/leaky_math}
scored_split: test
train: {split: train, files: [leaky.jsonl], mapping: {question: question, answer: answer,
        final_answer_marker: "####"}}
"""

PIPE = """name: curation
run_dir: {run}
seeds_root: seeds
tasks: [leaky.yaml]
executor: {{workers: {workers}}}
stages:
  - {{name: seeds, rows_per_shard: {rows}}}
  - {{name: normalize}}
  - {{name: decontaminate, eval_specs: ["{repo}/configs/tasks/gsm8k.yaml"]}}
  - {{name: exact_dedup, shards: {shards}}}
  - {{name: fuzzy_dedup, shards: {shards}}}
  - {{name: mix, include_seeds: true, shards: {shards}, shard_records: 7,
      commercial_subset: true}}
"""

TRAIN = 30
# GSM8K's own training row 20 (Bella's stamps) is test row 632 (Max's stamps) with the names
# and numbers changed: it shares 13-grams, and is dropped too.
REAL_OVERLAP = 632
EDITS = [
    ("verbatim", lambda q: q),
    ("lowercase", str.lower),
    ("no_punctuation", lambda q: re.sub(r"[?.,!]", "", q)),
]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, seeds_root: Path) -> dict:
    root = tmp_path_factory.mktemp("curation")
    seeds = root / "seeds"
    seeds.mkdir()
    (seeds / "gsm8k").symlink_to(seeds_root / "gsm8k")
    train = _rows(seeds_root / "gsm8k" / "train.jsonl")[:TRAIN]
    test = _rows(seeds_root / "gsm8k" / "test.jsonl")
    leaks = {i: edit for i, (_, edit) in zip((5, 77, 400), EDITS, strict=True)}
    rows = list(train)
    rows += [{"question": edit(test[i]["question"]), "answer": test[i]["answer"]}
             for i, edit in leaks.items()]
    near = []
    for i in (2, 11):
        words = train[i]["question"].split()
        words[len(words) // 2] = "several"
        near.append(i)
        rows.append({"question": " ".join(words), "answer": train[i]["answer"]})
    (seeds / "leaky.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "leaky.yaml").write_text(SPEC)
    return {"root": root, "leaks": sorted(leaks), "near": near, "rows": len(rows)}


def _run(planted: dict, name: str, workers: int, rows: int, shards: int) -> Path:
    root = planted["root"]
    config = root / f"{name}.yaml"
    run = root / name
    config.write_text(PIPE.format(run=run, workers=workers, rows=rows, shards=shards,
                                  repo=REPO))
    run_pipeline(config, progress=lambda line: None)
    return run


def _rejects(run: Path, stage: str) -> list[dict]:
    folder = next((run / "stages").glob(f"*-{stage}"))
    return [r for p in sorted((folder / "rejects").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()]


def _datasets(run: Path) -> dict[str, str]:
    mix = next((run / "stages").glob("*-mix"))
    return {str(p.relative_to(mix)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(mix.rglob("*")) if p.is_file()
            and p.relative_to(mix).parts[0] in {"multiple_choice", "generative", "commercial"}}


@pytest.fixture(scope="module")
def one(planted: dict) -> Path:
    return _run(planted, "one", workers=1, rows=100, shards=1)


def test_planted_eval_items_are_dropped_with_their_source(planted, one):
    drops = _rejects(one, "decontaminate")
    assert len(drops) == len(planted["leaks"]) + 1
    assert {r["reason"] for r in drops} == {"eval_overlap"}
    named = sorted(int(m) for r in drops for m in re.findall(r"gsm8k/test/(\d+)", r["detail"]))
    assert named == sorted([*planted["leaks"], REAL_OVERLAP])
    report = json.loads(next((one / "stages").glob("*-decontaminate")).joinpath(
        "decontamination.json").read_text())
    assert json.dumps(report).count("gsm8k") >= 1


def test_near_duplicates_are_dropped_once_each(planted, one):
    drops = _rejects(one, "fuzzy_dedup")
    assert len(drops) == len(planted["near"])
    assert {r["reason"] for r in drops} == {"near_duplicate"}


def test_the_mix_holds_every_survivor_once(planted, one):
    mix = next((one / "stages").glob("*-mix"))
    lines = [json.loads(x) for p in sorted(mix.glob("generative/part-*.jsonl"))
             for x in p.read_text().splitlines()]
    expected = planted["rows"] - len(planted["leaks"]) - 1 - len(planted["near"])
    assert len(lines) == expected and len({line["id"] for line in lines}) == expected
    assert all(len(p.read_text().splitlines()) <= 7 for p in mix.glob("generative/*.jsonl"))
    manifest = json.loads((mix / "manifest.json").read_text())
    assert manifest["sets"]["full"]["records"] == expected
    assert manifest["sets"]["commercial"]["records"] == expected  # MIT
    assert not any(re.search(r"\banswer is [A-D]\b", line["text"]) for line in lines)


def test_many_partitions_and_workers_give_the_same_datasets(planted, one):
    many = _run(planted, "many", workers=2, rows=4, shards=3)
    assert _datasets(one) and _datasets(many) == _datasets(one)


def test_a_rerun_changes_nothing(planted, one):
    before = _datasets(one)
    config = planted["root"] / "one.yaml"
    summary = run_pipeline(config, progress=lambda line: None)
    assert all(s["shards_run"] == 0 for s in summary["stages"])
    assert _datasets(one) == before


def test_slurm_arrays_give_the_same_datasets(planted, one, cluster):
    root = planted["root"]
    config = root / "slurm.yaml"
    run = root / "slurm-run"
    config.write_text(PIPE.format(run=run, workers=1, rows=10, shards=2, repo=REPO))
    done = subprocess.run(
        [sys.executable, "-m", "taskseed.slurm", "submit", str(config), "--max-parallel", "2"],
        cwd=root, capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    jobs = re.findall(r"^submitted (\S+): job (\d+)$", done.stdout, flags=re.MULTILINE)
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=240)
    assert (run / "summary.json").exists(), "\n".join(
        p.read_text()[-1500:] for p in sorted((run / "logs").glob("*.out")))
    # every array task of decontaminate loaded the one index the first one built
    assert len(list((run / "index").glob("decontam-*.npz"))) == 1
    assert _datasets(run) == _datasets(one)
