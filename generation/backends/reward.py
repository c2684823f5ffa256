"""Reward model backends: one config class each, chosen by `backend`, all behind one scorer.

- `nim_reward`: an NVIDIA NIM style reward endpoint. POST `{base_url}/chat/completions` with
  `{"model", "messages": [user, assistant]}` (and `"logprobs": true` when `logprobs` is set);
  the scores are `name:score` pairs in `choices[0].message.content`, or
  `choices[0].logprobs.content[*]` with `token` = name and `logprob` = score.
- `vllm_reward`: vLLM's pooling API (`vllm serve <model> --runner pooling`, formerly
  `--task reward`). POST `{root}/pooling` with `{"model", "messages"}` (plus `task` and
  `use_activation` when set); the answer is `{"data": [{"index", "object": "pooling", "data":
  list[float] | list[list[float]]}], "usage"}`, one value per label, or one row per token for
  token reward models (the last row is the outcome). `/classify` answers `data[0].probs`.
  Shapes as in vLLM's vllm/entrypoints/pooling/pooling/protocol.py (PoolingChatRequest,
  PoolingResponseData), vllm/entrypoints/pooling/base/protocol.py (ChatRequestMixin) and
  vllm/entrypoints/pooling/classify/protocol.py (ClassificationData).
- `tensorrt_llm_reward`: TensorRT-LLM's `LLM` (PyTorch backend) in this process: the chat
  template renders the conversation, `SamplingParams(max_tokens=1, return_context_logits=True)`
  runs it, and the score is `context_logits[-1][logit_index]` of the request's output: the
  vocabulary logit of a causal reward LM (index 0 for Llama-3.x-Nemotron-70B-Reward), or the
  head's output of a reward head such as Qwen2ForRewardModel (which returns the last
  position only).

HTTP backends share the teacher's transport (`OpenAITeacher`: retries on 408/409/429/5xx with
Retry-After and jitter, a concurrency cap, the API key from the environment variable named by
`api_key_env`). Every backend sits behind the request cache: a (model, question, answer) that
was scored once is never sent again, across processes and reruns.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import orjson
import xxhash
from pydantic import Field
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import (
    TRANSPORT,
    BackendConfig,
    ModelOutcome,
    Teacher,
    TeacherRequest,
    TeacherResponse,
    Usage,
)
from taskseed.generation.backends.cache import CachedTeacher, RequestCache
from taskseed.generation.backends.openai import OpenAITeacher, probe_server
from taskseed.generation.backends.retry import Failure, error_message
from taskseed.generation.backends.tensorrt_llm import missing, start_llm, stop_llm

NEMOTRON_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
MISSING_TRTLLM = missing("tensorrt_llm_reward")
PARSE_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError)


@dataclass(slots=True)
class RewardReply(ModelOutcome):
    """The scores of one (question, answer), or why there are none (a reply that came but
    could not be read is an error of that item only)."""

    scores: dict[str, float] = field(default_factory=dict)


class RewardScorer(Protocol):
    """Scores (question, answer) pairs, one reply per pair, in order."""

    model: str
    writer: str  # the cache file this scorer appends to (a stage and shard)

    def score(self, items: list[tuple[str, str]]) -> list[RewardReply]: ...

    def usage(self) -> Counter[str]:
        """Running totals: teacher_calls (requests sent), cache_hits, tokens."""
        ...

    def close(self) -> None: ...


# --- reading replies -----------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"\s*([A-Za-z_][\w.\-]*)\s*[:=]\s*({_NUMBER})\s*")


def _finite(name: str, value: Any) -> float:
    number = float(value)
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"score {name!r} is not a finite number: {value!r}")
    return number


def parse_pairs(text: str) -> dict[str, float]:
    """`helpfulness:1.6,correctness:1.8`: pairs split by commas, semicolons or newlines."""
    scores: dict[str, float] = {}
    for piece in re.split(r"[,;\n]", text):
        if not piece.strip():
            continue
        match = _PAIR.fullmatch(piece)
        if match is None:
            raise ValueError(f"not a name:score pair: {piece.strip()[:80]!r}")
        scores[match.group(1)] = _finite(match.group(1), match.group(2))
    if not scores:
        raise ValueError("the reply holds no scores")
    return scores


def nim_scores(payload: dict[str, Any]) -> dict[str, float]:
    """The scores of a NIM reward reply: the content's pairs, else the logprobs' tokens."""
    choice = payload["choices"][0]
    content = (choice.get("message") or {}).get("content") or ""
    entries = (choice.get("logprobs") or {}).get("content") or []
    try:
        return parse_pairs(content)
    except ValueError:
        if not entries:
            raise
    scores = {str(e["token"]).strip(): _finite(e["token"], e["logprob"]) for e in entries}
    if not all(scores):
        raise ValueError("a logprobs entry has an empty token")
    return scores


def pooled_values(item: dict[str, Any], per_token: bool = False) -> list[float]:
    """The outcome values of one `/pooling` (`data`) or `/classify` (`probs`) result: a flat
    list is one value per label (per token when `per_token`: the last is taken), a nested
    list one row per token (the last row is taken)."""
    data = item["data"] if "data" in item else item["probs"]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [_finite("data", data)]
    if not isinstance(data, list) or not data:
        raise ValueError(f"pooling data is not a non-empty list: {str(data)[:80]}")
    if all(isinstance(row, list) for row in data):
        data = data[-1]
    elif per_token:
        data = [data[-1]]
    return [_finite("data", v) for v in data]


def named(values: list[float], names: list[str]) -> dict[str, float]:
    if len(values) != len(names):
        raise ValueError(f"the model gave {len(values)} values for {len(names)} score names "
                         f"({', '.join(names)})")
    return dict(zip(names, values, strict=True))


def last_logit(logits: Any, index: int) -> float:
    """`logits[-1][index]` of a [positions, width] tensor or nested list, as a float."""
    if logits is None or len(logits) == 0:
        raise ValueError("the output has no context logits (return_context_logits=True?)")
    row = logits[-1]
    if index >= len(row):
        raise ValueError(f"logit_index {index} is outside the logits' width {len(row)}")
    return _finite("logit", float(row[index]))


# --- the scorer: any backend behind the request cache --------------------------------------


def reward_request(question: str, answer: str) -> TeacherRequest:
    """The conversation a reward model scores: the question, then the answer."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return TeacherRequest(messages=messages, sampling=Sampling(temperature=0.0, max_tokens=1))


