"""A teacher on TensorRT-LLM's LLM API in this process, for GPU nodes.

Since TensorRT-LLM 1.0, `tensorrt_llm.LLM` is the PyTorch backend: `model` is a Hugging
Face checkpoint (a hub name or a local directory), not an engine directory. Chat messages
are rendered with the model's own chat template; every request carries its own
`SamplingParams` (seed, temperature, top_p, max_tokens and, when the request has a JSON
schema, `GuidedDecodingParams(json=schema)` decoded by xgrammar). Each prompt is submitted
on its own with `LLM.generate_async` so the runtime schedules them in flight, and each
result is collected from its own future: one bad prompt fails alone.

With one GPU the LLM API would spawn an MPI worker process; inside Dask and Slurm workers
the teacher runs in the worker itself (`TLLM_WORKER_USE_SINGLE_PROCESS=1`).

`tensorrt_llm` is imported only when a teacher is built; the pure helpers below (sampling
arguments, output mapping, per-future collection) work without it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field
from taskseed.curation.errors import TaskseedError
from taskseed.generation.backends.base import (
    TRANSPORT,
    BackendConfig,
    TeacherRequest,
    TeacherResponse,
    Usage,
)
from taskseed.generation.backends.replies import schema_error

log = logging.getLogger(__name__)

SINGLE_PROCESS_ENV = "TLLM_WORKER_USE_SINGLE_PROCESS"


def missing(backend: str) -> str:
    """The one-line error of a TensorRT-LLM backend where TensorRT-LLM is not installed."""
    return (f"the {backend} backend needs TensorRT-LLM: use NVIDIA's TensorRT-LLM container, "
            "or install tensorrt-llm from NVIDIA's package index on Python 3.12 (see the "
            "README)")


MISSING_EXTRA = missing("tensorrt_llm")


SEED_SINCE = (1, 2, 2)  # the first release whose PyTorch sampler honours a request's seed


def seed_honoured(version: str) -> bool:
    """Whether TensorRT-LLM `version`'s PyTorch sampler honours `SamplingParams.seed`: only
    releases after 1.2.1 do (1.2.1 and earlier sample unseeded, so reruns differ)."""
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
        if not piece.isdigit():  # 1.3.0rc1: a pre-release of 1.3.0
            break
    return tuple((parts + [0, 0, 0])[:3]) >= SEED_SINCE


def start_llm(backend: str, model: str, tensor_parallel_size: int, **llm_kwargs: Any
              ) -> tuple[Any, Any]:
    """TensorRT-LLM's `LLM` for a checkpoint in this process, with the `tensorrt_llm` module
    (for its parameter classes). One rank runs here rather than in a spawned MPI worker."""
    if tensor_parallel_size == 1:
        os.environ.setdefault(SINGLE_PROCESS_ENV, "1")
    try:
        import tensorrt_llm
        import tensorrt_llm.llmapi  # noqa: F401 - GuidedDecodingParams
    except ImportError:
        raise TaskseedError(missing(backend)) from None
    version = str(getattr(tensorrt_llm, "__version__", "0"))
    if not seed_honoured(version):
        log.warning("TensorRT-LLM %s ignores per-request seeds (honoured after 1.2.1): "
                    "samples are not reproducible across reruns", version)
    llm = tensorrt_llm.LLM(model=model, tensor_parallel_size=tensor_parallel_size, **llm_kwargs)
    return llm, tensorrt_llm


def stop_llm(llm: Any) -> None:
    """Shut an `LLM` down (its executor and workers)."""
    if llm is not None and hasattr(llm, "shutdown"):
        llm.shutdown()


def sampling_kwargs(
    request: TeacherRequest, guided: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments of `SamplingParams` for one request.

    Temperature 0 means greedy decoding, expressed as `top_k=1` (the LLM API wants a
    positive temperature). `add_special_tokens` is off because the chat template already
    wrote the special tokens. `guided` is `GuidedDecodingParams`; it is used only when the
    request has a JSON schema.
    """
    s = request.sampling
    kwargs: dict[str, Any] = {"max_tokens": s.max_tokens, "add_special_tokens": False}
    if s.temperature <= 0:
        kwargs["top_k"] = 1
    else:
        kwargs["temperature"] = s.temperature
        kwargs["top_p"] = s.top_p
    if s.seed is not None:
        kwargs["seed"] = s.seed
    if request.json_schema is not None and guided is not None:
        kwargs["guided_decoding"] = guided(json=request.json_schema)
    return kwargs


