"""A teacher backed by any OpenAI-compatible `/v1/chat/completions` server.

Works with trtllm-serve, vLLM, NIM and OpenAI. One aiohttp session per event loop with an
unbounded connector, an asyncio.Semaphore bounding requests in flight, a hard wall-clock timeout
per attempt and a single retry layer (see `generation.retry`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticKnownError
from taskseed.curation.errors import TaskseedError
from taskseed.generation.backends.base import (
    TRANSPORT,
    BackendConfig,
    TeacherRequest,
    TeacherResponse,
    Usage,
)
from taskseed.generation.backends.replies import schema_error
from taskseed.generation.backends.retry import (
    Failure,
    backoff_delay,
    error_message,
    is_rejected_request,
    is_retryable_status,
    parse_retry_after,
)
from taskseed.generation.servers.managed import ServerConfig

log = logging.getLogger(__name__)

def _strip_fences(text: str) -> str:
    """Drop a surrounding ```json ... ``` fence, as servers without structured output emit."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        body = stripped[3:-3]
        newline = body.find("\n")
        return body[newline + 1:] if newline >= 0 else body
    return text


@dataclass(slots=True)
class _LoopState:
    session: aiohttp.ClientSession
    semaphore: asyncio.Semaphore


OnResponse = Callable[[int, TeacherResponse], None]

# How a request asks for JSON that follows its schema: `json_schema` (OpenAI, vLLM, SGLang,
# llama.cpp's llama-server), `json` (TensorRT-LLM's own `{"type": "json", "schema": S}`,
# `tensorrt_llm/serve/openai_protocol.py`: read the same way by every 1.x trtllm-serve, while
# 1.2-era servers take a `json_schema` request's whole `{name, schema, strict}` wrapper as the
# schema), `json_object` with a `schema` (llama-cpp-python's server), `guided_json` (older
# vLLM), or `none` (the schema in the prompt, then parsed).
StructuredOutput = Literal["json_schema", "json", "json_object", "guided_json", "none"]


def structured_mode(value: Any) -> Any:
    """A structured-output mode; `true`/`false` mean `json_schema`/`none`."""
    if isinstance(value, bool):
        return "json_schema" if value else "none"
    return value


