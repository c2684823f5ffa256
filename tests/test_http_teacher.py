"""OpenAITeacher against the loopback FakeOpenAIServer: real HTTP, injected faults."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest, TeacherResponse
from taskseed.generation.backends.openai import OpenAITeacher, schema_error
from taskseed.generation.backends.retry import backoff_delay, is_retryable_status, parse_retry_after
from taskseed.generation.servers.fake import FakeOpenAIServer, Fault, instance_for

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "answer": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "string"}, "minItems": 4},
        "label": {"type": "string", "enum": ["A", "B", "C", "D"]},
        "difficulty": {"type": "integer"},
    },
    "required": ["question", "answer", "choices", "label", "difficulty"],
    "additionalProperties": False,
}
KEY_ENV = "TASKSEED_TEST_TEACHER_KEY"
SECRET = "sk-test-7f3a9c1e5b2d-do-not-log"


def request(text: str = "hello", schema: dict[str, Any] | None = SCHEMA) -> TeacherRequest:
    return TeacherRequest(
        messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": text}],
        sampling=Sampling(temperature=0.7, top_p=0.9, max_tokens=64, seed=3),
        json_schema=schema,
    )


def teacher(server: FakeOpenAIServer, **kwargs: Any) -> OpenAITeacher:
    options: dict[str, Any] = {"api_key_env": KEY_ENV, "backoff_base_s": 0.01,
                               "backoff_max_s": 0.05, "timeout_s": 10.0}
    options.update(kwargs)
    return OpenAITeacher(server.base_url, "fake-model", **options)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def run_one(srv: FakeOpenAIServer, req: TeacherRequest | None = None, **kwargs: Any):
    with teacher(srv, **kwargs) as t:
        [response] = t.generate([req or request()])
        return response, t


def test_happy_path_with_schema(server: FakeOpenAIServer) -> None:
    texts = [f"question number {i}" for i in range(25)]
    with teacher(server) as t:
        responses = t.generate([request(x) for x in texts])
    assert [r.error for r in responses] == [None] * 25
    for text, response in zip(texts, responses, strict=True):
        value = json.loads(response.text)
        assert value == instance_for(SCHEMA, text)
        assert schema_error(value, SCHEMA) is None
        assert response.finish_reason == "stop"
    assert server.count == 25 and t.requests_sent == 25 and t.retries == 0
    body = server.requests[0].body
    assert body is not None
    assert body["model"] == "fake-model"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "record", "schema": SCHEMA, "strict": True},
    }
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        0.7, 0.9, 64, 3)


def test_plain_text_and_structured_output_off(server: FakeOpenAIServer) -> None:
    with teacher(server, structured_output=False) as t:
        plain, schemaless = t.generate([request("hi", schema=None), request("x")])
    assert plain.ok and plain.text == "echo: hi"
    assert all("response_format" not in (r.body or {}) for r in server.requests)
    # Without response_format the server echoes text, which fails the schema the caller asked for.
    assert schemaless.error == "invalid_json"


def test_429_retry_after_is_honoured() -> None:
    with FakeOpenAIServer(faults=[Fault("429", times=2, retry_after=0.3)]) as srv:
        start = time.monotonic()
        response, t = run_one(srv)
        elapsed = time.monotonic() - start
    assert response.ok
    assert elapsed >= 0.6
    assert srv.count == 3 and t.retries == 2
    assert [r.fault for r in srv.requests] == ["429", "429", None]


@pytest.mark.parametrize("kind", ["500", "503", "408", "409", "drop", "malformed", "truncated",
                                  "wrong_schema"])
def test_transient_fault_is_retried(kind: str) -> None:
    with FakeOpenAIServer(faults=[Fault(kind, times=2)]) as srv:
        response, t = run_one(srv)
    assert response.ok, response.error
    assert schema_error(json.loads(response.text), SCHEMA) is None
    assert srv.count == 3 and t.retries == 2 and t.requests_sent == 3


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("500", "http_500"), ("drop", "connection"), ("malformed", "bad_response"),
     ("truncated", "truncated"), ("wrong_schema", "schema_mismatch"), ("429", "http_429")],
)
def test_retries_exhausted_give_error_response(kind: str, reason: str) -> None:
    with FakeOpenAIServer(faults=[Fault(kind, times=100)]) as srv:
        response, t = run_one(srv, max_retries=3)
    assert response.error == reason
    assert srv.count == 3 and t.requests_sent == 3 and t.retries == 2 and t.failures == 1


def test_truncated_response_keeps_partial_text() -> None:
    with FakeOpenAIServer(faults=[Fault("truncated", times=100)]) as srv:
        response, _ = run_one(srv, max_retries=2)
    assert response.error == "truncated" and response.finish_reason == "length"
    assert response.text and not response.ok


def test_invalid_json_content_is_retried() -> None:
    calls = []

    def responder(body: dict[str, Any]) -> str:
        calls.append(body)
        return "Sure! Here is the JSON you asked for" if len(calls) < 3 else '```json\n{}\n```'

    with FakeOpenAIServer(responder=responder) as srv:
        response, t = run_one(srv, req=request(schema={"type": "object"}))
    assert response.ok and json.loads(response.text) == {}
    assert srv.count == 3 and t.retries == 2

    with FakeOpenAIServer(responder=lambda body: "not json") as srv:
        response, _ = run_one(srv, max_retries=4)
    assert response.error == "invalid_json" and srv.count == 4


def test_slow_response_times_out_then_retries() -> None:
    with FakeOpenAIServer(faults=[Fault("slow", times=1, delay_s=3.0)]) as srv:
        response, t = run_one(srv, timeout_s=0.3)
    assert response.ok and srv.count == 2 and t.retries == 1

    with FakeOpenAIServer(faults=[Fault("slow", times=100, delay_s=3.0)]) as srv:
        start = time.monotonic()
        response, _ = run_one(srv, timeout_s=0.3, max_retries=2)
        assert time.monotonic() - start >= 0.6
    assert response.error == "timeout" and srv.count == 2


def test_non_retryable_400_is_not_retried() -> None:
    with FakeOpenAIServer(faults=[Fault("400", times=100), Fault("404")]) as srv:
        response, t = run_one(srv)
    assert response.error == "http_400"
    assert srv.count == 1 and t.retries == 0


def test_failing_request_does_not_affect_batch_and_one_retry_layer() -> None:
    def plan(index: int, body: dict[str, Any]) -> Fault | None:
        return Fault("500") if body["messages"][-1]["content"] == "poison" else None

    texts = [f"q{i}" for i in range(30)]
    texts[13] = "poison"
    with FakeOpenAIServer(fault_plan=plan) as srv, teacher(srv, max_retries=4) as t:
        responses = t.generate([request(x) for x in texts])
    assert [r.error for r in responses] == [None] * 13 + ["http_500"] + [None] * 16
    assert responses[13].text == ""
    poisoned = [r for r in srv.requests if r.body["messages"][-1]["content"] == "poison"]
    assert len(poisoned) == 4
    assert srv.count == 29 + 4 and t.requests_sent == 33 and t.retries == 3


def test_fault_plan_by_index() -> None:
    with FakeOpenAIServer(fault_plan=lambda i: Fault("503") if i % 2 == 0 else None) as srv:
        response, t = run_one(srv)
    assert response.ok and srv.count == 2 and t.retries == 1


def test_connection_refused_is_an_error_response() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with OpenAITeacher(f"http://127.0.0.1:{port}/v1", "m", max_retries=2,
                       backoff_base_s=0.01) as t:
        responses = t.generate([request(), request()])
    assert [r.error for r in responses] == ["connection", "connection"]
    assert t.requests_sent == 4 and t.failures == 2


def test_concurrency_is_bounded() -> None:
    with FakeOpenAIServer(latency_s=0.05) as srv, teacher(srv, max_concurrency=7) as t:
        responses = t.generate([request(f"q{i}") for i in range(120)])
    assert all(r.ok for r in responses)
    assert srv.peak_in_flight == 7


def test_a_thousand_requests_in_flight() -> None:
    # Each reply waits 3 s, long enough for all 1,000 requests to be open at once even on a
    # busy machine; a hidden connection cap (aiohttp's default is 100) would hold the peak there.
    srv = FakeOpenAIServer(latency_s=3.0, record=False)
    with srv, teacher(srv, max_concurrency=1000) as t:
        responses = t.generate([request(f"q{i}") for i in range(1000)])
    assert all(r.ok for r in responses)
    assert srv.count == 1000
    assert srv.peak_in_flight >= 800


def test_token_usage_is_summed(server: FakeOpenAIServer) -> None:
    with teacher(server) as t:
        responses = t.generate([request("one two three"), request("four", schema=None)])
    assert all(r.ok for r in responses)
    # system "be terse" (2 words + 1) and the user message (n words + 1)
    assert [r.usage.prompt_tokens for r in responses] == [3 + 4, 3 + 2]
    assert responses[1].usage.completion_tokens == 2
    assert t.prompt_tokens == sum(r.usage.prompt_tokens for r in responses)
    assert t.completion_tokens == sum(r.usage.completion_tokens for r in responses) > 0
    assert t.stats()["requests_sent"] == 2


def test_api_key_sent_as_bearer_and_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    srv = FakeOpenAIServer(faults=[Fault("500", times=2)])
    with srv, teacher(srv, max_retries=2) as t:
        failed = t.generate([request()])
        ok = t.generate([request()])
        text = f"{t!r} {t} {vars(t)} {t._key}"
    assert failed[0].error == "http_500" and ok[0].ok
    assert {r.headers["Authorization"] for r in srv.requests} == {f"Bearer {SECRET}"}
    assert SECRET not in text
    assert caplog.records and SECRET not in caplog.text
    assert all(SECRET not in str(r.__dict__) for r in caplog.records)


def test_no_authorization_header_without_key(
    monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    response, _ = run_one(server)
    assert response.ok and "Authorization" not in server.requests[0].headers


def test_async_api_and_sync_guard(server: FakeOpenAIServer) -> None:
    t = teacher(server)

    async def main() -> list[str]:
        with pytest.raises(RuntimeError, match="agenerate"):
            t.generate([request()])
        responses = await t.agenerate([request("a"), request("b")])
        await t.aclose()
        return [r.text for r in responses]

    texts = asyncio.run(main())
    assert [json.loads(x) for x in texts] == [instance_for(SCHEMA, "a"), instance_for(SCHEMA, "b")]
    assert t.generate([request("c")])[0].ok and t.generate([]) == []
    t.close()


def test_generate_from_a_worker_thread_while_a_loop_runs(server: FakeOpenAIServer) -> None:
    with teacher(server) as t:

        async def main() -> list[TeacherResponse]:
            return await asyncio.to_thread(t.generate, [request("x"), request("y")])

        responses = asyncio.run(main())
    assert [json.loads(r.text) for r in responses] == [
        instance_for(SCHEMA, "x"), instance_for(SCHEMA, "y")]


def test_unserialisable_request_is_an_error_response(server: FakeOpenAIServer) -> None:
    bad = TeacherRequest(messages=[{"role": "user", "content": object()}])  # type: ignore[dict-item]
    with teacher(server) as t:
        responses = t.generate([bad, request("fine")])
    assert responses[0].error == "bad_request" and responses[1].ok
    assert server.count == 1


def test_fake_server_cli_serves_requests() -> None:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    with subprocess.Popen([sys.executable, "-m", "taskseed.generation.servers.fake", "--port", "0"],
                          cwd=root, env=env, stdout=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            assert line.startswith("listening on http://127.0.0.1:")
            with OpenAITeacher(line.split()[-1], "m") as t:
                [response] = t.generate([request("cli")])
        finally:
            proc.terminate()
    assert json.loads(response.text) == instance_for(SCHEMA, "cli")


def test_schema_error_subset() -> None:
    assert schema_error({"a": 1}, {"type": "object", "required": ["a"]}) is None
    assert schema_error({}, {"type": "object", "required": ["a"]}) == "$: missing 'a'"
    assert schema_error(True, {"type": "integer"}) is not None
    assert schema_error(2.0, {"type": "integer"}) is None
    assert schema_error("x", {"enum": ["y"]}) is not None
    assert schema_error([1, "2"], {"type": "array", "items": {"type": "integer"}}) == (
        "$[1]: expected integer")
    assert schema_error(None, {"type": ["string", "null"]}) is None
    nested = {"$defs": {"c": {"type": "object", "required": ["n"]}},
              "type": "object", "properties": {"c": {"$ref": "#/$defs/c"}}}
    assert schema_error({"c": {}}, nested) == "$.c: missing 'n'"


def test_retry_policy() -> None:
    assert all(is_retryable_status(s) for s in (408, 409, 429, 500, 502, 503, 599))
    assert not any(is_retryable_status(s) for s in (400, 401, 403, 404, 422))
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert 7.0 <= backoff_delay(3, 0.5, 30, retry_after=7.0) <= 7.5
    delays = [backoff_delay(a, 0.5, 3.0) for a in range(10) for _ in range(50)]
    assert min(delays) >= 0 and max(delays) <= 3.0
