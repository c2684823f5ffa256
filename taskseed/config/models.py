"""The models a config can name under `models:`: teacher backends and reward backends.

A stage names the model it uses (`model: judge`); `teacher` is the generator, configured
under `teacher:`. Each model has its own backend, concurrency, request cache and budget
line (`budget.models.<name>`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Tag

from taskseed.curation.io.yamlconf import tag_discriminator
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.reward import (
    NIMRewardConfig,
    TensorRTLLMRewardConfig,
    VLLMRewardConfig,
)
from taskseed.generation.backends.tensorrt_llm import TensorRTLLMConfig

BACKENDS = ["embedded", "openai", "tensorrt_llm", "nim_reward", "vllm_reward",
            "tensorrt_llm_reward"]

ModelConfig = Annotated[
    Annotated[EmbeddedConfig, Tag("embedded")]
    | Annotated[OpenAIConfig, Tag("openai")]
    | Annotated[TensorRTLLMConfig, Tag("tensorrt_llm")]
    | Annotated[NIMRewardConfig, Tag("nim_reward")]
    | Annotated[VLLMRewardConfig, Tag("vllm_reward")]
    | Annotated[TensorRTLLMRewardConfig, Tag("tensorrt_llm_reward")],
    tag_discriminator("backend", "embedded", BACKENDS),
]