def to_response(output: Any, json_schema: dict[str, Any] | None = None) -> TeacherResponse:
    """A `TeacherResponse` from a `RequestOutput` (`outputs[0]`, `prompt_token_ids`).

    `length` and `stop` pass through as finish reasons; `timeout` and `cancelled` become
    errors; replies to schema requests must be JSON that follows the schema, as with the
    HTTP teacher.
    """
    completion = output.outputs[0]
    text = completion.text or ""
    finish = completion.finish_reason or "stop"
    usage = Usage(len(output.prompt_token_ids or ()), len(completion.token_ids or ()))
    if finish not in ("stop", "length"):
        return TeacherResponse(text=text, finish_reason=finish, usage=usage, error=finish)
    if finish == "stop" and json_schema is not None:
        try:
            value = json.loads(text, strict=False)
        except ValueError:
            return TeacherResponse(text, finish, usage, error="invalid_json")
        if schema_error(value, json_schema) is not None:
            return TeacherResponse(text, finish, usage, error="schema_mismatch")
    return TeacherResponse(text=text, finish_reason=finish, usage=usage)


def _rejected(exc: BaseException) -> TeacherResponse:
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return TeacherResponse(finish_reason="error", error=f"rejected: {line[:200]}")


def collect(
    submit: Callable[[str, Any], Any],
    prompts: list[str | None],
    params: list[Any],
    schemas: list[dict[str, Any] | None],
    errors: list[str | None] | None = None,
) -> list[TeacherResponse]:
    """Submit every prompt on its own, then take each result from its own future.

    A request with an error already (its chat template or sampling parameters failed; its
    prompt is None) is answered with that error. A prompt the runtime refuses at submission
    (e.g. longer than the model allows) or whose future fails is an error for that request
    only; the others still run.
    """
    errors = errors or [None] * len(prompts)
    responses: list[TeacherResponse | None] = [None] * len(prompts)
    futures: dict[int, Any] = {}
    for i, prompt in enumerate(prompts):
        if prompt is None or errors[i] is not None:
            responses[i] = TeacherResponse(finish_reason="error", error=errors[i] or "rejected")
            continue
        try:
            futures[i] = submit(prompt, params[i])
        except Exception as exc:  # noqa: BLE001 - the runtime's refusal, reported per request
            responses[i] = _rejected(exc)
    for i, future in futures.items():
        try:
            responses[i] = to_response(future.result(), schemas[i])
        except Exception as exc:  # noqa: BLE001 - one failed request, not the batch
            log.warning("request %d failed in TensorRT-LLM: %s", i, exc)
            responses[i] = _rejected(exc)
    return [r if r is not None else TeacherResponse(error="missing") for r in responses]


