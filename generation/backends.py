"""Teacher configuration and the factory that builds a backend from it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from generation.teacher import Teacher


class TeacherConfig(BaseModel):
    """Which teacher answers requests. API keys are read from `api_key_env`, never stored."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["embedded", "openai", "tensorrt_llm"] = "embedded"
    model: str | None = None
    model_path: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 256
    timeout_s: float = 120.0
    max_retries: int = 4
    structured_output: bool = True
    n_ctx: int = 2048
    n_threads: int | None = None
    tensor_parallel_size: int = 1
    cache_dir: str | None = None


def make_teacher(cfg: TeacherConfig) -> Teacher:
    """Build the configured backend; GPU backends import their libraries only here."""
    if cfg.backend == "embedded":
        from generation.embedded import EmbeddedTeacher

        return EmbeddedTeacher(cfg.model_path, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)
    if cfg.backend == "openai":
        from generation.http_teacher import OpenAITeacher

        if not cfg.base_url or not cfg.model:
            raise ValueError("the openai backend needs `base_url` and `model`")
        return OpenAITeacher(
            base_url=cfg.base_url,
            model=cfg.model,
            api_key_env=cfg.api_key_env,
            max_concurrency=cfg.max_concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            structured_output=cfg.structured_output,
            # Stages ask again with a new sampling seed; the same request would repeat itself.
            retry_invalid_output=False,
        )
    from generation.trtllm_teacher import TensorRTLLMTeacher

    if not cfg.model:
        raise ValueError("the tensorrt_llm backend needs `model` (an engine dir or HF model)")
    return TensorRTLLMTeacher(cfg.model, tensor_parallel_size=cfg.tensor_parallel_size)
