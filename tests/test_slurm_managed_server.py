"""A teacher server per node on a real one-node Slurm: each array task of the fused shard job
starts llama-cpp-python's server with the embedded model, waits until it is healthy, points
the `openai` backend at it, and stops it when the task ends."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, wait_for_jobs
from workspace import write_task

pytestmark = pytest.mark.slow

PIPE = """name: served
run_dir: {run}
seeds_root: .
tasks: [capitals.yaml]
teacher:
  backend: openai
  model: smollm2
  structured_output: json_object
  max_concurrency: 2
  timeout_s: 120
  server: {{launch: llama-cpp, checkpoint: "packaged:smollm2", args: [--n_ctx, "2048"],
           startup_timeout_s: 120}}
stages:
  - {{name: seeds, rows_per_shard: 3}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, max_tokens: 80, temperature: 0.7, min_coverage: 0}}
"""

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Chile", "Santiago")]


def _servers_running() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "llama_cpp.server"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "pgrep" not in line]


def test_each_array_task_serves_the_teacher_on_its_node(cluster: SlurmCluster, tmp_path: Path):
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    write_task(tmp_path, "capitals", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    run = tmp_path / "run"
    config.write_text(PIPE.format(run=run))
    before = _servers_running()
    dry = subprocess.run([sys.executable, "-m", "taskseed.cli.main", "submit", str(config),
                          "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "01-seeds..03: shard job, 2 array tasks, each runs seeds -> normalize -> generate; " \
           "0 GPU" in dry.stdout
    done = subprocess.run([sys.executable, "-m", "taskseed.cli.main", "submit", str(config)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    jobs = re.findall(r"^submitted (\S+): job (\d+)$", done.stdout, flags=re.MULTILINE)
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=300)
    logs = sorted((run / "logs").glob("01-seeds..03-*.out"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        started = re.search(r"\[serve\] teacher: llama-cpp on (http://\S+/v1) healthy", text)
        assert started, text[-3000:]
        assert f"[serve] teacher: stopped llama-cpp on {started.group(1)}" in text
        assert re.search(r"03-generate shard \d: \d+ in -> \d+ out", text), text[-3000:]
    markers = [json.loads(p.read_text())
               for p in sorted((run / "stages" / "03-generate").glob("part-*.done"))]
    assert len(markers) == 2 and all(m["counters"]["teacher_calls"] > 0 for m in markers)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert list((run / "logs").glob("server-teacher-*.log"))
    assert _servers_running() == before  # every server stopped with its task