def with_schema_in_prompt(
    messages: list[dict[str, str]], schema: dict[str, Any]
) -> list[dict[str, str]]:
    """The messages with the reply's JSON schema spelled out in the last one."""
    note = ("\n\nReply with one JSON object, and nothing else, that follows this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False))
    last = {**messages[-1], "content": messages[-1]["content"] + note}
    return [*messages[:-1], last]


def auth_headers(api_key_env: str) -> dict[str, str]:
    key = os.environ.get(api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def missing_key(base_url: str | None, role: str, api_key_env: str) -> str | None:
    """A warning when `api_key_env` names an unset variable for a server that is not on
    this machine, or None."""
    if base_url is None or os.environ.get(api_key_env):
        return None
    if urllib.parse.urlsplit(base_url).hostname in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"{role} server {base_url}: ${api_key_env} is not set, so requests carry no API "
            "key (set it, or `api_key_env:` to the variable that holds the key)")


_WARNED: set[str] = set()


def probe_server(base_url: str, role: str, api_key_env: str, timeout_s: float) -> None:
    """`GET {base_url}/models` once; an unreachable server or a refused API key is a one-line
    TaskseedError naming the server as `{role} server`."""
    warning = missing_key(base_url, role, api_key_env)
    if warning and warning not in _WARNED:
        _WARNED.add(warning)
        print(f"taskseed: warning: {warning}", file=sys.stderr)
    url = f"{base_url.rstrip('/')}/models"
    request = urllib.request.Request(url, headers=auth_headers(api_key_env))
    try:
        with urllib.request.urlopen(request, timeout=min(timeout_s, 10.0)):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            message = error_message(exc.read())
            raise TaskseedError(f"{role} server {base_url} refused the API key in "
                                f"${api_key_env}: HTTP {exc.code}: {message}") from None
        return  # reachable; not every server lists its models
    except (urllib.error.URLError, OSError) as exc:
        cause = getattr(exc, "reason", exc)
        raise TaskseedError(f"{role} server {base_url} is unreachable: {cause}") from None


class OpenAIConfig(BackendConfig):
    """Any OpenAI-compatible server (`backend: openai`): trtllm-serve, vLLM, NIM, OpenAI.

    Give `base_url` for a server that runs elsewhere, or `server` for one the job starts on
    its node (`taskseed.execution.serving.serving` fills in `base_url`). The API key is read
    from the environment variable named by `api_key_env`; it is never part of a config.
    """

    backend: Literal["openai"] = "openai"
    server: Annotated[ServerConfig | None, TRANSPORT] = None
    base_url: str | None = Field(None, validate_default=True)
    model: str
    # Default: `json` for a managed trtllm-serve, `json_schema` otherwise.
    structured_output: StructuredOutput = "json_schema"
    api_key_env: Annotated[str, TRANSPORT] = "OPENAI_API_KEY"
    max_concurrency: Annotated[int, TRANSPORT] = Field(256, ge=1)
    timeout_s: Annotated[float, TRANSPORT] = Field(120.0, gt=0)
    max_retries: Annotated[int, TRANSPORT] = Field(4, ge=1)

    @field_validator("structured_output", mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return structured_mode(value)

    @field_validator("base_url")
    @classmethod
    def _url_or_server(cls, value: str | None, info: ValidationInfo) -> str | None:
        managed = info.data.get("server") is not None
        if value is None and not managed and "server" not in info.data:
            return value  # `server` itself was invalid; that error is the one to report
        if value is None and not managed:
            raise PydanticKnownError("missing")
        if value is not None and managed:
            raise ValueError("give either `base_url` (a running server) or `server` "
                             "(one the job starts), not both")
        if value is not None:
            parts = urllib.parse.urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"'{value}' is not an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _server_form(self) -> OpenAIConfig:
        if ("structured_output" not in self.model_fields_set and self.server is not None
                and self.server.launch == "trtllm-serve"):
            self.structured_output = "json"
        return self

    def identity(self) -> dict[str, Any]:
        """Without `server`: every non-TRANSPORT setting. With it: the server's checkpoint and
        launch kind instead of `base_url`, the same whatever node or port serves it."""
        identity = super().identity()
        if self.server is not None:
            identity.pop("base_url", None)
            identity["server"] = {"launch": self.server.launch,
                                  "checkpoint": self.server.checkpoint}
        return identity

    def served_at(self, base_url: str) -> OpenAIConfig:
        """This config pointed at its running managed server."""
        return self.model_copy(update={"base_url": base_url})

    def describe(self) -> str:
        if self.base_url is None and self.server is not None:
            return (f"a managed {self.server.launch} server for {self.server.checkpoint} "
                    f"(model {self.model})")
        return f"{self.base_url} (model {self.model})"

    def _url(self, role: str) -> str:
        if self.base_url is None:
            raise TaskseedError(f"{role} server is not running: {self.describe()} is started "
                                "by the job that uses it")
        return self.base_url

    @property
    def concurrency(self) -> int:
        return self.max_concurrency

    @property
    def concurrent_callers(self) -> bool:
        return True

    def managed_server(self) -> ServerConfig | None:
        return self.server

    def probe(self, role: str = "teacher") -> None:
        """`GET /models` once: a server that cannot be reached fails the run in one line,
        naming the server by the model's role (`teacher`, `judge`)."""
        probe_server(self._url(role), role, self.api_key_env, self.timeout_s)

    def build(self) -> OpenAITeacher:
        return OpenAITeacher(
            base_url=self._url("teacher"),
            model=self.model,
            api_key_env=self.api_key_env,
            max_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            structured_output=self.structured_output,
            # Stages ask again with a new sampling seed; the same request would repeat itself.
            retry_invalid_output=False,
        )


class OpenAITeacher:
    """`Teacher` over HTTP against an OpenAI-compatible chat completions endpoint.

    `base_url` includes the API prefix, e.g. `http://127.0.0.1:8000/v1`. The API key is read
    from the environment variable named by `api_key_env`; when unset, no Authorization header
    is sent. Use `generate()` from synchronous code, or `await agenerate()` (then
    `await aclose()`) from inside an event loop.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 256,
        timeout_s: float = 120,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        structured_output: bool | StructuredOutput = "json_schema",
        retry_invalid_output: bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if max_retries < 1:
            raise ValueError("max_retries (total attempts) must be >= 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.structured_output = structured_mode(structured_output)
        self.retry_invalid_output = retry_invalid_output
        self._url = f"{self.base_url}/chat/completions"
        self._key = SecretStr(os.environ.get(api_key_env) or "")
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.retries = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )

    __str__ = __repr__

    def stats(self) -> dict[str, int]:
        """Running totals since construction."""
        return {
            "requests_sent": self.requests_sent,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    def generate(
        self, requests: list[TeacherRequest], on_response: OnResponse | None = None
    ) -> list[TeacherResponse]:
        """Answer `requests` in order; blocks until done.

        Every thread of a process that calls this shares one event loop (a daemon thread of
        this teacher) and so one pool of `max_concurrency` requests in flight: stages and
        shards that run at once in a process keep the server busy together.
        `on_response(index, response)` is called, on that loop, as each request completes.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "OpenAITeacher.generate() was called inside a running event loop; "
                "use `await teacher.agenerate(requests)` there instead"
            )
        future = asyncio.run_coroutine_threadsafe(self.agenerate(requests, on_response),
                                                  self._pool_loop())
        return future.result()

    def _pool_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop every `generate` call of this process runs on, started once."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, daemon=True,
                                          name="taskseed-openai-pool")
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def agenerate(
        self, requests: list[TeacherRequest], on_response: OnResponse | None = None
    ) -> list[TeacherResponse]:
        """Answer `requests` concurrently, at most `max_concurrency` in flight, in order."""
        if not requests:
            return []
        state = self._state()
        if on_response is None:
            return list(await asyncio.gather(*(self._run(state, r) for r in requests)))

        async def run_one(index: int, request: TeacherRequest) -> TeacherResponse:
            response = await self._run(state, request)
            on_response(index, response)
            return response

        return list(await asyncio.gather(*(run_one(i, r) for i, r in enumerate(requests))))

    async def aclose(self) -> None:
        """Close the session bound to the running event loop."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.session.close()

    def close(self) -> None:
        """Close every session this teacher opened and its private event loop."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is not None and current in self._states:
            raise RuntimeError("inside a running event loop, use `await teacher.aclose()`")
        with self._lock:
            for loop, state in list(self._states.items()):
                if loop.is_closed():
                    continue
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(state.session.close(), loop).result(10)
                else:
                    loop.run_until_complete(state.session.close())
            self._states.clear()
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(10)
                self._loop.close()
            self._loop, self._thread = None, None

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAITeacher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None or state.session.closed:
            for dead in [lp for lp in self._states if lp.is_closed()]:
                del self._states[dead]
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            key = self._key.get_secret_value()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
            )
            state = _LoopState(session, asyncio.Semaphore(self.max_concurrency))
            self._states[loop] = state
        return state

    def _payload(self, request: TeacherRequest) -> bytes:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        schema = request.json_schema
        if schema is not None:
            mode = self.structured_output
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "record", "schema": schema, "strict": True},
                }
            elif mode == "json":
                body["response_format"] = {"type": "json", "schema": schema}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": schema}
            elif mode == "guided_json":
                body["guided_json"] = schema
            else:
                body["messages"] = with_schema_in_prompt(request.messages, schema)
        return orjson.dumps(body)

    async def _run(self, state: _LoopState, request: TeacherRequest) -> TeacherResponse:
        try:
            body = self._payload(request)
        except (TypeError, ValueError):
            self.failures += 1
            return TeacherResponse(finish_reason="error", error="bad_request")
        attempt = 0
        while True:
            async with state.semaphore:
                outcome = await self._attempt(state.session, body, request.json_schema)
            if isinstance(outcome, TeacherResponse):
                return outcome
            attempt += 1
            if not outcome.retryable or attempt >= self.max_retries:
                self.failures += 1
                # Not a warning: the stage may ask again, and its summary reports coverage.
                log.debug("request failed after %d attempt(s): %s %s",
                          attempt, outcome.reason, outcome.detail)
                return TeacherResponse(text=outcome.text, finish_reason=outcome.finish_reason,
                                       error=outcome.reason, detail=outcome.detail,
                                       fatal=outcome.fatal)
            self.retries += 1
            delay = backoff_delay(attempt - 1, self.backoff_base_s, self.backoff_max_s,
                                  outcome.retry_after)
            log.debug("retrying teacher request (%s) in %.3fs", outcome.reason, delay)
            await asyncio.sleep(delay)

    async def _attempt(
        self, session: aiohttp.ClientSession, body: bytes, schema: dict[str, Any] | None
    ) -> TeacherResponse | Failure:
        self.requests_sent += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                async with session.post(self._url, data=body) as resp:
                    status = resp.status
                    raw = await resp.read()
                    retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            return Failure("timeout")
        except aiohttp.ClientError:
            return Failure("connection")
        if status != 200:
            message = error_message(raw)
            retryable = is_retryable_status(status) and not is_rejected_request(status, message)
            return Failure(f"http_{status}", retryable, parse_retry_after(retry_after),
                           detail=message)
        return self._reply(raw, schema)

    def _reply(self, raw: bytes, schema: dict[str, Any] | None) -> TeacherResponse | Failure:
        """The response to a request from the body of the server's HTTP 200 answer."""
        try:
            payload = orjson.loads(raw)
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
            finish = choice.get("finish_reason") or "stop"
            usage = payload.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Failure("bad_response", detail=error_message(raw, 200), fatal=False)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if finish == "length":
            return Failure("truncated", self.retry_invalid_output, text=text,
                           finish_reason="length", fatal=False)
        if schema is not None:
            text = _strip_fences(text)
            try:
                value = orjson.loads(text)
            except ValueError:
                return Failure("invalid_json", self.retry_invalid_output, text=text,
                               finish_reason=finish, fatal=False)
            if schema_error(value, schema) is not None:
                return Failure("schema_mismatch", self.retry_invalid_output, text=text,
                               finish_reason=finish, fatal=False)
        return TeacherResponse(text=text, finish_reason=finish,
                               usage=Usage(prompt_tokens, completion_tokens))