def to_reply(response: TeacherResponse) -> RewardReply:
    if not response.ok:
        return RewardReply(error=response.error, detail=response.detail, fatal=response.fatal)
    try:
        data = json.loads(response.text)
        return RewardReply(scores={str(k): _finite(k, v) for k, v in data.items()})
    except PARSE_ERRORS:
        return RewardReply(error="unparsable", detail=response.text[:200])


class RewardModel:
    """A reward backend (a `Teacher` whose replies are the scores as JSON text) behind the
    request cache; `score` sends each distinct pair that is not cached yet, once."""

    def __init__(self, client: Teacher, cache: RequestCache | None, key: str) -> None:
        self.model = client.model
        self._cached = CachedTeacher(client, cache)
        self._cached.model = key  # cache keys cover the backend's identity, not just its name

    @property
    def writer(self) -> str:
        return self._cached.writer

    @writer.setter
    def writer(self, value: str) -> None:
        self._cached.writer = value

    def score(self, items: list[tuple[str, str]]) -> list[RewardReply]:
        requests = [reward_request(q, a) for q, a in items]
        keys = [r.cache_key(self._cached.model) for r in requests]
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        unique = list(first)
        sent = self._cached.generate([requests[first[key]] for key in unique])
        replies = {key: to_reply(r) for key, r in zip(unique, sent, strict=True)}
        return [replies[key] for key in keys]

    def usage(self) -> Counter[str]:
        return self._cached.usage()

    def close(self) -> None:
        self._cached.close()


class RewardBackendConfig(BackendConfig):
    """Base of the reward backends' configs."""

    capability: ClassVar[str] = "score"

    def attributes(self) -> list[str] | None:
        """The attributes every reply has, when the config fixes them (None: the server's)."""
        return None

    def client(self) -> Teacher:
        """The backend, answering `reward_request`s with the scores as JSON text."""
        raise NotImplementedError

    def cache_model(self) -> str:
        """The model part of cache keys: the backend, its model and its identity."""
        identity = json.dumps(self.identity(), sort_keys=True)
        return f"reward:{self.backend}:{xxhash.xxh3_64_hexdigest(identity.encode())}"

    def build(self) -> RewardModel:  # type: ignore[override]
        cache = RequestCache(Path(self.cache_dir)) if self.cache_dir else None
        return RewardModel(self.client(), cache, self.cache_model())


# --- HTTP backends ---------------------------------------------------------------------------


