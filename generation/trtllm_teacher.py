"""A teacher on TensorRT-LLM's LLM API in this process, for GPU nodes.

Chat messages are rendered with the model's own chat template, every request carries its
own `SamplingParams` (seed, temperature, top_p, max_tokens and, when the request has a JSON
schema, `GuidedDecodingParams(json=schema)` decoded by xgrammar), and one batch goes to
`LLM.generate` at a time so the runtime schedules it in flight.

`tensorrt_llm` is imported only when a teacher is built; the pure helpers below (sampling
arguments, output mapping, batch fallback) work without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field
from taskseed.curation.errors import TaskseedError
from taskseed.generation.replies import schema_error
from taskseed.generation.teacher import BackendConfig, TeacherRequest, TeacherResponse, Usage

log = logging.getLogger(__name__)

MISSING_EXTRA = (
    "the tensorrt_llm backend needs the trtllm extra: pip install 'taskseed[trtllm]' on a GPU node"
)


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


def run_batch(
    generate: Callable[[list[str], list[Any]], Sequence[Any]],
    prompts: list[str | None],
    params: list[Any],
    schemas: list[dict[str, Any] | None],
    errors: list[str | None] | None = None,
) -> list[TeacherResponse]:
    """Answer a batch with one `generate` call, one response per prompt, in order.

    A request with an error already (e.g. its chat template failed; its prompt is None) is
    answered with that error. When the batched call raises (e.g. one prompt is longer than
    the engine allows), every prompt is retried alone so only the offending ones fail.
    """
    errors = errors or [None] * len(prompts)
    responses: list[TeacherResponse | None] = [None] * len(prompts)
    todo: list[int] = []
    for i, prompt in enumerate(prompts):
        if prompt is None or errors[i] is not None:
            responses[i] = TeacherResponse(finish_reason="error", error=errors[i] or "rejected")
        else:
            todo.append(i)
    if todo:
        try:
            outputs = generate([prompts[i] for i in todo], [params[i] for i in todo])
            for i, out in zip(todo, outputs, strict=True):
                responses[i] = to_response(out, schemas[i])
        except Exception as exc:  # noqa: BLE001
            log.warning("batched generate failed (%s); retrying requests one by one", exc)
            for i in todo:
                try:
                    [out] = generate([prompts[i]], [params[i]])
                    responses[i] = to_response(out, schemas[i])
                except Exception as one:  # noqa: BLE001
                    responses[i] = _rejected(one)
    return [r if r is not None else TeacherResponse(error="missing") for r in responses]


class TensorRTLLMConfig(BackendConfig):
    """TensorRT-LLM's LLM API in this process (`backend: tensorrt_llm`), on GPU nodes."""

    backend: Literal["tensorrt_llm"] = "tensorrt_llm"
    model: str
    tensor_parallel_size: int = Field(1, ge=1)

    def build(self) -> TensorRTLLMTeacher:
        return TensorRTLLMTeacher(self.model, tensor_parallel_size=self.tensor_parallel_size)


class TensorRTLLMTeacher:
    """`Teacher` running a model with TensorRT-LLM's `LLM` in this process.

    `model` is a Hugging Face model name or directory, or a TensorRT engine directory.
    Extra keyword arguments go to `LLM(...)` (e.g. `max_batch_size`, `kv_cache_config`).
    """

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        guided_decoding_backend: str = "xgrammar",
        **llm_kwargs: Any,
    ) -> None:
        try:
            from tensorrt_llm import LLM, SamplingParams
            from tensorrt_llm.llmapi import GuidedDecodingParams
        except ImportError:
            raise TaskseedError(MISSING_EXTRA) from None
        llm = LLM(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            guided_decoding_backend=guided_decoding_backend,
            **llm_kwargs,
        )
        self._bind(llm, model, SamplingParams, GuidedDecodingParams)

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

    def _generate(self, prompts: list[str], params: list[Any]) -> Sequence[Any]:
        return self._llm.generate(prompts, sampling_params=params, use_tqdm=False)

    def generate(
        self,
        requests: list[TeacherRequest],
        on_response: Callable[[int, TeacherResponse], None] | None = None,
    ) -> list[TeacherResponse]:
        """Answer the batch with one `LLM.generate` call; `on_response` sees each in order."""
        if not requests:
            return []
        prepared = [self._prepare(r) for r in requests]
        prompts = [p for p, _, _ in prepared]
        params = [s for _, s, _ in prepared]
        errors = [e for _, _, e in prepared]
        schemas = [r.json_schema for r in requests]
        responses = run_batch(self._generate, prompts, params, schemas, errors)
        self.requests_sent += len(requests)
        for i, response in enumerate(responses):
            self.prompt_tokens += response.usage.prompt_tokens
            self.completion_tokens += response.usage.completion_tokens
            if on_response is not None:
                on_response(i, response)
        return responses

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None and hasattr(llm, "shutdown"):
            llm.shutdown()
