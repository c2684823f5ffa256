"""Teacher outages never become finished work; servers' messages reach the user."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.openai import OpenAITeacher
from taskseed.generation.servers.fake import FakeOpenAIServer, Fault
from workspace import write_task

PIPE = """name: outage
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: fake, max_retries: 2, timeout_s: 5}}
stages:
  - {{name: seeds, rows_per_shard: 4}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 1{generate}}}
  - {{name: enrich}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workspace(tmp_path: Path, url: str, generate: str = "") -> Path:
    rows = [{"q": f"What is the name of thing number {i}?", "a": f"thing {i}"} for i in range(8)]
    write_task(tmp_path, "qa", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", url=url, generate=generate))
    return config


def run(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", "run", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300)


def summary(config: Path) -> dict[str, Any]:
    return json.loads((config.parent / "run" / "summary.json").read_text())


def reply(body: dict[str, Any]) -> str:
    """A valid answer for generate (a new item named after its seed's number) and enrich."""
    schema = body["response_format"]["json_schema"]["schema"]
    seed = re.search(r"thing number (\d+)", body["messages"][-1]["content"])
    n = seed.group(1) if seed else "?"
    values = {"question": f"What is new item {n} called?", "answer": f"item {n}",
              "reasoning": "It is named after its number.", "knowledge": "Items have names."}
    return json.dumps({key: values[key] for key in schema["required"]})


def generate_requests(server: FakeOpenAIServer) -> list[str]:
    """The seed numbers of the generate requests a server received."""
    texts = [r.body["messages"][-1]["content"] for r in server.requests if r.body]
    return [m.group(1) for t in texts if (m := re.search(r"thing number (\d+)", t))]


def test_an_unreachable_server_fails_in_one_line_and_a_rerun_finishes(tmp_path: Path) -> None:
    port = free_port()
    config = workspace(tmp_path, f"http://127.0.0.1:{port}/v1")
    proc = run(config)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"taskseed: error: teacher server http://127.0.0.1:{port}/v1 is "
                           "unreachable: ")
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "run" / "stages" / "03-generate").glob("*.done"))

    with FakeOpenAIServer(port=port, responder=reply) as server:
        proc = run(config)
        assert proc.returncode == 0, proc.stderr[-2000:]
        sent = server.count
    stages = {s["name"]: s for s in summary(config)["stages"]}
    assert stages["generate"]["outputs"] == 8 and stages["enrich"]["outputs"] == 8
    assert sent == 16  # every request once: nothing was lost to the outage


def test_a_server_failing_mid_run_commits_nothing_it_could_not_answer(tmp_path: Path) -> None:
    def plan(index: int, body: dict[str, Any]) -> Fault | None:
        text = body["messages"][-1]["content"]
        if "number 5" in text or "number 6" in text:
            return Fault("503", message="model is overloaded, try later")
        return None

    port = free_port()
    with FakeOpenAIServer(responder=reply, fault_plan=plan, port=port) as server:
        config = workspace(tmp_path, server.base_url)
        proc = run(config)
        first = server.count
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "of 4 requests got no answer from the teacher" in line
    assert f"{server.base_url} (model fake): http_503: model is overloaded, try later" in line
    assert "rerunning the same command resumes" in line
    done = sorted(p.name for p in (tmp_path / "run" / "stages" / "03-generate").glob("*.done"))
    assert done == ["part-00000.done"]  # the shard holding rows 5 and 6 is not done
    assert summary(config)["status"] == "error"

    with FakeOpenAIServer(responder=reply, port=port) as server:
        proc = run(config)
        assert proc.returncode == 0, proc.stderr[-2000:]
        resent = generate_requests(server)
    stages = {s["name"]: s for s in summary(config)["stages"]}
    assert stages["generate"]["outputs"] == 8 and first > 0
    assert sorted(resent) == ["5", "6"]  # only what the outage left unanswered went out again


