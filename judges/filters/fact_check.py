"""Fact check: the judge model says whether a record's key answers its question.

Answering and checking are different tasks for a small model: one that answers "Sahara"
when asked for the largest desert in North America (and so votes for that key in
self-consistency) says that "Sahara" is not correct when asked to check it. The stage asks
once per record, greedily, "Is the proposed answer correct?" with a true/false verdict and
drops the record on false (`fact_check_false`). It checks closed-book knowledge: records
whose answer is short text or yes/no, with no options and no passage. Math, code,
extractive and option records pass through; they have their own checks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError
from taskseed.curation.formats import answer_format
from taskseed.curation.record import Record, Sampling
from taskseed.curation.stage import KEEP, FilterStage, Verdict, drop
from taskseed.curation.verdict import ungraded
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.replies import json_object
from taskseed.generation.model_stage import Ask, TeacherParams, TeacherStage
from taskseed.judges.judge_prompts import PROMPT_DIR, render

TEMPLATE = "fact_check.j2"
SYSTEM = "fact_check_system.j2"
SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"verdict": {"type": "string", "enum": ["true", "false"]}},
    "required": ["verdict"], "additionalProperties": False}


class FactCheckParams(TeacherParams):
    model: str = "judge"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(16, ge=8)
    on_failure: Literal["keep", "drop"] = "keep"  # a record the model gave no verdict on


def checked(record: Record) -> bool:
    """Whether the stage checks a record: a short-text or yes/no key, no options, no passage."""
    if record.choices or record.context:
        return False
    return answer_format(record.format).vote in ("short", "yes_no")


def parse_verdict(text: str) -> bool:
    """True when the reply says the key is correct; RowError when it says neither."""
    value = str(json_object(text).get("verdict", "")).strip().lower()
    if value not in ("true", "false"):
        raise RowError("wrong_type", "verdict", f"{value!r} is not true or false")
    return value == "true"


class FactCheckStage(TeacherStage[FactCheckParams], FilterStage[FactCheckParams]):
    """Drops closed-book records whose key the judge model says is not correct."""

    name = "fact_check"
    params_model = FactCheckParams
    system_prompt = ""  # a template file, like the user prompt
    templates = (SYSTEM, TEMPLATE)
    prompt_dir = PROMPT_DIR
    outcome = "gave a verdict"

    def plan_requests(self, batch: list[Record], shard: int) -> list[Ask[Record]]:
        p = self.params
        asks = []
        for record in batch:
            if not checked(record):
                continue
            messages = render(TEMPLATE, SYSTEM, question=record.question, answer=record.answer)
            seed = xxhash.xxh3_64_intdigest(f"fact:{record.id}".encode()) & 0x7FFFFFFF
            sampling = Sampling(p.temperature, p.top_p, p.max_tokens, seed)
            asks.append(Ask(TeacherRequest(messages, sampling, SCHEMA), record, record.task))
        return asks

    def planned_outputs(self, batch: list[Record], asks: list[Ask[Any]]) -> int:
        return len(batch)

    def parse(self, ask: Ask[Record], text: str) -> bool:
        return parse_verdict(text)

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        verdicts: dict[str, bool] = {}
        for answer in self.ask_all(self.plan_requests(batch, shard), shard, counters):
            if answer.error is None:
                counters["accepted"] += 1
                verdicts[answer.ask.about.id] = answer.value
        out = []
        for record in batch:
            if not checked(record):
                counters["not_applicable"] += 1
                out.append(KEEP)
            elif record.id not in verdicts:
                out.append(ungraded(self.params.on_failure, "fact_check_failed",
                                    "every answer was unusable", counters))
            else:
                record.scores["fact_check.correct"] = float(verdicts[record.id])
                out.append(KEEP if verdicts[record.id] else drop(
                    "fact_check_false", f"the judge says '{record.answer[:60]}' is not correct"))
        return out
