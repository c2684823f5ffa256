"""Model backends by `backend:` name, found in this folder: every `BackendConfig` subclass
with a `backend` default defined in one of its modules is a backend (adding one is adding its
module). Chat backends answer chat requests (teachers, judges); score backends are reward
models (`capability = "score"`).
"""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any, Union

from pydantic import Tag
from pydantic_core import PydanticUndefined
from taskseed.curation.catalog import members
from taskseed.curation.io.yamlconf import tag_discriminator
from taskseed.generation.backends.base import BackendConfig, Teacher


def _is_backend(value: Any) -> bool:
    if not (isinstance(value, type) and issubclass(value, BackendConfig)):
        return False
    field = value.model_fields.get("backend")
    return field is not None and field.default is not PydanticUndefined


BACKENDS: dict[str, type[BackendConfig]] = {
    cls.model_fields["backend"].default: cls
    for cls in members("taskseed.generation.backends", _is_backend)
}
CHAT = {name: cls for name, cls in BACKENDS.items() if cls.capability == "chat"}
SCORE = {name: cls for name, cls in BACKENDS.items() if cls.capability == "score"}


def config_union(configs: dict[str, type[BackendConfig]], default: str) -> Any:
    """The config type of a `backend:`-tagged choice among `configs` (one-line errors)."""
    tagged = tuple(Annotated[cls, Tag(name)] for name, cls in configs.items())
    return Annotated[Union[tagged], tag_discriminator("backend", default, list(configs))]  # noqa: UP007


TeacherConfig = config_union(CHAT, "embedded")
"""Which model answers chat requests (the teacher, a judge): chosen by `backend`."""
ModelConfig = config_union(BACKENDS, "embedded")
"""Any model a config can name under `models:`: chat or score."""
RewardConfig = config_union(SCORE, "nim_reward")
"""Which reward model scores records: chosen by `backend`."""
CHAT_CONFIGS = tuple(CHAT.values())
REWARD_BACKENDS = tuple(SCORE)


def make_teacher(cfg: BackendConfig) -> Teacher:
    """Build the configured backend."""
    return cfg.build()


_SHARED: dict[str, list] = {}  # config key -> [teacher, users]
_SHARED_LOCK = threading.Lock()


def _key(cfg: BackendConfig) -> str:
    return json.dumps(cfg.model_dump(mode="json"), sort_keys=True)


def acquire_teacher(cfg: BackendConfig) -> Teacher:
    """The process's one backend for `cfg`: stages that run in turn in one process (a fused
    shard task) load a model once. Give it back with `release_teacher`."""
    with _SHARED_LOCK:
        entry = _SHARED.get(_key(cfg))
        if entry is None:
            entry = _SHARED[_key(cfg)] = [make_teacher(cfg), 0]
        entry[1] += 1
        return entry[0]


def release_teacher(cfg: BackendConfig) -> None:
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
