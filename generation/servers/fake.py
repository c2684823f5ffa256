"""A deterministic OpenAI-compatible chat completions server on loopback, with injectable faults.

In-process (background thread)::

    with FakeOpenAIServer(faults=[Fault("429", times=2, retry_after=0.1)]) as server:
        teacher = OpenAITeacher(server.base_url, "fake")

It also serves reward models: chat completions for the model named `reward_model` answer in
NVIDIA NIM's reward shape (`name:score` pairs in the content, and in `logprobs.content` when
the request asks for logprobs), and vLLM's pooling API answers at `/pooling` and `/classify`
(the server root, as `server.root_url`). Scores come from `reward_fn(question, answer)`.

As a process: ``python -m taskseed.generation.servers.fake --port 8000 --latency 2.0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FAULT_KINDS = ("429", "500", "slow", "drop", "malformed", "truncated", "wrong_schema")


@dataclass(slots=True)
class Fault:
    """A fault served instead of a normal answer.

    `kind` is one of FAULT_KINDS or any HTTP status code as a string (e.g. "400", "503").
    In a `faults` list it applies to `times` consecutive requests. `retry_after` (seconds)
    adds a Retry-After header to status faults; `delay_s` is the extra delay of `slow`;
    `message` is the error message of a status fault.
    """

    kind: str
    times: int = 1
    retry_after: float | None = None
    delay_s: float = 5.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS and not self.kind.isdigit():
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(slots=True)
class Capacity:
    """A server of fixed capacity, as a GPU server's continuous batch is: at most `slots`
    requests are served at once (the rest queue), and each holds its slot for
    `seconds_per_token` per output token plus `seconds_per_request`."""

    slots: int = 64
    seconds_per_token: float = 0.0005
    seconds_per_request: float = 0.0

    def service_s(self, completion_tokens: int) -> float:
        return self.seconds_per_request + self.seconds_per_token * completion_tokens


class SlotClock:
    """The slot-time a capacity server kept busy, from its first request to its last."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.busy_s = 0.0
        self.first: float | None = None
        self.last: float | None = None
        self.served = 0

    def add(self, start: float, end: float) -> None:
        self.first = start if self.first is None else min(self.first, start)
        self.last = end if self.last is None else max(self.last, end)
        self.busy_s += end - start
        self.served += 1

    def busy_share(self) -> float:
        """Busy slot-seconds over slots x (last end - first start); 0 before any request."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.busy_s / (self.slots * (self.last - self.first))


@dataclass(slots=True)
class ReceivedRequest:
    """One request as the server saw it."""

    index: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    fault: str | None = None
    path: str = ""


FaultPlan = Callable[..., "Fault | None"]
Responder = Callable[[dict[str, Any]], str]
RewardFn = Callable[[str, str], dict[str, float]]

REWARD_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def default_reward(question: str, answer: str) -> dict[str, float]:
    """Nemotron-style attribute scores in [0, 4], fixed by the question and the answer."""
    digest = hashlib.blake2b(f"{question}\x00{answer}".encode(), digest_size=5).digest()
    return {name: round(b / 255 * 4, 4) for name, b in zip(REWARD_ATTRIBUTES, digest, strict=True)}


def last_message(body: dict[str, Any], role: str) -> str:
    """The content of the last message with `role`, as text."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == role:
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def last_user_message(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def instance_for(schema: dict[str, Any], seed: str, resolver: Any = None,
                 path: str = "$") -> Any:
    """A deterministic value satisfying `schema`; strings derive from `seed` and the path."""
    if resolver is None:
        resource = Resource.from_contents(schema, default_specification=DRAFT202012)
        resolver = Registry().with_resource("urn:request", resource).resolver("urn:request")
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved = resolver.lookup(ref)
        return instance_for(resolved.contents, seed, resolved.resolver, path)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return instance_for(branches[0], seed, resolver, path)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {key: instance_for(props.get(key, {}), seed, resolver, f"{path}.{key}")
                for key in schema.get("required", ())}
    if kind == "array":
        items = schema.get("items") or {}
        return [instance_for(items, seed, resolver, f"{path}[{i}]")
                for i in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        digest = hashlib.blake2b(f"{seed}\x00{path}".encode(), digest_size=6).hexdigest()
        text = f"{path.rsplit('.', 1)[-1].strip('$[]0123456789') or 'value'}-{digest}"
        return text.ljust(int(schema.get("minLength", 0)), "x")
    if kind == "integer":
        return max(0, int(schema.get("minimum", 0)))
    if kind == "number":
        return max(0.0, float(schema.get("minimum", 0.0)))
    if kind == "boolean":
        return False
    return None


def _count_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += len(str(message.get("content", "")).split()) + 1
    return total


class FakeOpenAIServer:
    """Loopback OpenAI-compatible server; a context manager yielding itself (see `base_url`).

    `faults` apply in order to the first requests (each for `times` requests), of every
    endpoint; `fault_plan(index)` or `fault_plan(index, body)` may pick a fault for any request
    instead. `latency_s` delays every answer; `responder(body) -> str` overrides the answer
    content. Chat requests for `reward_model` are scored by `reward_fn(question, answer)`
    (`default_reward` when None); `reward_in_content=False` leaves the reward reply's content
    empty, so that only its logprobs carry the scores. With `capacity`, chat answers wait
    for one of its slots and hold it for their service time; `clock` measures how busy the
    slots were.
    """

    def __init__(
        self,
        faults: list[Fault] | None = None,
        latency_s: float = 0.0,
        responder: Responder | None = None,
        fault_plan: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        reward_fn: RewardFn | None = None,
        reward_model: str = "fake-reward",
        reward_in_content: bool = True,
        capacity: Capacity | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.capacity = capacity
        self.clock = SlotClock(capacity.slots if capacity else 1)
        self._slots: asyncio.Semaphore | None = None
        self.responder = responder
        self.reward_fn = reward_fn or default_reward
        self.reward_model = reward_model
        self.reward_in_content = reward_in_content
        self.host = host
        self.port = port
        self.record = record
        self._schedule: list[Fault] = [f for f in faults or () for _ in range(f.times)]
        self._plan = fault_plan
        self._plan_takes_body = (
            fault_plan is not None and len(inspect.signature(fault_plan).parameters) >= 2
        )
        self.requests: list[ReceivedRequest] = []
        self.count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._runner: web.ServerRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The server root, where vLLM serves `/pooling` and `/classify`."""
        return f"http://{self.host}:{self.port}"

    def _fault_for(self, index: int, body: dict[str, Any]) -> Fault | None:
        if self._plan is not None:
            fault = self._plan(index, body) if self._plan_takes_body else self._plan(index)
            if fault is not None:
                return fault
        return self._schedule[index] if index < len(self._schedule) else None

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path.endswith("/chat/completions"):
            if request.method != "POST":
                return _error(405, "method not allowed")
            return await self._handle(request)
        if path.endswith(("/pooling", "/classify")):
            if request.method != "POST":
                return _error(405, "method not allowed")
            return await self._handle(request, self._answer_pooling)
        if path.endswith("/models"):
            return web.json_response(
                {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        if path == "/health":
            return web.Response(text="ok")
        if path == "/capacity":
            return web.json_response(self.clock_stats())
        return _error(404, f"no route {request.path}")

    def clock_stats(self) -> dict[str, Any]:
        """What `GET /capacity` answers: slots, requests served, busy slot-seconds, the
        span from first to last request, and the busy share."""
        clock = self.clock
        span = (clock.last - clock.first) if clock.first is not None and clock.last else 0.0
        return {"slots": clock.slots, "served": clock.served, "busy_s": clock.busy_s,
                "span_s": span, "busy_share": clock.busy_share()}

    async def start(self) -> None:
        """Bind and serve on the running loop; sets `port` when it was 0."""
        self._runner = web.ServerRunner(web.Server(self._dispatch), access_log=None,
                                        shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[union-attr]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> FakeOpenAIServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    async def _handle(self, request: web.BaseRequest, answer: Any = None) -> web.StreamResponse:
        answer = answer or self._answer
        index = self.count
        self.count += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            raw = await request.read()
            try:
                body = orjson.loads(raw)
            except ValueError:
                body = None
            fault = self._fault_for(index, body or {})
            if self.record:
                self.requests.append(ReceivedRequest(
                    index, body, dict(request.headers), fault.kind if fault else None,
                    request.path))
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            if body is None or not isinstance(body, dict):
                return _error(400, "request body is not a JSON object")
            return await answer(request, index, body, fault)
        finally:
            self.in_flight -= 1

    async def _fault_reply(self, request: web.BaseRequest,
                           fault: Fault | None) -> web.StreamResponse | None:
        """The reply a transport fault gives instead of an answer (None: answer, maybe late)."""
        kind = fault.kind if fault else None
        if fault is not None and kind is not None and kind.isdigit():
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _error(int(kind), fault.message or f"injected {kind}", headers)
        if kind == "slow":
            await asyncio.sleep(fault.delay_s)  # type: ignore[union-attr]
        if kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if kind == "malformed":
            return web.Response(body=b'{"id": "chatcmpl-fake", "choices": [{"mess',
                                content_type="application/json")
        return None

    async def _answer(self, request: web.BaseRequest, index: int, body: dict[str, Any],
                      fault: Fault | None) -> web.StreamResponse:
        kind = fault.kind if fault else None
        failed = await self._fault_reply(request, fault)
        if failed is not None:
            return failed
        if body.get("model") == self.reward_model:
            return self._reward_reply(index, body, kind)
        schema = requested_schema(body)
        if self.responder is not None:
            content = self.responder(body)
        elif schema is not None:
            content = orjson.dumps(instance_for(schema, last_user_message(body))).decode()
        else:
            content = f"echo: {last_user_message(body)}"
        finish = "stop"
        if kind == "truncated":
            content, finish = content[: max(1, len(content) // 2)], "length"
        elif kind == "wrong_schema":
            content = json.dumps({"unexpected": "wrong schema"})
        prompt_tokens = _count_tokens(body)
        completion_tokens = len(content.split())
        if self.capacity is not None:
            await self._serve(completion_tokens)
        payload = {
            "id": f"chatcmpl-fake-{index}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def _serve(self, completion_tokens: int) -> None:
        """Hold one of the capacity's slots for this answer's service time."""
        assert self.capacity is not None
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity.slots)
        async with self._slots:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.sleep(self.capacity.service_s(completion_tokens))
            self.clock.add(start, loop.time())

    def _reward_reply(self, index: int, body: dict[str, Any], kind: str | None) -> web.Response:
        """NIM's reward reply: `name:score` pairs in the content, and the same scores as
        `logprobs.content[*]` (token = name, logprob = score) when the request asks."""
        scores = self.reward_fn(last_message(body, "user"), last_message(body, "assistant"))
        content = ",".join(f"{name}:{float(value)!r}" for name, value in scores.items())
        if kind == "wrong_schema":
            content = "I would rate this answer quite highly."
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant",
                        "content": content if self.reward_in_content else ""},
            "finish_reason": "length",
        }
        if body.get("logprobs") and kind != "wrong_schema":
            choice["logprobs"] = {"content": [
                {"token": name, "logprob": float(value), "bytes": None, "top_logprobs": []}
                for name, value in scores.items()]}
        prompt_tokens = _count_tokens(body)
        payload = {
            "id": f"chatcmpl-fake-{index}", "object": "chat.completion", "created": 0,
            "model": body.get("model"), "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(scores),
                      "total_tokens": prompt_tokens + len(scores)},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def _answer_pooling(self, request: web.BaseRequest, index: int, body: dict[str, Any],
                              fault: Fault | None) -> web.StreamResponse:
        """vLLM's `/pooling` (`data[0].data`) and `/classify` (`data[0].probs`) answers.

        The scores of `reward_fn`, in its order, are the values; a `/pooling` request with
        `"task": "token_classify"` gets one row per token, the scores in the last row.
        """
        failed = await self._fault_reply(request, fault)
        if failed is not None:
            return failed
        if "messages" in body:
            question, answer = last_message(body, "user"), last_message(body, "assistant")
        else:
            question, answer = str(body.get("input", "")), ""
        values = [float(v) for v in self.reward_fn(question, answer).values()]
        tokens = max(1, _count_tokens(body) or len(question.split()))
        if request.path.rstrip("/").endswith("/classify"):
            item: dict[str, Any] = {"index": 0, "label": None, "probs": values,
                                    "num_classes": len(values)}
            prefix = "classify"
        else:
            data: Any = values
            if body.get("task") == "token_classify":
                data = [[0.0] * len(values)] * (tokens - 1) + [values]
            item = {"index": 0, "object": "pooling", "data": data}
            prefix = "pool"
        if fault is not None and fault.kind == "wrong_schema":
            item = {"index": 0, "object": "pooling", "embedding": "unexpected"}
        payload = {"id": f"{prefix}-fake-{index}", "object": "list", "created": 0,
                   "model": body.get("model"), "data": [item],
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens,
                             "completion_tokens": 0}}
        return web.Response(body=orjson.dumps(payload), content_type="application/json")


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema a request asks its reply to follow, in any structured-output mode."""
    fmt = body.get("response_format")
    schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        schema = fmt.get("schema")
    elif "guided_json" in body:
        schema = body["guided_json"]
    return schema if isinstance(schema, dict) else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "fake_error", "code": status}}
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json", headers=headers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--slots", type=int, default=0,
                        help="serve at most this many chat answers at once (0: no limit)")
    parser.add_argument("--seconds-per-token", type=float, default=0.0005,
                        help="with --slots: how long an answer holds its slot per output token")
    args = parser.parse_args(argv)
    capacity = Capacity(args.slots, args.seconds_per_token) if args.slots > 0 else None
    server = FakeOpenAIServer(latency_s=args.latency, host=args.host, port=args.port,
                              record=False, capacity=capacity)

    async def serve() -> None:
        await server.start()
        print(f"listening on {server.base_url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()


if __name__ == "__main__":
    main()
