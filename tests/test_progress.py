"""Progress of long work: live counts from teacher stages, plain periodic lines off a
terminal, and the live display's fields."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from taskseed.curation.io import live_counts as progress
from taskseed.generation.servers.fake import FakeOpenAIServer
from workspace import write_task

from taskseed.execution.run import run_pipeline
from taskseed.views.progress import ProgressView, StageMeter, duration

PIPE = """name: progress
run_dir: {run}
seeds_root: .
tasks: [capitals.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: "{url}", model: fake, max_retries: 1,
           max_concurrency: 2}}
accept: {{target: 2, max_candidates: 12, max_rounds: 3}}
stages:
  - {{name: seeds, rows_per_shard: 3}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: 2}}
  - {{name: export}}
"""

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Chile", "Santiago")]


def reply(body: dict) -> str:
    n = len(json.dumps(body)) % 97
    return json.dumps({"question": f"Which river runs through the capital city number {n}?",
                       "answer": f"The river of city {n}."})


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder=reply) as srv:
        yield srv


def config(tmp_path: Path, url: str) -> Path:
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    write_task(tmp_path, "capitals", "free_form", rows, "{question: q, answer: a}")
    path = tmp_path / "pipe.yaml"
    path.write_text(PIPE.format(run=tmp_path / "run", url=url))
    return path


def test_off_a_terminal_each_stage_prints_plain_progress_lines(tmp_path, server, monkeypatch):
    monkeypatch.setenv("TASKSEED_PROGRESS_SECONDS", "0")
    lines: list[str] = []
    run_pipeline(config(tmp_path, server.base_url), progress=lines.append)
    meters = [line for line in lines if re.match(r"^\[generate\] \d+/\d+ shards, ", line)]
    assert meters, lines
    final = re.compile(r"^\[generate\] 2/2 shards, 6 in -> 8 out \(1.33 out per in\), 0 in "
                       r"flight, \d+ tokens/s, ETA 0s; run: stage 3/4, \d+s elapsed")
    assert any(final.search(line) for line in meters), meters
    assert any("accepted" in line and "tasks at target" in line for line in lines), lines
    assert all("\x1b[" not in line for line in lines)  # no terminal codes in a log


def test_teacher_stages_report_requests_and_tokens_as_they_arrive(tmp_path, server):
    from taskseed.config.pipeline import load_config
    from taskseed.execution.pipeline import build_stages

    read, normalize, generate, _ = build_stages(load_config(config(tmp_path, server.base_url)))
    seeds = normalize.process(read.read(read.plan()[0]).items, 0).items
    seen: list[dict[str, float]] = []
    with progress.watch(seen.append, interval=0):
        result = generate.process(seeds, 0)
    generate.teardown()
    last = seen[-1]
    assert last["requests_planned"] == last["requests_done"] == result.counters["planned"] > 0
    assert last["completion_tokens"] == result.counters["completion_tokens"] > 0
    assert last["in_flight"] == 0
    assert max(s.get("in_flight", 0) for s in seen) == 2  # max_concurrency


def test_the_meter_sums_finished_and_running_units(tmp_path):
    meter = StageMeter("generate", tmp_path, units=4)
    meter.unit_done({"inputs": 10, "outputs": 5, "counters": {"completion_tokens": 300}})
    (tmp_path / "part-00001.running").write_text(json.dumps(
        {"live": {"in_flight": 7, "completion_tokens": 100, "requests_done": 3}}))
    (tmp_path / "part-00002.running").write_text(json.dumps(
        {"live": {"in_flight": 5, "completion_tokens": 50}}))
    fields = meter.fields()
    assert fields["records"] == "10 in -> 5 out" and fields["kept"] == "50% kept"
    assert fields["in_flight"] == "12 in flight"
    assert fields["eta"].startswith("ETA ") and fields["eta"] != "ETA ?"
    assert duration(75) == "1m15s" and duration(3725) == "1h02m" and duration(None) == "?"


def test_on_a_terminal_the_display_is_live_and_log_lines_go_above_it(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    view = ProgressView(lambda line: None, stages=2, live=True)
    assert view.live
    view.start_stage("generate", tmp_path, units=2, index=1)
    view.unit_done({"inputs": 4, "outputs": 2, "counters": {"completion_tokens": 10}})
    view.print("[generate] 2 shards (1 run now)")
    view.close()
    err = capsys.readouterr().err
    assert "[generate] 2 shards (1 run now)" in err
    assert "generate" in err and "1/2" in err and "4 in -> 2 out" in err


def test_status_shows_the_live_counts_of_running_shards(tmp_path, server, capsys):
    import os
    import socket

    from taskseed.cli.main import main

    run_pipeline(config(tmp_path, server.base_url), progress=lambda line: None)
    generate = tmp_path / "run" / "stages" / "03-generate"
    (generate / "part-00000.done").unlink()
    (generate / "part-00000.running").write_text(json.dumps({
        "host": socket.gethostname(), "pid": os.getpid(),
        "live": {"requests_planned": 6, "requests_done": 3, "in_flight": 2}}))
    assert main(["status", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "running: shards 0 (3/6 requests answered, 2 in flight)" in out, out
    assert re.search(r"^03-generate\s+\d+\s+\d+\s+1\s+0\s+0$", out, flags=re.MULTILINE), out
