"""Generate until N accepted, locally and on a real one-node Slurm, against a loopback teacher.

The teacher is the loopback OpenAI-compatible server; a third of its replies are
placeholders that the heuristics drop, so each task needs several rounds to reach its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import xxhash
from slurm_cluster import SlurmCluster
from taskseed.generation.servers.fake import FakeOpenAIServer

from taskseed.execution.run import run_pipeline

TARGET = 3

PIPE = """name: accepttest
run_dir: {run}
seeds_root: seeds
tasks: [trivia.yaml, science.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: "{url}", model: fake, max_retries: 1}}
accept: {{target: {target}, max_candidates: 16, max_rounds: 8}}
stages:
  - {{name: seeds, rows_per_shard: 20}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: 2, groups_per_shard: 1}}
  - {{name: heuristics}}
  - {{name: exact_dedup, shards: 1}}
  - {{name: export}}
"""

SPEC = """name: {name}
family: {name}
format: free_form
license: MIT
source: {{dataset: demo/{name}}}
scored_split: test
train: {{split: train, files: [{name}.jsonl], mapping: {{question: q, answer: a}}}}
"""

TOPICS = {
    "trivia": ["river", "mountain", "island", "desert", "harbour", "valley"],
    "science": ["magnet", "battery", "glacier", "volcano", "enzyme", "crystal"],
}


def reply(body: dict[str, Any]) -> str:
    """A deterministic reply per request: a placeholder for a third of them, else a new
    question (distinct per request)."""
    key = xxhash.xxh64_intdigest(json.dumps(body, sort_keys=True).encode())
    if key % 3 == 0:
        return json.dumps({"question": "question_type", "answer": "answer_text"})
    word = ["lantern", "harvest", "compass", "orchard", "canyon", "meadow"][key % 6]
    return json.dumps({
        "question": f"Which everyday clue would help a traveller find the {word} number "
                    f"{key % 100000} before sunset?",
        "answer": f"Follow the {word} signs posted along the main road.",
    })


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeOpenAIServer(responder=reply) as srv:
        yield srv


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, server: FakeOpenAIServer) -> Path:
    root = tmp_path_factory.mktemp("accept-config")
    (root / "seeds").mkdir()
    for name, words in TOPICS.items():
        rows = [{"q": f"Where would you most likely see a {w} on a long walk?",
                 "a": f"You would see a {w} near the old trail."} for w in words]
        (root / "seeds" / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
        (root / f"{name}.yaml").write_text(SPEC.format(name=name))
    path = root / "pipe.yaml"
    path.write_text(PIPE.format(run=root / "run", url=server.base_url, target=TARGET))
    return path


def exported(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for f in sorted(run.glob("stages/*-export/part-*.jsonl"))
            for line in f.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def local(config: Path, server: FakeOpenAIServer) -> tuple[Path, dict[str, Any], int]:
    run = config.parent / "local-run"
    summary = run_pipeline(config, run_dir=run, progress=lambda line: None)
    return run, summary, server.count


def test_every_task_reaches_its_target_over_several_rounds(local):
    run, summary, _ = local
    acceptance = json.loads((run / "acceptance.json").read_text())
    assert acceptance["rounds"] >= 2
    for task, row in acceptance["tasks"].items():
        assert TARGET <= row["accepted"] <= TARGET + 2, (task, row)  # one batch is 2 candidates
        assert row["rounds"] >= 2 and row["candidates"] <= 16
    per_task = Counter(r["task"] for r in exported(run))
    assert per_task == {t: acceptance["tasks"][t]["accepted"] for t in TOPICS}
    assert summary["acceptance"] == acceptance["tasks"]


def test_rerun_makes_no_request_and_changes_nothing(local, config, server):
    run, _, requests = local
    before = exported(run)
    run_pipeline(config, run_dir=run, progress=lambda line: None)
    assert server.count == requests
    assert exported(run) == before


@pytest.fixture(scope="module")
def slurm(cluster: SlurmCluster, config: Path, local) -> Path:
    run = config.parent / "slurm-run"
    done = subprocess.run(
        [sys.executable, "-m", "taskseed.slurm", "submit", str(config), "--run-dir", str(run)],
        capture_output=True, text=True, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 240
    while not (run / "summary.json").exists():
        failed = [p for p in (run / "logs").glob("*.out") if "Traceback" in p.read_text()]
        assert not failed, failed[0].read_text()
        assert time.monotonic() < deadline, subprocess.run(
            ["squeue"], capture_output=True, text=True, env=cluster.env).stdout
        time.sleep(1)
    return run


def test_slurm_runs_every_round_as_array_jobs(slurm, local):
    jobs = [j["label"] for j in json.loads((slurm / "logs" / "slurm-jobs.json").read_text())
            ["jobs"]]
    rounds = json.loads((slurm / "acceptance.json").read_text())["rounds"]
    assert rounds >= 2
    # seeds and normalize once; one fused generate+heuristics array job per round; then
    # dedup on its Dask cluster and export after the loop
    assert jobs.count("01-seeds..02") == 1
    assert jobs.count("03-generate..04") == rounds
    assert jobs.count("05-exact_dedup") == 1 and jobs.count("06-export") == 1
    assert jobs.index("05-exact_dedup") > max(
        i for i, j in enumerate(jobs) if j == "03-generate..04")
    assert jobs.count("finish") == rounds + 1


def test_slurm_run_equals_local_run(slurm, local):
    run, _, _ = local
    assert exported(slurm) == exported(run)
    assert (json.loads((slurm / "acceptance.json").read_text())
            == json.loads((run / "acceptance.json").read_text()))
