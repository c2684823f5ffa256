"""The generate stage: k seeds of a task as exemplars, N new examples per group."""

from __future__ import annotations

import random
from collections import defaultdict

from pydantic import Field
from taskseed.curation.formats import DEFINITIONS, answer_format
from taskseed.curation.record import Lineage, Origin, Record, Sampling, Source
from taskseed.curation.stage import KEEP, StageResult, Verdict, drop
from taskseed.curation.text import containment, normalize_text
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.replies import json_object
from taskseed.generation.model_stage import Ask, TeacherParams, TeacherStage, stable_int
from taskseed.generation.prompts import (
    EXEMPLAR_TEMPLATE,
    SYSTEM_PROMPT,
    render,
    response_schema,
    template_hash,
    template_name,
)

Group = list[Record]


class GenerateParams(TeacherParams):
    exemplars: int = Field(3, ge=1, le=16)
    samples_per_group: int = Field(1, ge=1)
    groups_per_shard: int | None = Field(None, ge=1)
    seed: int = 0
    topics: list[str] = Field(default_factory=list)
    max_seed_overlap: float = Field(0.5, ge=0, le=1)  # share of 5-grams found in one exemplar


def seed_groups(
    records: list[Record], k: int, max_groups: int | None, seed: int
) -> list[list[Record]]:
    """Deterministic groups of k seeds of one task (the last group may be smaller)."""
    ordered = sorted(records, key=lambda r: r.id)
    random.Random(seed).shuffle(ordered)
    groups = [ordered[i : i + k] for i in range(0, len(ordered), k)]
    return groups[:max_groups] if max_groups else groups


def example_text(record: Record) -> str:
    """The text that makes an example what it is: context, question, options and answer."""
    return " ".join([record.context or "", record.question, *record.choices, record.answer])


def copied_exemplar(record: Record, group: Group, max_overlap: float = 0.5) -> Verdict:
    """Drop a generated record that repeats one of its exemplars' questions, or whose text
    shares more than `max_overlap` of its word 5-grams with one exemplar (a near-copy)."""
    if normalize_text(record.question) in {normalize_text(r.question) for r in group}:
        return drop("copied_exemplar", "question repeats an exemplar")
    text = example_text(record)
    for seed in group:
        shared = containment(text, example_text(seed), 5)
        if shared > max_overlap:
            return drop("near_copy_of_seed", f"{shared:.0%} of its 5-grams are in seed {seed.id}")
    return KEEP


class GenerateStage(TeacherStage[GenerateParams]):
    """Asks the teacher for new task-aligned examples and parses them into records.

    Unusable replies are asked again (see `TeacherStage.ask_all`); what still fails is a
    reject with its reason, also listed in the stage's `failures.jsonl`. A new example
    that copies an exemplar's question is dropped.
    """

    name = "generate"
    params_model = GenerateParams
    system_prompt = SYSTEM_PROMPT
    templates = (*sorted(f.template for f in DEFINITIONS.values()), EXEMPLAR_TEMPLATE)
    writes_text = True

    def plan_requests(self, batch: list[Record], shard: int) -> list[Ask[Group]]:
        """Every (exemplar group, request) this shard asks the teacher for, in a fixed order."""
        p = self.params
        by_task: dict[str, list[Record]] = defaultdict(list)
        for record in batch:
            by_task[record.task].append(record)
        planned = []
        for task in sorted(by_task):
            groups = seed_groups(
                by_task[task], p.exemplars, p.groups_per_shard, stable_int(p.seed, shard, task)
            )
            for g, group in enumerate(groups):
                for s in range(p.samples_per_group):
                    n = stable_int(p.seed, shard, task, g, s)
                    topic = p.topics[n % len(p.topics)] if p.topics else None
                    request = TeacherRequest(
                        messages=render(group[0].format, task, group, topic),
                        sampling=Sampling(p.temperature, p.top_p, p.max_tokens, n),
                        json_schema=response_schema(group[0].format, group),
                    )
                    planned.append(Ask(request, group, task, len(group)))
        return planned

    def planned_outputs(self, batch: list[Record], asks: list[Ask[Group]]) -> int:
        return len(asks)

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        asks = self.plan_requests(batch, shard)
        for ask in asks:
            result.counters[f"candidates:{ask.task}"] += 1
        for answer in self.ask_all(asks, shard, result.counters):
            if answer.error is not None:
                result.drop(self.name, self.failed(answer), answer.error.reason,
                            str(answer.error))
            else:
                verdict = copied_exemplar(answer.value, answer.ask.about,
                                          self.params.max_seed_overlap)
                result.apply(self.name, answer.value, verdict)
        result.counters["accepted"] = len(result.items)
        return result

    def parse(self, ask: Ask[Group], text: str) -> Record:
        """A record from the teacher's JSON reply, with lineage back to its seeds."""
        group, request = ask.about, ask.request
        first = group[0]
        fields = answer_format(first.format).parse_reply(json_object(text))
        return self.credit(Record(
            task=first.task,
            family=first.family,
            format=first.format,
            origin=Origin.GENERATED,
            **fields.as_record_fields(),
            license=first.license,
            commercial=all(r.commercial for r in group),
            source=Source(
                dataset=first.source.dataset, config=first.source.config,
                split=first.source.split, row=-1, path=None,
            ),
            lineage=Lineage(
                seed_ids=[r.id for r in group],
                teacher_model=self.model,
                prompt_template=template_name(first.format),
                prompt_hash=template_hash(first.format),
                sampling=request.sampling,
                stage=self.name,
            ),
        ))
