"""The embedded CPU teacher: a packaged GGUF model on llama.cpp, in this process.

`model` names a packaged model (`qwen2.5-coder-1.5b`, the default; `smollm2`, the tiny one
for fast tests); `model_path` any GGUF file instead. One sequence at a time: for batched
decoding serve the same model with llama-server (`server: {launch: llama-server}`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io import packaged_models
from taskseed.generation.backends.base import (
    TRANSPORT,
    BackendConfig,
    TeacherRequest,
    TeacherResponse,
    Usage,
)


def packaged_model_path(name: str = packaged_models.TINY) -> Path:
    """The GGUF file of a packaged model, found without importing its packages."""
    return packaged_models.model_path(name)


def served_name(name: str) -> str:
    """The name a packaged model answers to: its file name without `.gguf`."""
    return Path(packaged_models.packaged(name).file_name).stem


class EmbeddedConfig(BackendConfig):
    """The embedded CPU teacher (`backend: embedded`, the default)."""

    backend: Literal["embedded"] = "embedded"
    model: str = packaged_models.DEFAULT  # a packaged model's name
    model_path: str | None = None  # a GGUF file instead of the packaged model
    n_ctx: int = Field(2048, ge=256)
    n_threads: Annotated[int | None, TRANSPORT] = None

    @field_validator("model")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in packaged_models.MODELS:
            raise ValueError(f"unknown packaged model '{value}' "
                             f"(known: {', '.join(sorted(packaged_models.MODELS))})")
        return value

    def build(self) -> EmbeddedTeacher:
        path = Path(self.model_path) if self.model_path else packaged_model_path(self.model)
        name = path.stem if self.model_path else served_name(self.model)
        return EmbeddedTeacher(path, name, n_ctx=self.n_ctx, n_threads=self.n_threads)

    def describe(self) -> str:
        return f"the embedded model {self.model_path or self.model}"

    def terms_name(self) -> str:
        return Path(self.model_path).stem if self.model_path else served_name(self.model)


class EmbeddedTeacher:
    """A llama.cpp model in this process; JSON-schema-constrained output when asked for."""

    def __init__(self, path: Path, name: str, n_ctx: int = 2048,
                 n_threads: int | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise TaskseedError("the embedded teacher needs llama-cpp-python") from None
        self.model = name
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
