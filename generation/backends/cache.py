"""A content-addressed cache of teacher responses that survives kill -9.

Responses are appended, one JSON line each, to a file per writer (stage and shard), and
flushed as they arrive. A line torn by a crash fails to parse and is ignored, so a rerun
sends again exactly the requests whose responses were not written. Failed responses are
never cached.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

from taskseed.generation.backends.base import Teacher, TeacherRequest, TeacherResponse, Usage

OnResponse = Callable[[int, TeacherResponse], None]


class RequestCache:
    """Responses keyed by `TeacherRequest.cache_key(model)`, stored under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._entries: dict[str, TeacherResponse] | None = None
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.RLock()  # shards of a process share one cache

    def _load(self) -> dict[str, TeacherResponse]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            entries: dict[str, TeacherResponse] = {}
            for path in sorted(self.directory.glob("*.jsonl")):
                with path.open(encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        try:
                            data = json.loads(line)
                            response = TeacherResponse(
                                text=data["text"],
                                finish_reason=data["finish_reason"],
                                usage=Usage(*data["usage"]),
                            )
                        except (json.JSONDecodeError, KeyError, TypeError):
                            continue  # a torn tail from a crash
                        entries[data["key"]] = response
            self._entries = entries
            return entries

    def get(self, key: str) -> TeacherResponse | None:
        return self._load().get(key)

    def put(self, writer: str, key: str, response: TeacherResponse) -> None:
        """Append a successful response and flush it to the OS before returning."""
        if not response.ok:
            return
        with self._lock:
            self._append(writer, key, response)

    def _append(self, writer: str, key: str, response: TeacherResponse) -> None:
        fh = self._files.get(writer)
        if fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fh = (self.directory / f"{writer}.jsonl").open("a", encoding="utf-8")
            self._files[writer] = fh
        usage = [response.usage.prompt_tokens, response.usage.completion_tokens]
        line = {"key": key, "text": response.text, "finish_reason": response.finish_reason,
                "usage": usage}
        fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        self._load()[key] = response

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


class CachedTeacher:
    """Answers from the cache first; sends only the misses, caching each as it arrives."""

    def __init__(self, inner: Teacher, cache: RequestCache | None) -> None:
        self.inner = inner
        self.cache = cache
        self.model = inner.model
        self._local = threading.local()  # shards that share it run in threads of their own

    @property
    def writer(self) -> str:
        """The cache file this thread's responses go to (a stage and shard)."""
        return getattr(self._local, "writer", "default")

    @writer.setter
    def writer(self, value: str) -> None:
        self._local.writer = value

    def _counts(self) -> Counter[str]:
        counts = getattr(self._local, "usage", None)
        if counts is None:
            counts = self._local.usage = Counter()
        return counts

    def usage(self) -> Counter[str]:
        """This thread's running totals: teacher_calls (sent), cache_hits, and tokens of
        sent requests."""
        return Counter(self._counts())

    def generate(
        self, requests: list[TeacherRequest], on_response: OnResponse | None = None
    ) -> list[TeacherResponse]:
        keys = [r.cache_key(self.model) for r in requests]
        cache = self.cache
        out = [cache.get(k) if cache else None for k in keys]
        missing = [i for i, hit in enumerate(out) if hit is None]
        # the caller's thread: `store` may run on the backend's own event-loop thread
        usage, writer = self._counts(), self.writer
        usage["cache_hits"] += len(requests) - len(missing)
        usage["teacher_calls"] += len(missing)

        stored: set[int] = set()

        def store(j: int, response: TeacherResponse) -> None:
            stored.add(j)
            usage["prompt_tokens"] += response.usage.prompt_tokens
            usage["completion_tokens"] += response.usage.completion_tokens
            usage["teacher_errors"] += not response.ok
            if cache is not None:
                cache.put(writer, keys[missing[j]], response)
            if on_response is not None:
                on_response(missing[j], response)

        if missing:
            sent = self.inner.generate([requests[i] for i in missing], on_response=store)
            for j, (i, response) in enumerate(zip(missing, sent, strict=True)):
                if j not in stored:
                    store(j, response)
                out[i] = response
        return [r for r in out if r is not None]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.inner.close()
