"""The streaming cascade: a shard moves on to the next batch stage as soon as it is committed,
the shards of a worker share one request pool per model, and the records are those of a
stage-by-stage run. Also the loopback server's capacity mode that measures it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import xxhash
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.record import Record
from taskseed.generation.backends.base import Sampling, TeacherRequest
from taskseed.generation.backends.openai import OpenAITeacher
from taskseed.generation.servers.fake import (
    Capacity,
    FakeOpenAIServer,
    Fault,
    requested_schema,
)
from workspace import write_task

from taskseed.execution.run import run_pipeline

PIPE = """name: streaming
run_dir: {run}
seeds_root: .
tasks: [facts.yaml]
executor: {{workers: 1, stream: {stream}, units_per_worker: 4}}
teacher: {{backend: openai, base_url: "{url}", model: fake, max_retries: 1,
           max_concurrency: 8}}
stages:
  - {{name: seeds, rows_per_shard: 6}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: 2}}
  - {{name: heuristics}}
  - {{name: enrich}}
"""


def reply(body: dict) -> str:
    """A distinct item per (prompt, seed) for generate; a reasoning text for enrich."""
    schema = requested_schema(body) or {}
    prompt = body["messages"][-1]["content"]
    tag = xxhash.xxh3_64_intdigest(f"{prompt}|{body.get('seed')}".encode()) % 10**6
    if "question" in schema.get("required", []):
        return json.dumps({"question": f"Which harbour town lies closest to lighthouse {tag}?",
                           "answer": f"The town of Port {tag}"})
    text = "The lighthouse stands on the cape above that town, so sailors name it after it."
    return json.dumps(dict.fromkeys(schema.get("required", ["reasoning"]), text))


def is_generate(body: dict | None) -> bool:
    """Generate prompts show seeds; enrich prompts show a generated record (a harbour)."""
    return body is not None and "harbour" not in body["messages"][-1]["content"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    # two shards; the first one's seeds are northern, and the server is slow on those
    rows = [{"q": f"Which town is closest to {'northern ' if i < 6 else ''}lighthouse "
                  f"number {i}?", "a": f"Town {i}"} for i in range(12)]
    write_task(tmp_path, "facts", "free_form", rows, "{question: q, answer: a}")
    return tmp_path


def run(workspace: Path, server: FakeOpenAIServer, stream: bool) -> list[tuple[str, str]]:
    name = "streamed" if stream else "staged"
    config = workspace / f"{name}.yaml"
    config.write_text(PIPE.format(run=workspace / name, url=server.base_url,
                                  stream=str(stream).lower()))
    run_pipeline(config, progress=lambda line: None)
    folder = workspace / name / "stages" / "05-enrich"
    records = [r for p in sorted(folder.glob("part-*.parquet")) for r in read_parquet(p, Record)]
    return sorted((r.id, f"{r.question}|{r.answer}|{r.reasoning}") for r in records)


def slow_north(index: int, body: dict) -> Fault | None:
    """Generate requests that show the first shard's seeds take a second."""
    prompt = body["messages"][-1]["content"] if body.get("messages") else ""
    return Fault("slow", delay_s=1.0) if "northern" in prompt and "harbour" not in prompt \
        else None


def test_streamed_run_overlaps_stages_and_commits_the_records_of_a_staged_run(workspace):
    answered: list[tuple[str, float]] = []

    def timed(body: dict) -> str:
        answered.append(("generate" if is_generate(body) else "enrich", time.monotonic()))
        return reply(body)

    with FakeOpenAIServer(responder=timed, fault_plan=slow_north) as server:
        staged = run(workspace, server, stream=False)
        staged_answers = len(answered)
        streamed = run(workspace, server, stream=True)
    assert staged and streamed == staged
    for answers, overlap in ((answered[:staged_answers], False),
                             (answered[staged_answers:], True)):
        last_generate = max(t for kind, t in answers if kind == "generate")
        first_enrich = min(t for kind, t in answers if kind == "enrich")
        # streamed: the fast shard's records were enriched while the slow one generated
        assert (first_enrich < last_generate) is overlap


def test_a_rerun_of_a_streamed_run_sends_nothing(workspace):
    with FakeOpenAIServer(responder=reply) as server:
        first = run(workspace, server, stream=True)
        count = server.count
        assert run(workspace, server, stream=True) == first
        assert server.count == count


def test_threads_of_a_process_share_one_request_pool():
    with FakeOpenAIServer(latency_s=0.05) as server:
        teacher = OpenAITeacher(server.base_url, "fake", max_concurrency=3)
        requests = [TeacherRequest([{"role": "user", "content": f"q{i}"}], Sampling(seed=i))
                    for i in range(12)]
        threads = [threading.Thread(target=teacher.generate, args=(requests,))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        teacher.close()
    assert server.count == 48
    assert server.peak_in_flight == 3


def test_capacity_mode_serves_at_most_its_slots_and_measures_busy_slot_time():
    capacity = Capacity(slots=2, seconds_per_token=0.01)
    with FakeOpenAIServer(capacity=capacity, responder=lambda body: "one two three four") as srv:
        teacher = OpenAITeacher(srv.base_url, "fake", max_concurrency=8,
                                structured_output="none")
        requests = [TeacherRequest([{"role": "user", "content": f"q{i}"}], Sampling(seed=i))
                    for i in range(8)]
        teacher.generate(requests)
        teacher.close()
        stats = srv.clock_stats()
    assert stats["served"] == 8
    assert stats["busy_s"] == pytest.approx(8 * capacity.service_s(4), rel=0.5)
    # 8 answers on 2 slots take at least 4 service times
    assert stats["span_s"] >= 4 * capacity.service_s(4) * 0.9
    assert 0.5 < stats["busy_share"] <= 1.0
