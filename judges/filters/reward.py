"""The reward filter: a reward model scores each record's answer to its question.

Every attribute the model gives is written into `record.scores` as `reward.<name>`, with the
weighted aggregate as `reward.score`, for kept and dropped records alike. A record is dropped
with `low_reward` when an attribute is below its threshold or the aggregate below `min_score`,
and with `reward_unscored` when the model's reply was unusable. A reward model that could not
answer at all stops the shard uncommitted; scores already received are cached, so a rerun
resumes without asking for them again.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field
from taskseed.curation.errors import TaskseedError
from taskseed.curation.formats.base import LETTERS
from taskseed.curation.record import Record
from taskseed.curation.stage import (
    KEEP,
    BuildContext,
    FilterStage,
    StageOutput,
    StageParams,
    Verdict,
    drop,
)
from taskseed.curation.verdict import ungraded
from taskseed.generation.backends.catalog import REWARD_BACKENDS
from taskseed.generation.backends.reward import (
    RewardBackendConfig,
    RewardReply,
    RewardScorer,
)
from taskseed.generation.model_stage import (
    FailedRequest,
    ModelStage,
    TeacherUnavailable,
    write_failures,
)

# Nemotron-4-340B-Reward's single-score weights (model card).
NEMOTRON_WEIGHTS = {"helpfulness": 0.3, "correctness": 0.74, "coherence": 0.46,
                    "complexity": 0.47, "verbosity": -0.33}
PREFIX = "reward."
LOW, UNSCORED = "low_reward", "reward_unscored"


class RewardParams(StageParams):
    """`model` names a reward model of the pipeline config; `weights` make the aggregate
    (`reward.score`) from the attributes; `thresholds` are per-attribute minimums."""

    model: str = "reward"
    weights: dict[str, float] = Field(default_factory=lambda: dict(NEMOTRON_WEIGHTS),
                                      min_length=1)
    min_score: float | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    batch_size: int = Field(64, ge=1)
    max_attempts: int = Field(3, ge=1, le=10)  # tries of an item whose reply was unreadable
    on_failure: Literal["keep", "drop"] = "keep"  # a record whose reply had no scores


class RewardUnavailable(TeacherUnavailable):
    """The reward model gave no answer for some records: the shard is not done."""


def reward_question(record: Record) -> str:
    """The question as the reward model sees it: context, question, lettered options."""
    parts = [record.context] if record.context else []
    parts.append(record.question)
    if record.choices:
        parts.append("\n".join(f"{LETTERS[i % 26]}) {c}" for i, c in enumerate(record.choices)))
    return "\n\n".join(parts)


def reward_answer(record: Record) -> str:
    """The answer as the reward model sees it: the reasoning, then the answer."""
    return f"{record.reasoning}\n\n{record.answer}" if record.reasoning else record.answer


def aggregate(scores: dict[str, float], weights: dict[str, float]) -> float:
    return round(sum(w * scores[name] for name, w in weights.items()), 6)


class RewardStage(ModelStage, FilterStage[RewardParams]):
    """Scores records with a reward model and keeps those that clear the thresholds."""

    name = "reward"
    params_model = RewardParams
    unit = "records"
    role = "reward model"
    cache_counter = "reward_cached"

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> RewardStage:
        try:
            backend = context.model(params.model)
        except KeyError as err:
            raise TaskseedError(f"stage '{cls.name}': {err.args[0]}") from None
        if not isinstance(backend, RewardBackendConfig):
            kind = getattr(backend, "backend", type(backend).__name__)
            raise TaskseedError(
                f"stage '{cls.name}': model '{params.model}' is a {kind} backend, not a reward "
                f"model (backend: {', '.join(REWARD_BACKENDS)})")
        check_attributes(cls.name, params, backend)
        if not backend.cache_dir:
            cache = str((context.run_dir / "cache").resolve())
            backend = backend.model_copy(update={"cache_dir": cache})
        return cls(params, backend)

    def open_client(self) -> RewardScorer:
        return self.model_cfg.build()

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        counters["planned"] += len(batch)
        replies = self.score(batch, shard, counters)
        verdicts = []
        for record, reply in zip(batch, replies, strict=True):
            verdict = self.verdict(record, reply)
            if verdict.reason == UNSCORED:  # listed in failures.jsonl, kept by default
                self.note_failure(shard, UNSCORED, verdict.detail,
                                  FailedRequest(record.id, reply.detail, record.id))
                verdict = ungraded(self.params.on_failure, UNSCORED, verdict.detail, counters)
            else:
                counters["accepted"] += 1
            verdicts.append(verdict)
        return verdicts

    def finalize(self, output: StageOutput) -> None:
        write_failures(output)

    def score(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[RewardReply]:
        """Score in batches; stops with RewardUnavailable when the model could not answer."""
        self.setup()
        scorer: RewardScorer = self._client
        scorer.writer = f"{self.name}-{shard:05d}"
        before = scorer.usage()
        replies: list[RewardReply] = []
        try:
            size = self.params.batch_size
            for start in range(0, len(batch), size):
                chunk = batch[start : start + size]
                got = self._score_again(scorer, [(reward_question(r), reward_answer(r))
                                                 for r in chunk], counters)
                failed = [r for r in got if r.fatal]
                if failed:
                    raise RewardUnavailable(self.unanswered(
                        failed[0].error, failed[0].detail, len(failed), len(chunk), shard))
                replies.extend(got)
        finally:
            self.count_usage(counters, before)
        return replies

    def _score_again(self, scorer: RewardScorer, items: list[tuple[str, str]],
                     counters: Counter[str]) -> list[RewardReply]:
        """Scores of items; a reply that came but could not be read is asked again, up to
        `max_attempts` in all (failed replies are never cached, so each try is sent)."""
        got = scorer.score(items)
        for _ in range(1, self.params.max_attempts):
            again = [i for i, reply in enumerate(got) if not reply.ok and not reply.fatal]
            if not again:
                break
            counters["retried"] += len(again)
            for i, reply in zip(again, scorer.score([items[i] for i in again]), strict=True):
                got[i] = reply
        return got

    def verdict(self, record: Record, reply: RewardReply) -> Verdict:
        """Write the scores into the record, then keep or drop it."""
        if not reply.ok:
            detail = f"{reply.error}: {reply.detail}" if reply.detail else str(reply.error)
            return drop(UNSCORED, detail)
        params = self.params
        missing = sorted((set(params.weights) | set(params.thresholds)) - set(reply.scores))
        if missing:
            got = ", ".join(sorted(reply.scores))
            return drop(UNSCORED, f"the reply has no {', '.join(missing)} score "
                                  f"(it has: {got})")
        total = aggregate(reply.scores, params.weights)
        for name, value in reply.scores.items():
            record.scores[PREFIX + name] = value
        record.scores[PREFIX + "score"] = total
        for name, minimum in params.thresholds.items():
            if reply.scores[name] < minimum:
                return drop(LOW, f"{name} {reply.scores[name]:g} is below its threshold "
                                 f"{minimum:g}")
        if params.min_score is not None and total < params.min_score:
            return drop(LOW, f"score {total:g} is below min_score {params.min_score:g}")
        return KEEP


def check_attributes(stage: str, params: RewardParams, backend: RewardBackendConfig) -> None:
    """A one-line error when weights or thresholds name attributes the model never gives."""
    known = backend.attributes()
    if known is None:
        return
    unknown = sorted((set(params.weights) | set(params.thresholds)) - set(known))
    if unknown:
        raise TaskseedError(
            f"stage '{stage}': weights and thresholds name {', '.join(unknown)}, but model "
            f"'{params.model}' ({backend.backend}) gives only: {', '.join(known)}; set e.g. "
            f"weights: {{{known[0]}: 1.0}}")

