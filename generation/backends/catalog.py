"""Teacher backends by `backend:` name; each is one module with its config class.

Adding a backend is one module (a `BackendConfig` subclass whose `build()` returns a
`Teacher`) and its line in `TeacherConfig` below.
"""

from __future__ import annotations

import json
import threading
from typing import Annotated

from pydantic import Tag
from taskseed.curation.io.yamlconf import tag_discriminator
from taskseed.generation.backends.base import Teacher
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.tensorrt_llm import TensorRTLLMConfig

TeacherConfig = Annotated[
    Annotated[EmbeddedConfig, Tag("embedded")]
    | Annotated[OpenAIConfig, Tag("openai")]
    | Annotated[TensorRTLLMConfig, Tag("tensorrt_llm")],
    tag_discriminator("backend", "embedded", ["embedded", "openai", "tensorrt_llm"]),
]
"""Which teacher answers requests: one config class per backend, chosen by `backend`."""


CHAT_CONFIGS = (EmbeddedConfig, OpenAIConfig, TensorRTLLMConfig)


def make_teacher(cfg: EmbeddedConfig | OpenAIConfig | TensorRTLLMConfig) -> Teacher:
    """Build the configured backend."""
    return cfg.build()


_SHARED: dict[str, list] = {}  # config key -> [teacher, users]
_SHARED_LOCK = threading.Lock()


def _key(cfg: EmbeddedConfig | OpenAIConfig | TensorRTLLMConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


def acquire_teacher(cfg: EmbeddedConfig | OpenAIConfig | TensorRTLLMConfig) -> Teacher:
    """The process's one backend for `cfg`: stages that run in turn in one process (a fused
    shard task) load a model once. Give it back with `release_teacher`."""
    with _SHARED_LOCK:
        entry = _SHARED.get(_key(cfg))
        if entry is None:
            entry = _SHARED[_key(cfg)] = [make_teacher(cfg), 0]
        entry[1] += 1
        return entry[0]


def release_teacher(cfg: EmbeddedConfig | OpenAIConfig | TensorRTLLMConfig) -> None:
    """One user fewer; the last one closes the backend."""
    with _SHARED_LOCK:
        entry = _SHARED.get(_key(cfg))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _SHARED[_key(cfg)]
    entry[0].close()
