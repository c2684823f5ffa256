"""kill -9 during generation: the rerun loses nothing and repeats only what was in flight."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.record import Record
from taskseed.generation.servers.fake import FakeOpenAIServer, last_user_message
from workspace import write_task

WORKERS, CONCURRENCY, ROWS = 2, 3, 120

PIPE = """name: resume
run_dir: unused
seeds_root: .
tasks: [mc.yaml]
executor: {{workers: {workers}}}
teacher:
  backend: openai
  base_url: {url}
  model: fake-teacher
  max_concurrency: {concurrency}
  max_retries: 1
stages:
  - {{name: seeds, rows_per_shard: 30}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 1, samples_per_group: 1, max_attempts: 1}}
"""



def respond(body: dict) -> str:
    """A distinct, deterministic example per (prompt, seed)."""
    tag = xxhash.xxh3_64_hexdigest(f"{last_user_message(body)}|{body.get('seed')}".encode())
    return json.dumps({"question": f"Which label belongs to item {tag}?",
                       "choices": [f"{tag}-a", f"{tag}-b", f"{tag}-c"], "answer_index": 1})


def request_key(body: dict) -> str:
    return xxhash.xxh3_64_hexdigest(json.dumps([body["messages"], body.get("seed")]).encode())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    rows = [{"q": f"Seed question number {i} about topic {i % 7}?",
             "c": [f"option {i}", f"option {i + 1}", f"option {i + 2}"], "a": f"option {i}"}
            for i in range(ROWS)]
    write_task(tmp_path, "mc", "multiple_choice", rows, "{question: q, choices: c, answer: a}")
    return tmp_path


def start(config: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "taskseed.cli.main", "run", str(config), "--run-dir", str(run_dir)],
        cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def finish(config: Path, run_dir: Path) -> None:
    proc = start(config, run_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


def generated(run_dir: Path) -> list[str]:
    folder = run_dir / "stages" / "03-generate"
    return sorted(r.id for p in folder.glob("part-*.parquet") for r in read_parquet(p, Record))


def test_kill_9_then_rerun_matches_an_uninterrupted_run(workspace: Path):
    with FakeOpenAIServer(latency_s=0.25, responder=respond) as server:
        config = workspace / "pipe.yaml"
        config.write_text(PIPE.format(url=server.base_url, workers=WORKERS,
                                      concurrency=CONCURRENCY))
        killed = workspace / "killed"
        proc = start(config, killed)
        deadline = time.monotonic() + 120
        while server.count < ROWS // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sent_before_kill = server.count
        assert 0 < sent_before_kill < ROWS

        finish(config, killed)
        keys = [request_key(r.body) for r in server.requests]
        assert len(set(keys)) == ROWS
        resent = len(keys) - len(set(keys))
        assert resent <= WORKERS * CONCURRENCY

        count = server.count
        finish(config, killed)
        assert server.count == count  # a finished run sends nothing

        shutil.rmtree(killed / "stages" / "03-generate")
        finish(config, killed)
        assert server.count == count  # redone from the request cache alone

        clean = workspace / "clean"
        finish(config, clean)

    ids = generated(killed)
    assert len(ids) == ROWS and len(set(ids)) == ROWS
    assert ids == generated(clean)