class TensorRTLLMConfig(BackendConfig):
    """TensorRT-LLM's LLM API in this process (`backend: tensorrt_llm`), on GPU nodes.

    `model` is a Hugging Face checkpoint: a hub name or a local directory. `engine_args` go
    to `LLM(...)` as the LLM API's own settings (`tensorrt_llm/llmapi/llm_args.py`), e.g.
    `kv_cache_config: {free_gpu_memory_fraction: 0.45}`, `max_batch_size`,
    `trust_remote_code`; they change how it runs, not what it writes, so they stay out of
    the fingerprint.
    """

    backend: Literal["tensorrt_llm"] = "tensorrt_llm"
    model: str
    tensor_parallel_size: int = Field(1, ge=1)
    engine_args: Annotated[dict[str, Any], TRANSPORT] = Field(default_factory=dict)

    def describe(self) -> str:
        settings = f", LLM settings {self.engine_args}" if self.engine_args else ""
        return (f"TensorRT-LLM in process ({self.model}, tensor parallelism "
                f"{self.tensor_parallel_size}{settings})")

    def in_process_gpus(self) -> int:
        return self.tensor_parallel_size

    def build(self) -> TensorRTLLMTeacher:
        return TensorRTLLMTeacher(self.model, tensor_parallel_size=self.tensor_parallel_size,
                                  **self.engine_args)


class TensorRTLLMTeacher:
    """`Teacher` running a model with TensorRT-LLM's `LLM` in this process.

    `model` is a Hugging Face checkpoint (hub name or local directory).
    Extra keyword arguments go to `LLM(...)` (e.g. `max_batch_size`, `kv_cache_config`).
    """

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        guided_decoding_backend: str = "xgrammar",
        **llm_kwargs: Any,
    ) -> None:
        llm, trt = start_llm("tensorrt_llm", model, tensor_parallel_size,
                             guided_decoding_backend=guided_decoding_backend, **llm_kwargs)
        self._bind(llm, model, trt.SamplingParams, trt.llmapi.GuidedDecodingParams)

    @classmethod
    def wrap(
        cls,
        llm: Any,
        model: str,
        sampling_params: Callable[..., Any],
        guided_decoding_params: Callable[..., Any] | None,
    ) -> TensorRTLLMTeacher:
        """A teacher over an already built `LLM` and the API's parameter classes."""
        teacher = cls.__new__(cls)
        teacher._bind(llm, model, sampling_params, guided_decoding_params)
        return teacher

    def _bind(
        self,
        llm: Any,
        model: str,
        sampling_params: Callable[..., Any],
        guided_decoding_params: Callable[..., Any] | None,
    ) -> None:
        self.model = model
        self._llm = llm
        self._sampling_params = sampling_params
        self._guided = guided_decoding_params
        self.requests_sent = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def render(self, messages: list[dict[str, str]]) -> str:
        """The chat prompt as text, rendered with the model's chat template."""
        return self._llm.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def _prepare(self, request: TeacherRequest) -> tuple[str | None, Any, str | None]:
        try:
            prompt = self.render(request.messages)
        except Exception as exc:  # noqa: BLE001
            return None, None, f"rejected: chat template: {str(exc)[:160]}"
        try:
            params = self._sampling_params(**sampling_kwargs(request, self._guided))
        except Exception as exc:  # noqa: BLE001
            return None, None, f"rejected: sampling params: {str(exc)[:160]}"
        return prompt, params, None

    def _submit(self, prompt: str, params: Any) -> Any:
        return self._llm.generate_async(prompt, sampling_params=params)

    def generate(
        self,
        requests: list[TeacherRequest],
        on_response: Callable[[int, TeacherResponse], None] | None = None,
    ) -> list[TeacherResponse]:
        """Submit every request, then collect each; `on_response` sees each in order."""
        if not requests:
            return []
        prepared = [self._prepare(r) for r in requests]
        prompts = [p for p, _, _ in prepared]
        params = [s for _, s, _ in prepared]
        errors = [e for _, _, e in prepared]
        schemas = [r.json_schema for r in requests]
        responses = collect(self._submit, prompts, params, schemas, errors)
        self.requests_sent += len(requests)
        for i, response in enumerate(responses):
            self.prompt_tokens += response.usage.prompt_tokens
            self.completion_tokens += response.usage.completion_tokens
            if on_response is not None:
                on_response(i, response)
        return responses

    def close(self) -> None:
        llm, self._llm = self._llm, None
        stop_llm(llm)
