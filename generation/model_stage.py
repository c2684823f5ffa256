"""The base of every stage that asks a model: one policy for all of them.

- The teacher is built once per worker process (never pickled) behind the request cache.
- `ask_all` asks, parses each reply with the stage's `parse`, and asks again with a new
  sampling seed when a reply is unparsable, truncated or off-schema, up to `max_attempts`;
  a request the backend could not answer (after its own transport retries) is final.
- The fingerprint covers the parameters, the model identity, the system prompt and every
  template the stage renders, so a changed prompt is a different stage.
- A request the teacher could not answer at all (unreachable, timed out, overloaded, or
  the request refused) stops the shard uncommitted with a one-line error carrying the
  server's message; replies already received are cached, so a rerun resumes.
- Every request that stays unusable is committed with its shard, whatever the stage does
  with its item; `finalize` lists them in `failures.jsonl` and enforces `min_coverage`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError, TaskseedError
from taskseed.curation.io import live_counts
from taskseed.curation.record import ModelText, Record, Reject
from taskseed.curation.stage import (
    BatchStage,
    BuildContext,
    StageOutput,
    StageParams,
    StageResult,
)
from taskseed.generation.backends.base import BackendConfig, TeacherRequest, TeacherResponse
from taskseed.generation.backends.cache import CachedTeacher, RequestCache
from taskseed.generation.backends.catalog import CHAT_CONFIGS, acquire_teacher, release_teacher
from taskseed.generation.prompts import prompts_hash

# Replies a backend already found invalid, by the reason it gives; any other error of a
# backend is a request it could not answer (`teacher_error`), which is not asked again.
CONTENT_ERRORS = {"invalid_json": "unparsable", "truncated": "truncated",
                  "schema_mismatch": "schema_mismatch"}
TEACHER_ERROR = "teacher_error"


class TeacherParams(StageParams):
    """The model a stage asks (a name under the config's `models:`, or `teacher`), its
    sampling, and the shared policy of every teacher stage."""

    model: str = "teacher"
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=16)
    batch_size: int = Field(256, ge=1)
    max_attempts: int = Field(3, ge=1, le=10)
    min_coverage: float = Field(0.5, ge=0, le=1)


TP = TypeVar("TP", bound=TeacherParams)
C = TypeVar("C")


@dataclass(frozen=True)
class Ask(Generic[C]):
    """One request of a stage and what its reply is parsed against (a seed group, a record).

    `task` and `examples` (how many records the prompt shows) are for plans and reports.
    """

    request: TeacherRequest
    about: C
    task: str
    examples: int = 1


@dataclass(frozen=True)
class Answer(Generic[C]):
    """The outcome of an ask: the parsed value, or the error that was final."""

    ask: Ask[C]
    response: TeacherResponse
    value: Any = None
    error: RowError | None = None


@dataclass(frozen=True, slots=True)
class FailedRequest:
    """A request that gave nothing usable, as a reject item: its cache key, what it asked
    about (a record id, or the seed ids of a generate request) and the reply."""

    id: str
    response: str
    about: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"about": self.about, "response": self.response[:4000]}


def about_id(about: Any) -> str:
    """The ids an ask is about: a record's, a seed group's, or an enrich want's record."""
    if isinstance(about, list):
        return ",".join(str(getattr(r, "id", "?")) for r in about)
    record = getattr(about, "record", about)
    return str(getattr(record, "id", ""))


class FailureLog:
    """Keeps, per shard, the model requests that stayed unusable, so the runner commits them
    with the shard (`StageResult.failures`) and `write_failures` lists them in the stage's
    `failures.jsonl`, whatever the stage then did with the item (dropped or kept)."""

    _failed: dict[int, list[Reject]]

    def note_failure(self, shard: int, reason: str, detail: str, item: Any) -> None:
        self.__dict__.setdefault("_failed", {}).setdefault(shard, []).append(
            Reject.of(self.name, reason, detail, item))  # type: ignore[attr-defined]

    def process_shard(self, batch: list[Any], shard: int) -> StageResult:
        failed = self.__dict__.setdefault("_failed", {})
        failed[shard] = []
        try:
            result = self.process(batch, shard)  # type: ignore[attr-defined]
            result.failures.extend(failed.get(shard, []))
        finally:
            failed.pop(shard, None)
        return result


def write_failures(output: StageOutput) -> Path:
    """`failures.jsonl` of a finished stage: every failure its shards committed."""
    path = output.path / "failures.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for shard in output.done_shards():
            marker = output.read_marker(shard)
            if marker.failures is not None:
                rows = marker.failures
            else:  # a shard committed without a failure list: its failed-request rejects
                rows = [r.to_dict() for r in output.read_rejects(shard)
                        if r.reason in FAILURE_REASONS] if marker.rejects else []
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def stable_int(*parts: Any) -> int:
    """A non-negative 31-bit integer fixed by `parts` (sampling seeds)."""
    return xxhash.xxh3_64_intdigest(json.dumps(parts).encode()) & 0x7FFFFFFF


def reseeded(request: TeacherRequest, attempt: int) -> TeacherRequest:
    """The same request with another sampling seed, for another try."""
    sampling = replace(request.sampling, seed=stable_int(request.sampling.seed, attempt))
    return replace(request, sampling=sampling)


def chat_model(context: BuildContext, name: str) -> BackendConfig:
    """The named model's config; KeyError when it is missing or not a chat model."""
    cfg = context.model(name)
    if not isinstance(cfg, CHAT_CONFIGS):
        raise KeyError(f"model '{name}' is not a chat model (backend "
                       f"'{getattr(cfg, 'backend', '?')}')")
    return cfg


def _count_task(counters: Counter[str], task: str, response: TeacherResponse) -> None:
    """Per-task model usage (`calls:<task>`, `prompt_tokens:<task>`, ...), for reports."""
    counters[f"calls:{task}"] += 1
    counters[f"prompt_tokens:{task}"] += response.usage.prompt_tokens
    counters[f"completion_tokens:{task}"] += response.usage.completion_tokens


class TeacherUnavailable(TaskseedError):
    """The model gave no answer to some requests: the shard is not done; rerun to resume."""


class ModelStage(FailureLog):
    """What every stage that asks a model shares, chat or score: its model's config, one
    client per worker process (never pickled), the readiness probe, the fingerprint of the
    model's identity, usage counters, and the one-line error for requests left unanswered.
    Subclasses say how a client is opened and closed."""

    calls_models = True
    # Whether the model's text goes into records (generate, enrich): then its terms go into
    # their lineage and decide whether they are commercial. A judge that only scores: no.
    writes_text: ClassVar[bool] = False
    unit: ClassVar[str] = "requests"  # what the unanswered-request error counts
    role: ClassVar[str | None] = None  # how messages name the model (None: its config name)
    cache_counter: ClassVar[str] = "cache_hits"  # the counter of answers from the cache

    def __init__(self, params: Any, model_cfg: BackendConfig) -> None:
        super().__init__(params)  # type: ignore[call-arg]
        self.model_cfg = model_cfg
        self._client: Any = None

    def open_client(self) -> Any:
        raise NotImplementedError

    def close_client(self, client: Any) -> None:
        client.close()

    def fingerprint(self) -> str:
        identity = json.dumps(self.model_cfg.identity(), sort_keys=True)
        if self.writes_text:
            identity += json.dumps(self.model_cfg.terms().identity())
        return super().fingerprint() + xxhash.xxh3_64_hexdigest(  # type: ignore[misc]
            identity.encode())

    def check_ready(self) -> None:
        self.model_cfg.probe(self.params.model)  # type: ignore[attr-defined]

    def setup(self) -> None:
        if self._client is None:
            self._client = self.open_client()

    def teardown(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self.close_client(client)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_failed": {}}

    @property
    def model(self) -> str:
        if self._client is not None:
            return str(self._client.model)
        return str(getattr(self.model_cfg, "model", None))

    def count_usage(self, counters: Counter[str], before: Counter[str]) -> None:
        """What the client sent (`teacher_calls`, tokens) and answered from the cache since
        `before`."""
        for key, value in self._client.usage().items():
            counters[self.cache_counter if key == "cache_hits" else key] += value - before[key]

    def unanswered(self, error: str | None, detail: str, failed: int, total: int,
                   shard: int) -> str:
        """The one-line error of requests the model gave no answer to."""
        said = f": {detail}" if detail else ""
        env = getattr(self.model_cfg, "api_key_env", None)
        hint = ""
        if env and error in ("http_401", "http_403"):
            hint = f" (the API key comes from ${env}" + (
                "" if os.environ.get(env) else ", which is not set") + ")"
        return (f"stage '{self.name}' shard {shard}: {failed} of {total} {self.unit} got no "  # type: ignore[attr-defined]
                f"answer from the {self.role or self.params.model} "  # type: ignore[attr-defined]
                f"{self.model_cfg.describe()}: "
                f"{error}{said}{hint}; what was already received is kept, so rerunning the "
                "same command resumes")


class TeacherStage(ModelStage, BatchStage[TP]):
    """A batch stage that asks a chat model; subclasses plan asks and parse replies."""

    system_prompt: ClassVar[str]
    templates: ClassVar[tuple[str, ...]]  # every template the stage may render
    prompt_dir: ClassVar[Path | None] = None  # where those templates are (None: generate's)
    outcome: ClassVar[str] = "gave a record"  # what an accepted request gave, for reports

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> TeacherStage:
        return cls(params, chat_model(context, params.model))

    def fingerprint(self) -> str:
        return super().fingerprint() + prompts_hash(self.system_prompt, self.templates,
                                                    self.prompt_dir)

    def credit(self, record: Record) -> Record:
        """The record with this stage's model in its lineage, and commercial only when the
        model's terms allow training on its outputs."""
        terms = self.model_cfg.terms()
        lineage = replace(record.lineage, models=[
            *record.lineage.models, ModelText(self.name, self.model, terms.license)])
        return replace(record, lineage=lineage,
                       commercial=record.commercial and terms.allows_training)

    def open_client(self) -> CachedTeacher:
        cache_dir = self.model_cfg.cache_dir
        cache = RequestCache(Path(cache_dir)) if cache_dir else None
        return CachedTeacher(acquire_teacher(self.model_cfg), cache)

    def close_client(self, client: CachedTeacher) -> None:
        if client.cache is not None:
            client.cache.close()
        release_teacher(self.model_cfg)

    # --- what a stage defines ------------------------------------------------------------

    def plan_requests(self, batch: list[Any], shard: int) -> list[Ask[Any]]:
        """Every ask this shard makes, in a fixed order (`taskseed plan` counts them)."""
        raise NotImplementedError

    def parse(self, ask: Ask[Any], text: str) -> Any:
        """The value of a reply's text; RowError when it is unusable (it is asked again)."""
        raise NotImplementedError

    def planned_outputs(self, batch: list[Any], asks: list[Ask[Any]]) -> int:
        """At most how many records this stage passes on for a batch (for `taskseed plan`)."""
        return len(batch)

    # --- the shared policy ---------------------------------------------------------------

    def ask(
        self, requests: list[TeacherRequest], shard: int, counters: Counter[str]
    ) -> list[TeacherResponse]:
        """Answer requests in batches; counts what was sent and what came from the cache."""
        self.setup()
        teacher: CachedTeacher = self._client
        teacher.writer = f"{self.name}-{shard:05d}"
        before = teacher.usage()
        out: list[TeacherResponse] = []
        size = self.params.batch_size
        concurrency = self.model_cfg.concurrency
        meter = live_counts.current()  # answers may arrive on the backend's own thread
        meter.add(requests_planned=len(requests))
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            left = [len(batch)]

            def answered(_: int, response: TeacherResponse, left: list[int] = left) -> None:
                left[0] -= 1
                meter.put(in_flight=min(concurrency, left[0]))
                meter.add(requests_done=1, completion_tokens=response.usage.completion_tokens)

            meter.put(in_flight=min(concurrency, len(batch)))
            out.extend(teacher.generate(batch, answered))
        self.count_usage(counters, before)
        unanswered = [r for r in out if r.fatal]
        if unanswered:
            first = unanswered[0]
            raise TeacherUnavailable(self.unanswered(first.error, first.detail, len(unanswered),
                                                     len(out), shard))
        return out

    def ask_all(self, asks: list[Ask[C]], shard: int, counters: Counter[str]) -> list[Answer[C]]:
        """Ask, parse, and ask again with a new seed while replies are unusable."""
        counters["planned"] += len(asks)
        answers: dict[int, Answer[C]] = {}
        pending = list(enumerate(asks))
        for attempt in range(self.params.max_attempts):
            responses = self.ask([a.request for _, a in pending], shard, counters)
            last = attempt + 1 == self.params.max_attempts
            retry = []
            for (i, ask), response in zip(pending, responses, strict=True):
                _count_task(counters, ask.task, response)
                try:
                    value = self._read(ask, response)
                except RowError as err:
                    if err.reason != TEACHER_ERROR and not last:
                        retry.append((i, replace(ask, request=reseeded(ask.request, attempt + 1))))
                    else:
                        answers[i] = Answer(ask, response, error=err)
                        self.note_failure(shard, err.reason, f"{ask.task}: {err}",
                                          self.failed(answers[i]))
                    continue
                answers[i] = Answer(ask, response, value=value)
            counters["retried"] += len(retry)
            pending = retry
            if not pending:
                break
        return [answers[i] for i in range(len(asks))]

    def _read(self, ask: Ask[Any], response: TeacherResponse) -> Any:
        if not response.ok:
            reason = CONTENT_ERRORS.get(response.error or "", TEACHER_ERROR)
            raise RowError(reason, "response", response.error or "")
        if response.finish_reason == "length":
            raise RowError("truncated", "response", "the reply hit max_tokens")
        return self.parse(ask, response.text)

    def failed(self, answer: Answer[Any]) -> FailedRequest:
        """An answer that stayed unusable, as a reject item."""
        return FailedRequest(answer.ask.request.cache_key(self.model), answer.response.text,
                             about_id(answer.ask.about))

    def finalize(self, output: StageOutput) -> None:
        """Write `failures.jsonl` (every failed request with its reason) and enforce the
        minimum coverage (the share of planned requests that were accepted)."""
        failures = write_failures(output)
        planned = accepted = 0
        for shard in output.done_shards():
            counters = output.read_marker(shard).counters
            planned += counters.get("planned", 0)
            accepted += counters.get("accepted", 0)
        coverage = accepted / planned if planned else 1.0
        if coverage < self.params.min_coverage:
            raise TaskseedError(
                f"stage '{self.name}': coverage {coverage:.1%} ({accepted} of {planned} requests "
                f"{self.outcome}) is below min_coverage {self.params.min_coverage:.0%}; "
                f"see {failures}"
            )


# Reject reasons that mean a request failed (listed in failures.jsonl).
FAILURE_REASONS = frozenset({
    TEACHER_ERROR, "unparsable", "truncated", "schema_mismatch", "wrong_type", "missing_field",
    "label_out_of_range", "echoed_prompt",
})