class RewardHTTPClient(OpenAITeacher):
    """The teacher's HTTP transport with a reward request body and reply reader.

    A body that is not JSON is retried (`bad_response`); a JSON reply without readable scores
    is final for its item (`unparsable`, not fatal).
    """

    def __init__(self, url: str, model: str, body: dict[str, Any],
                 read: Callable[[dict[str, Any]], dict[str, float]], **transport: Any) -> None:
        super().__init__(url, model, structured_output="none", retry_invalid_output=False,
                         **transport)
        self._url = url
        self._body = body
        self._read = read

    def _payload(self, request: TeacherRequest) -> bytes:
        return orjson.dumps({"model": self.model, "messages": request.messages, **self._body})

    def _reply(self, raw: bytes, schema: dict[str, Any] | None) -> TeacherResponse | Failure:
        try:
            payload = orjson.loads(raw)
        except ValueError:
            return Failure("bad_response", detail=error_message(raw, 200), fatal=False)
        try:
            scores = self._read(payload)
        except PARSE_ERRORS as exc:
            return Failure("unparsable", retryable=False, detail=str(exc)[:300], fatal=False)
        usage = payload.get("usage") or {}
        tokens = Usage(int(usage.get("prompt_tokens") or 0),
                       int(usage.get("completion_tokens") or 0))
        return TeacherResponse(text=json.dumps(scores), usage=tokens)


class HTTPRewardConfig(RewardBackendConfig):
    """What every HTTP reward backend has; the API key comes from `$api_key_env`."""

    base_url: str
    model: str
    api_key_env: Annotated[str, TRANSPORT] = "NVIDIA_API_KEY"
    max_concurrency: Annotated[int, TRANSPORT] = Field(64, ge=1)
    timeout_s: Annotated[float, TRANSPORT] = Field(60.0, gt=0)
    max_retries: Annotated[int, TRANSPORT] = Field(4, ge=1)

    @property
    def concurrency(self) -> int:
        return self.max_concurrency

    @property
    def concurrent_callers(self) -> bool:
        return True

    def transport(self) -> dict[str, Any]:
        return {"api_key_env": self.api_key_env, "max_concurrency": self.max_concurrency,
                "timeout_s": self.timeout_s, "max_retries": self.max_retries}


class NIMRewardConfig(HTTPRewardConfig):
    """An NVIDIA NIM reward endpoint (`backend: nim_reward`), e.g. nemotron-4-340b-reward;
    `base_url` includes the API prefix (`https://integrate.api.nvidia.com/v1`)."""

    backend: Literal["nim_reward"] = "nim_reward"
    logprobs: Annotated[bool, TRANSPORT] = False  # ask for the scores as logprobs too

    def describe(self) -> str:
        return f"{self.base_url} (reward model {self.model})"

    def probe(self, role: str = "reward") -> None:
        probe_server(self.base_url, role, self.api_key_env, self.timeout_s)

    def client(self) -> RewardHTTPClient:
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        body = {"logprobs": True} if self.logprobs else {}
        return RewardHTTPClient(url, self.model, body, nim_scores, **self.transport())


class VLLMRewardConfig(HTTPRewardConfig):
    """vLLM's pooling API (`backend: vllm_reward`) of `vllm serve <model> --runner pooling`.

    `base_url` is the server root (a trailing `/v1` is dropped: `/pooling` and `/classify`
    live at the root). `score_names` names the values of a reply in order (one, `reward`,
    for a single-score model); `per_token` reads a flat list as one value per token.
    """

    backend: Literal["vllm_reward"] = "vllm_reward"
    endpoint: Literal["pooling", "classify"] = "pooling"
    task: Literal["classify", "token_classify"] | None = None
    use_activation: bool | None = None
    score_names: list[str] = Field(default_factory=lambda: ["reward"], min_length=1)
    per_token: bool = False
    api_key_env: Annotated[str, TRANSPORT] = "VLLM_API_KEY"

    @property
    def root(self) -> str:
        return re.sub(r"/v1/*$", "", self.base_url.rstrip("/"))

    def attributes(self) -> list[str] | None:
        return list(self.score_names)

    def describe(self) -> str:
        return f"{self.root}/{self.endpoint} (reward model {self.model})"

    def probe(self, role: str = "reward") -> None:
        probe_server(f"{self.root}/v1", role, self.api_key_env, self.timeout_s)

    def client(self) -> RewardHTTPClient:
        body: dict[str, Any] = {}
        if self.task is not None and self.endpoint == "pooling":
            body["task"] = self.task
        if self.use_activation is not None:
            body["use_activation"] = self.use_activation
        names, per_token = list(self.score_names), self.per_token

        def read(payload: dict[str, Any]) -> dict[str, float]:
            return named(pooled_values(payload["data"][0], per_token), names)

        url = f"{self.root}/{self.endpoint}"
        return RewardHTTPClient(url, self.model, body, read, **self.transport())


