"""The generate stage: k seeds of a task as exemplars, N new examples per group."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import xxhash
from pydantic import BaseModel, ConfigDict, Field

from curation.errors import RowError
from curation.record import Lineage, Origin, Record, Reject, Sampling, Source
from curation.stage import BatchStage, StageResult
from curation.text import normalize_text
from generation.backends import TeacherConfig, make_teacher
from generation.prompts import render, response_schema, template_hash, template_name
from generation.teacher import Teacher, TeacherRequest, TeacherResponse


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exemplars: int = Field(3, ge=1, le=16)
    samples_per_group: int = Field(1, ge=1)
    groups_per_task: int | None = Field(None, ge=1)
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=16)
    seed: int = 0
    topics: list[str] = Field(default_factory=list)
    batch_size: int = Field(256, ge=1)


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


class GenerateStage(BatchStage):
    """Asks the teacher for new task-aligned examples and parses them into records."""

    name = "generate"

    def __init__(self, params: GenerateParams, teacher: TeacherConfig) -> None:
        super().__init__(params)
        self.teacher_cfg = teacher
        self._teacher: Teacher | None = None

    def fingerprint(self) -> str:
        blob = self.teacher_cfg.model_dump_json(exclude={"max_concurrency", "timeout_s"})
        return super().fingerprint() + xxhash.xxh3_64_hexdigest(blob.encode())

    def setup(self) -> None:
        if self._teacher is None:
            self._teacher = make_teacher(self.teacher_cfg)

    def teardown(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_teacher"] = None
        return state

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
                by_task[task], p.exemplars, p.groups_per_task, _stable_int(p.seed, shard, task)
            )
            for g, group in enumerate(groups):
                for s in range(p.samples_per_group):
                    n = _stable_int(p.seed, shard, task, g, s)
                    topic = p.topics[n % len(p.topics)] if p.topics else None
                    sampling = Sampling(p.temperature, p.top_p, p.max_tokens, n)
                    request = TeacherRequest(
                        messages=render(group[0].format, task, group, topic),
                        sampling=sampling,
                        json_schema=response_schema(group[0].format, group),
                    )
                    planned.append((group, request))
        return planned

    def process(self, batch: list[Record], shard: int) -> StageResult:
        self.setup()
        assert self._teacher is not None
        result = StageResult()
        planned = self.plan_requests(batch, shard)
        size = self.params.batch_size
        for start in range(0, len(planned), size):
            chunk = planned[start : start + size]
            responses = self._teacher.generate([req for _, req in chunk])
            result.counters["teacher_calls"] += len(chunk)
            for (group, request), response in zip(chunk, responses, strict=True):
                result.counters["completion_tokens"] += response.usage.completion_tokens
                self._collect(group, request, response, result)
        return result

    def _collect(
        self, group: list[Record], request: TeacherRequest, response: TeacherResponse,
        result: StageResult,
    ) -> None:
        try:
            if not response.ok:
                raise RowError("teacher_error", "response", response.error or "")
            if response.finish_reason == "length":
                raise RowError("truncated", "response", "the reply hit max_tokens")
            record = self.parse(group, request, response.text)
        except RowError as err:
            result.rejects.append(
                Reject(
                    stage=self.name,
                    reason=err.reason,
                    detail=str(err),
                    item_id=request.cache_key(self._model()),
                    item=json.dumps({"response": response.text[:4000]}, ensure_ascii=False),
                )
            )
            return
        copied = {normalize_text(r.question) for r in group}
        if normalize_text(record.question) in copied:
            result.rejects.append(
                Reject.of(self.name, "copied_exemplar", "question repeats an exemplar", record)
            )
            return
        result.items.append(record)

    def _model(self) -> str:
        return self._teacher.model if self._teacher is not None else str(self.teacher_cfg.model)

    def parse(self, group: list[Record], request: TeacherRequest, text: str) -> Record:
        """A record from the teacher's JSON reply, with lineage back to its seeds."""
        try:
            data = json.loads(text, strict=False)
        except json.JSONDecodeError as exc:
            raise RowError("unparsable", "response", exc.msg) from None
        if not isinstance(data, dict):
            raise RowError("unparsable", "response", "reply is not a JSON object")
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
                teacher_model=self._model(),
                prompt_template=template_name(fmt),
                prompt_hash=template_hash(fmt),
                sampling=request.sampling,
                stage=self.name,
            ),
        )



