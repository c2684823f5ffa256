"""Teacher stages that run in turn in one process share one backend: a fused shard task
loads its model once, and the last stage to finish closes it."""

from __future__ import annotations

from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.catalog import acquire_teacher, release_teacher
from taskseed.generation.backends.embedded import EmbeddedConfig


def test_one_model_per_process_for_one_config(tmp_path):
    cfg = EmbeddedConfig(model="smollm2", n_ctx=512, cache_dir=str(tmp_path))
    first = acquire_teacher(cfg)  # generate's setup
    second = acquire_teacher(cfg.model_copy())  # enrich's, an equal config
    assert second is first
    other = acquire_teacher(cfg.model_copy(update={"n_ctx": 1024}))
    assert other is not first
    release_teacher(cfg)  # generate is done; enrich still answers
    reply = second.generate([TeacherRequest([{"role": "user", "content": "Say hi."}])])
    assert reply[0].ok and reply[0].text
    release_teacher(cfg)
    assert first._llm is None  # the last user closed it
    assert acquire_teacher(cfg) is not first  # a new one after that
    release_teacher(cfg)
    release_teacher(cfg.model_copy(update={"n_ctx": 1024}))