# --- TensorRT-LLM in process -----------------------------------------------------------------


class TensorRTLLMRewardConfig(RewardBackendConfig):
    """A reward model on TensorRT-LLM's `LLM` in this process (`backend: tensorrt_llm_reward`).

    `model` is a Hugging Face checkpoint; the score, named `score_name`, is the last position's
    context logit at `logit_index` (see the module docstring). `engine_args` go to `LLM(...)`
    as for the `tensorrt_llm` teacher (e.g. `kv_cache_config: {free_gpu_memory_fraction:
    0.3}` beside a teacher on the same GPU).
    """

    backend: Literal["tensorrt_llm_reward"] = "tensorrt_llm_reward"
    model: str
    tensor_parallel_size: int = Field(1, ge=1)
    engine_args: Annotated[dict[str, Any], TRANSPORT] = Field(default_factory=dict)
    score_name: str = "reward"
    logit_index: int = Field(0, ge=0)

    def attributes(self) -> list[str] | None:
        return [self.score_name]

    def describe(self) -> str:
        return f"TensorRT-LLM in process ({self.model})"

    def in_process_gpus(self) -> int:
        return self.tensor_parallel_size

    def client(self) -> TensorRTLLMRewardModel:
        return TensorRTLLMRewardModel(self.model, self.score_name, self.logit_index,
                                      tensor_parallel_size=self.tensor_parallel_size,
                                      **self.engine_args)


class TensorRTLLMRewardModel:
    """Scores conversations with TensorRT-LLM's `LLM`; a `Teacher` whose replies are scores.

    Each conversation is submitted on its own (`generate_async`) and read from its own
    future: a conversation the chat template or the runtime refuses fails alone.
    """

    def __init__(self, model: str, score_name: str = "reward", logit_index: int = 0,
                 tensor_parallel_size: int = 1, **llm_kwargs: Any) -> None:
        llm, trt = start_llm("tensorrt_llm_reward", model, tensor_parallel_size, **llm_kwargs)
        self._bind(llm, model, trt.SamplingParams, score_name, logit_index)

    @classmethod
    def wrap(cls, llm: Any, model: str, sampling_params: Callable[..., Any],
             score_name: str = "reward", logit_index: int = 0) -> TensorRTLLMRewardModel:
        """A scorer over an already built `LLM` and the API's `SamplingParams`."""
        scorer = cls.__new__(cls)
        scorer._bind(llm, model, sampling_params, score_name, logit_index)
        return scorer

    def _bind(self, llm: Any, model: str, sampling_params: Callable[..., Any],
              score_name: str, logit_index: int) -> None:
        self.model = model
        self._llm = llm
        self._sampling_params = sampling_params
        self.score_name = score_name
        self.logit_index = logit_index
        self.requests_sent = 0

    def _submit(self, request: TeacherRequest, params: Any) -> Any:
        prompt = self._llm.tokenizer.apply_chat_template(
            request.messages, tokenize=False, add_generation_prompt=False)
        return self._llm.generate_async(prompt, sampling_params=params)

    def _read(self, output: Any) -> TeacherResponse:
        value = last_logit(output.context_logits, self.logit_index)
        usage = Usage(len(getattr(output, "prompt_token_ids", None) or ()), 0)
        return TeacherResponse(text=json.dumps({self.score_name: value}), usage=usage)

    def generate(
        self,
        requests: list[TeacherRequest],
        on_response: Callable[[int, TeacherResponse], None] | None = None,
    ) -> list[TeacherResponse]:
        params = self._sampling_params(max_tokens=1, return_context_logits=True,
                                       add_special_tokens=False)
        responses: list[TeacherResponse] = []
        futures: dict[int, Any] = {}
        for i, request in enumerate(requests):
            try:
                futures[i] = self._submit(request, params)
            except Exception as exc:  # noqa: BLE001 - this conversation's refusal only
                responses.append(_refused(exc))
            else:
                responses.append(TeacherResponse())
        for i, future in futures.items():
            try:
                responses[i] = self._read(future.result())
            except Exception as exc:  # noqa: BLE001 - this conversation's failure only
                responses[i] = _refused(exc)
        self.requests_sent += len(requests)
        if on_response is not None:
            for i, response in enumerate(responses):
                on_response(i, response)
        return responses

    def close(self) -> None:
        llm, self._llm = self._llm, None
        stop_llm(llm)


def _refused(exc: BaseException) -> TeacherResponse:
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return TeacherResponse(finish_reason="error", error="rejected", detail=line[:200])


