"""The base of stages that ask a teacher: lazy setup, the request cache, usage counters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import xxhash

from curation.stage import BatchStage
from generation.backends import TeacherConfig, make_teacher
from generation.cache import CachedTeacher, RequestCache
from generation.teacher import TeacherRequest, TeacherResponse

# Settings that change how requests are sent, not what is asked: not part of the fingerprint.
TRANSPORT_FIELDS = {"max_concurrency", "timeout_s", "max_retries", "cache_dir", "n_threads"}


class TeacherStage(BatchStage):
    """A batch stage with a teacher built once per worker process and never pickled."""

    def __init__(self, params: Any, teacher: TeacherConfig) -> None:
        super().__init__(params)
        self.teacher_cfg = teacher
        self._teacher: CachedTeacher | None = None

    def fingerprint(self) -> str:
        blob = self.teacher_cfg.model_dump_json(exclude=TRANSPORT_FIELDS)
        return super().fingerprint() + xxhash.xxh3_64_hexdigest(blob.encode())

    def setup(self) -> None:
        if self._teacher is None:
            cache_dir = self.teacher_cfg.cache_dir
            cache = RequestCache(Path(cache_dir)) if cache_dir else None
            self._teacher = CachedTeacher(make_teacher(self.teacher_cfg), cache)

    def teardown(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_teacher": None}

    @property
    def model(self) -> str:
        return self._teacher.model if self._teacher is not None else str(self.teacher_cfg.model)

    def ask(
        self, requests: list[TeacherRequest], shard: int, counters: Counter[str]
    ) -> list[TeacherResponse]:
        """Answer requests in batches; counts what was sent and what came from the cache."""
        self.setup()
        assert self._teacher is not None
        teacher = self._teacher
        teacher.writer = f"{self.name}-{shard:05d}"
        before = teacher.usage()
        out: list[TeacherResponse] = []
        size = self.params.batch_size
        for start in range(0, len(requests), size):
            out.extend(teacher.generate(requests[start : start + size]))
        counters.update({k: v - before[k] for k, v in teacher.usage().items()})
        return out