def test_most_requests_failing_fails_the_run_by_default(tmp_path: Path) -> None:
    def plan(index: int, body: dict[str, Any]) -> Fault | None:
        return None if "number 0" in body["messages"][-1]["content"] else Fault("malformed")

    with FakeOpenAIServer(responder=reply, fault_plan=plan) as server:
        proc = run(workspace(tmp_path, server.base_url))
    assert proc.returncode == 2
    assert ("stage 'generate': coverage 12.5% (1 of 8 requests gave a record) is below "
            "min_coverage 50%") in proc.stderr.strip().splitlines()[-1]


def test_the_summary_shows_coverage_per_teacher_stage(tmp_path: Path) -> None:
    def enrich_fails_for_item_3(index: int, body: dict[str, Any]) -> Fault | None:
        text = body["messages"][-1]["content"]
        return Fault("malformed") if "new item 3 called" in text else None

    with FakeOpenAIServer(responder=reply, fault_plan=enrich_fails_for_item_3) as server:
        config = workspace(tmp_path, server.base_url)
        proc = run(config)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "  generate coverage 100.0% (8 of 8 requests)" in proc.stdout
    assert ("  enrich coverage 87.5% (7 of 8 requests), 1 records kept without enrichment"
            in proc.stdout)
    enrich = {s["name"]: s for s in summary(config)["stages"]}["enrich"]
    assert enrich["coverage"] == 0.875 and enrich["outputs"] == 8


# --- one request, many servers -----------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "minLength": 1}},
          "required": ["answer"], "additionalProperties": False}


def request(text: str = "hello") -> TeacherRequest:
    return TeacherRequest(messages=[{"role": "user", "content": text}],
                          sampling=Sampling(0.5, 0.9, 32, 7), json_schema=SCHEMA)


@pytest.mark.parametrize(
    ("mode", "field", "value"),
    [
        ("json_schema", "response_format",
         {"type": "json_schema", "json_schema": {"name": "record", "schema": SCHEMA,
                                                 "strict": True}}),
        ("json_object", "response_format", {"type": "json_object", "schema": SCHEMA}),
        ("guided_json", "guided_json", SCHEMA),
    ],
)
def test_structured_output_modes(mode: str, field: str, value: dict) -> None:
    with FakeOpenAIServer() as server, OpenAITeacher(server.base_url, "m",
                                                     structured_output=mode) as teacher:
        [response] = teacher.generate([request()])
    assert response.ok and json.loads(response.text)["answer"]
    body = server.requests[0].body
    assert body[field] == value
    others = {"response_format", "guided_json"} - {field}
    assert not others & set(body)


def test_without_structured_output_the_schema_is_in_the_prompt() -> None:
    fenced = '```json\n{"answer": "x"}\n```'
    with FakeOpenAIServer(responder=lambda body: fenced) as server, OpenAITeacher(
            server.base_url, "m", structured_output="none") as teacher:
        [response] = teacher.generate([request("hello")])
    assert response.ok and json.loads(response.text) == {"answer": "x"}
    body = server.requests[0].body
    assert "response_format" not in body and "guided_json" not in body
    prompt = body["messages"][-1]["content"]
    assert prompt.startswith("hello\n\nReply with one JSON object") and '"minLength": 1' in prompt


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Fault("400", times=9, message="max_tokens is too large"), "max_tokens is too large"),
        (Fault("500", times=9, message="1 validation error: Input should be 'text' or "
                                       "'json_object'"), "Input should be 'text'"),
    ],
    ids=["http-400", "http-500-validation"],
)
def test_a_request_the_server_rejects_is_not_retried(fault: Fault, message: str) -> None:
    with FakeOpenAIServer(faults=[fault]) as server, OpenAITeacher(
            server.base_url, "m", max_retries=4, backoff_base_s=0.01) as teacher:
        [response] = teacher.generate([request()])
    assert server.count == 1 and teacher.retries == 0
    assert response.error == f"http_{fault.kind}" and response.fatal
    assert message in response.detail


def test_transient_errors_keep_the_server_message() -> None:
    fault = Fault("503", times=9, message="overloaded")
    with FakeOpenAIServer(faults=[fault]) as server, OpenAITeacher(
            server.base_url, "m", max_retries=3, backoff_base_s=0.01) as teacher:
        [response] = teacher.generate([request()])
    assert server.count == 3 and response.fatal and response.detail == "overloaded"
