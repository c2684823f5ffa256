"""Bad teacher replies: retried with new seeds, then failures with reasons; low coverage fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from taskseed.generation.servers.fake import FakeOpenAIServer, Fault
from workspace import write_task

PIPE = """name: failures
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: fake, max_retries: 1}}
stages:
  - {{name: seeds}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 1, max_attempts: 2, min_coverage: {coverage}}}
"""


def setup(tmp_path: Path, url: str, coverage: float) -> Path:
    rows = [{"q": f"What is the name of thing {i}?", "a": f"thing {i}"} for i in range(6)]
    write_task(tmp_path, "qa", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", url=url, coverage=coverage))
    return config


def run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", "run", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300)


def test_unparsable_replies_are_asked_again_with_a_new_seed(tmp_path):
    def reply(body: dict) -> str:
        # Unparsable for the first sampling seed of each request, valid for the retry.
        seeds_seen.setdefault(body["messages"][-1]["content"], []).append(body["seed"])
        tries = seeds_seen[body["messages"][-1]["content"]]
        if len(tries) == 1:
            return '{"question": "cut off'
        return json.dumps({"question": f"What is new item {body['seed']}?", "answer": "x"})

    seeds_seen: dict[str, list[int]] = {}
    with FakeOpenAIServer(responder=reply) as server:
        proc = run(setup(tmp_path, server.base_url, 0.5))
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert len(seeds_seen) == 6
    assert all(len(set(seeds)) == 2 for seeds in seeds_seen.values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    generate = summary["stages"][-1]
    assert generate["outputs"] == 6 and generate["counters"]["retried"] == 6


def test_exhausted_failures_are_listed_and_low_coverage_exits_nonzero(tmp_path):
    with FakeOpenAIServer(faults=[Fault("malformed", times=1000)]) as server:
        proc = run(setup(tmp_path, server.base_url, 0.5))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "coverage 0.0% (0 of 6 requests gave a record) is below min_coverage 50%" in lines[-1]
    assert "Traceback" not in proc.stderr
    failures = (tmp_path / "run" / "stages" / "03-generate" / "failures.jsonl").read_text()
    rows = [json.loads(line) for line in failures.splitlines()]
    assert len(rows) == 6 and {r["reason"] for r in rows} == {"teacher_error"}
    assert all("bad_response" in r["detail"] for r in rows)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "error"
