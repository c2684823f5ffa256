"""A new filter stage is one module plus one registration line; it runs locally and on Slurm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_cluster import SlurmCluster, wait_for_jobs

PLUGIN = '''"""Drops records whose answer is longer than a limit."""

from taskseed.curation.record import Record
from taskseed.curation.stage import KEEP, FilterStage, StageParams, Verdict, drop
from taskseed.registry import register_stage


class ShortAnswerParams(StageParams):
    max_answer_chars: int = 5


class ShortAnswers(FilterStage[ShortAnswerParams]):
    name = "short_answers"
    params_model = ShortAnswerParams

    def check(self, record: Record) -> Verdict:
        if len(record.answer) > self.params.max_answer_chars:
            return drop("answer_too_long", f"{len(record.answer)} chars")
        return KEEP


register_stage(ShortAnswers)
'''

PIPE = """name: plugin
run_dir: {run}
seeds_root: .
tasks: [capitals.yaml]
plugins: [short_answers]
executor: {{workers: 2}}
stages:
  - {{name: seeds, rows_per_shard: 3}}
  - {{name: normalize}}
  - {{name: short_answers, max_answer_chars: 6}}
  - {{name: export, include_seeds: true}}
"""

SPEC = """name: capitals
family: capitals
format: free_form
license: MIT
source: {dataset: demo/capitals}
scored_split: test
train: {split: train, files: [capitals.jsonl], mapping: {question: q, answer: a}}
"""

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
            ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Kenya", "Nairobi"),
            ("Egypt", "Cairo")]
LONG = {"Canberra", "Nairobi"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    (root / "plugins").mkdir()
    (root / "plugins" / "short_answers.py").write_text(PLUGIN)
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    (root / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "capitals.yaml").write_text(SPEC)
    (root / "pipe.yaml").write_text(PIPE.format(run=root / "default-run"))
    return root


def plugin_env(root: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(root / "plugins"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def taskseed(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", *args], cwd=root,
                          env=plugin_env(root), capture_output=True, text=True, timeout=300)


def stage_rows(run: Path, folder: str) -> list[dict]:
    parts = sorted((run / "stages" / folder).glob("part-*.parquet"))
    rows = [row for p in parts for row in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: r["id"])


def rejects(run: Path, folder: str) -> list[dict]:
    parts = sorted((run / "stages" / folder / "rejects").glob("*.parquet"))
    return [row for p in parts for row in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def local_run(workspace: Path) -> Path:
    run = workspace / "local-run"
    proc = taskseed(workspace, "run", "pipe.yaml", "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def test_local_executor_runs_the_plugin_filter(local_run: Path) -> None:
    summary = json.loads((local_run / "summary.json").read_text())
    stage = {s["name"]: s for s in summary["stages"]}["short_answers"]
    assert (stage["inputs"], stage["outputs"]) == (8, 6)
    assert stage["rejects"] == {"answer_too_long": 2}
    dropped = rejects(local_run, "03-short_answers")
    assert sorted(json.loads(r["item"])["answer"] for r in dropped) == sorted(LONG)
    assert {r["stage"] for r in dropped} == {"short_answers"}
    assert all(r["detail"] in {"8 chars", "7 chars"} for r in dropped)
    kept = {r["answer"] for r in stage_rows(local_run, "04-export")}
    assert kept == {a for _, a in CAPITALS} - LONG


def test_unregistered_plugin_is_a_one_line_error(workspace: Path, tmp_path: Path) -> None:
    config = workspace / "missing.yaml"
    config.write_text((workspace / "pipe.yaml").read_text().replace(
        "plugins: [short_answers]", "plugins: [no_such_plugin]"))
    proc = taskseed(workspace, "check", str(config))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "taskseed: error: plugin 'no_such_plugin' cannot be imported: "
        "No module named 'no_such_plugin'"]


def test_slurm_tasks_run_the_plugin_filter_like_the_local_executor(
    cluster: SlurmCluster, workspace: Path, local_run: Path
) -> None:
    run = workspace / "slurm-run"
    submitted = subprocess.run(
        [sys.executable, "-m", "taskseed.cli.main", "submit", "pipe.yaml", "--run-dir", str(run)],
        cwd=workspace, env=plugin_env(workspace), capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    jobs = [line.split()[-1] for line in submitted.stdout.splitlines()
            if line.startswith("submitted ")]
    assert len(jobs) == 2  # the four stages fused in one array job, then finish
    wait_for_jobs(cluster, jobs, timeout=120)
    for folder in ("03-short_answers", "04-export"):
        assert stage_rows(run, folder) == stage_rows(local_run, folder), folder
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"

    # One array task by hand: the lost shard is redone by `taskseed shard`, identically.
    shard = run / "stages" / "03-short_answers" / "part-00002"
    before = shard.with_suffix(".parquet").read_bytes()
    shard.with_suffix(".done").unlink()
    shard.with_suffix(".parquet").unlink()
    proc = taskseed(workspace, "shard", "pipe.yaml", "--stage", "3", "--shard", "2",
                    "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "03-short_answers shard 2: 2 in -> " in proc.stdout
    assert shard.with_suffix(".parquet").read_bytes() == before
