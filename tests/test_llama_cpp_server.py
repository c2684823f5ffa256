"""The pipeline against llama-cpp-python's own OpenAI-compatible server and the embedded model."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskseed.generation.backends.embedded import packaged_model_path
from workspace import write_task

pytestmark = pytest.mark.slow

PIPE = """name: llama-server
run_dir: {run}
seeds_root: .
tasks: [capitals.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: smollm2, structured_output: {mode},
           max_concurrency: 2, max_retries: 2, timeout_s: 120}}
stages:
  - {{name: seeds}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, max_tokens: 120, temperature: 0.7, min_coverage: 0}}
"""

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def workspace(tmp_path: Path, url: str, mode: str) -> Path:
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    write_task(tmp_path, "capitals", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", url=url, mode=mode))
    return config


def run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", "run", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=600)


def test_json_object_with_a_schema_gives_schema_valid_replies(server: str, tmp_path) -> None:
    config = workspace(tmp_path, server, "json_object")
    proc = run(config)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    generate = summary["stages"][-1]
    assert generate["counters"]["planned"] == 2 and generate["counters"]["teacher_calls"] >= 2
    assert not {"unparsable", "schema_mismatch", "teacher_error"} & set(generate["rejects"])
    assert "generate coverage" in proc.stdout


def test_an_unsupported_mode_fails_fast_with_the_servers_message(server: str, tmp_path) -> None:
    proc = run(workspace(tmp_path, server, "json_schema"))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("taskseed: error: stage 'generate' shard 0: 2 of 2 requests got no "
                           f"answer from the teacher {server} (model smollm2): http_500: ")
    assert "Input should be 'text' or 'json_object'" in line
    assert "Traceback" not in proc.stderr
