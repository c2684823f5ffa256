"""The generate stage: k seeds of a task as exemplars, N new examples per group."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import xxhash
from pydantic import BaseModel, ConfigDict, Field

from curation.arrow import read_parquet
from curation.errors import RowError, TaskseedError
from curation.record import Lineage, Origin, Record, Reject, Sampling, Source
from curation.rundir import StageDir
from curation.stage import StageResult
from curation.text import normalize_text
from generation.prompts import render, response_schema, template_hash, template_name
from generation.replies import json_object
from generation.teacher import TeacherRequest, TeacherResponse
from generation.teacher_stage import TeacherStage


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exemplars: int = Field(3, ge=1, le=16)
    samples_per_group: int = Field(1, ge=1)
    groups_per_shard: int | None = Field(None, ge=1)
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=16)
    seed: int = 0
    topics: list[str] = Field(default_factory=list)
    batch_size: int = Field(256, ge=1)
    max_attempts: int = Field(2, ge=1, le=10)
    min_coverage: float = Field(0.0, ge=0, le=1)


RETRYABLE = {"unparsable", "truncated", "wrong_type", "missing_field", "label_out_of_range",
             "schema_mismatch"}
# Replies a backend already found invalid, by the reason it gives.
CONTENT_ERRORS = {"invalid_json": "unparsable", "truncated": "truncated",
                  "schema_mismatch": "schema_mismatch"}
FAILURES = RETRYABLE | {"teacher_error"}


def _reseeded(request: TeacherRequest, attempt: int) -> TeacherRequest:
    """The same request with another sampling seed, for another try."""
    sampling = replace(request.sampling, seed=_stable_int(request.sampling.seed, attempt))
    return replace(request, sampling=sampling)


def _stable_int(*parts: Any) -> int:
    return xxhash.xxh3_64_intdigest(json.dumps(parts).encode()) & 0x7FFFFFFF


def seed_groups(
    records: list[Record], k: int, max_groups: int | None, seed: int
) -> list[list[Record]]:
    """Deterministic groups of k seeds of one task (the last group may be smaller)."""
    ordered = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(ordered)
    groups = [ordered[i : i + k] for i in range(0, len(ordered), k)]
    return groups[:max_groups] if max_groups else groups


class GenerateStage(TeacherStage):
    """Asks the teacher for new task-aligned examples and parses them into records.

    A reply that is unparsable, truncated or off-schema is asked again with a new sampling
    seed, up to `max_attempts`; what still fails is a reject with its reason, and is also
    listed in the stage's `failures.jsonl`.
    """

    name = "generate"

    def plan_requests(
        self, batch: list[Record], shard: int
    ) -> list[tuple[list[Record], TeacherRequest]]:
        """Every (exemplar group, request) this shard asks the teacher for, in a fixed order."""
        p: GenerateParams = self.params
        by_task: dict[str, list[Record]] = defaultdict(list)
        for record in batch:
            by_task[record.task].append(record)
        planned = []
        for task in sorted(by_task):
            groups = seed_groups(
                by_task[task], p.exemplars, p.groups_per_shard, _stable_int(p.seed, shard, task)
            )
            for g, group in enumerate(groups):
                for s in range(p.samples_per_group):
                    n = _stable_int(p.seed, shard, task, g, s)
                    topic = p.topics[n % len(p.topics)] if p.topics else None
                    request = TeacherRequest(
                        messages=render(group[0].format, task, group, topic),
                        sampling=Sampling(p.temperature, p.top_p, p.max_tokens, n),
                        json_schema=response_schema(group[0].format, group),
                    )
                    planned.append((group, request))
        return planned

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        pending = self.plan_requests(batch, shard)
        result.counters["planned"] = len(pending)
        for attempt in range(self.params.max_attempts):
            responses = self.ask([req for _, req in pending], shard, result.counters)
            retry = []
            last = attempt + 1 == self.params.max_attempts
            for (group, request), response in zip(pending, responses, strict=True):
                try:
                    record = self._record(group, request, response)
                except RowError as err:
                    if err.reason in RETRYABLE and not last:
                        retry.append((group, _reseeded(request, attempt + 1)))
                        continue
                    result.rejects.append(self._failure(request, response, err))
                    continue
                self._keep(group, record, result)
            result.counters["retried"] += len(retry)
            pending = retry
            if not pending:
                break
        result.counters["accepted"] = len(result.items)
        return result

    def _record(
        self, group: list[Record], request: TeacherRequest, response: TeacherResponse
    ) -> Record:
        if not response.ok:
            reason = CONTENT_ERRORS.get(response.error or "", "teacher_error")
            raise RowError(reason, "response", response.error or "")
        if response.finish_reason == "length":
            raise RowError("truncated", "response", "the reply hit max_tokens")
        return self.parse(group, request, response.text)

    def _failure(self, request: TeacherRequest, response: TeacherResponse, err: RowError) -> Reject:
        return Reject(
            stage=self.name,
            reason=err.reason,
            detail=str(err),
            item_id=request.cache_key(self.model),
            item=json.dumps({"response": response.text[:4000]}, ensure_ascii=False),
        )

    def _keep(self, group: list[Record], record: Record, result: StageResult) -> None:
        copied = {normalize_text(r.question) for r in group}
        if normalize_text(record.question) in copied:
            result.rejects.append(
                Reject.of(self.name, "copied_exemplar", "question repeats an exemplar", record)
            )
            return
        result.items.append(record)

    def finalize(self, stage_dir: StageDir) -> None:
        """Write `failures.jsonl` and enforce the minimum coverage."""
        planned = accepted = 0
        with (stage_dir.path / "failures.jsonl").open("w", encoding="utf-8") as fh:
            for shard in stage_dir.done_shards():
                marker = stage_dir.read_marker(shard)
                planned += marker["counters"].get("planned", 0)
                accepted += marker["outputs"]
                for reject in read_parquet(stage_dir.rejects_path(shard), Reject):
                    if reject.reason in FAILURES:
                        fh.write(json.dumps(reject.to_dict(), ensure_ascii=False) + "\n")
        coverage = accepted / planned if planned else 1.0
        if coverage < self.params.min_coverage:
            raise TaskseedError(
                f"stage '{self.name}': coverage {coverage:.1%} ({accepted} of {planned} requests "
                f"gave a record) is below min_coverage {self.params.min_coverage:.0%}; "
                f"see {stage_dir.path / 'failures.jsonl'}"
            )

    def parse(self, group: list[Record], request: TeacherRequest, text: str) -> Record:
        """A record from the teacher's JSON reply, with lineage back to its seeds."""
        data = json_object(text)
        first = group[0]
        fmt = first.format
        choices = data.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise RowError("wrong_type", "choices", "expected a list of strings")
        choices = [c.strip() for c in choices]
        label = None
        if "answer_index" in data:
            index = data["answer_index"]
            if not isinstance(index, int) or not 0 <= index < len(choices):
                raise RowError("label_out_of_range", "answer_index", f"{index!r} out of range")
            answer, label = choices[index], "ABCDEFGHIJ"[index]
        else:
            answer = data.get("answer")
        question = data.get("question")
        for name, value in (("question", question), ("answer", answer)):
            if not isinstance(value, str) or not value.strip():
                raise RowError("missing_field", name, "missing or empty")
        tests = data.get("tests") or []
        return Record(
            task=first.task,
            family=first.family,
            format=fmt,
            origin=Origin.GENERATED,
            question=question.strip(),
            context=(data.get("context") or None),
            choices=choices,
            answer=answer.strip(),
            answer_label=label,
            reasoning=data.get("reasoning") or None,
            tests=[str(t) for t in tests] if isinstance(tests, list) else [],
            license=first.license,
            commercial=all(r.commercial for r in group),
            source=Source(
                dataset=first.source.dataset, config=first.source.config,
                split=first.source.split, row=-1, path=None,
            ),
            lineage=Lineage(
                seed_ids=[r.id for r in group],
                teacher_model=self.model,
                prompt_template=template_name(fmt),
                prompt_hash=template_hash(fmt),
                sampling=request.sampling,
                stage=self.name,
            ),
        )



