"""Self-consistency: the teacher answers a new question k times without the key.

A named model answers the question `samples` times with different sampling seeds, without
seeing the key; the record is kept when the key's share of the votes reaches
`min_agreement` and no other answer has more votes. It votes on records with options
(multiple choice, completion: an option's letter), yes/no records, math (worked out, then the
final number; votes equal as numbers) and short free-form or extractive answers (at most
`max_short_words` words; votes equal after lowercasing and dropping punctuation and
articles). Other records pass through. The key's share is kept as
`consistency.agreement`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError
from taskseed.curation.formats import answer_format
from taskseed.curation.formats.base import LETTERS, letter_index, letter_schema, text_schema
from taskseed.curation.formats.math import NUMBER_SCHEMA
from taskseed.curation.record import Record, Sampling
from taskseed.curation.stage import KEEP, FilterStage, Verdict, drop
from taskseed.curation.verdict import ungraded
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.replies import json_object
from taskseed.generation.model_stage import Ask, TeacherParams, TeacherStage
from taskseed.judges.judge_prompts import PROMPT_DIR, example_fields, render

TEMPLATE = "answer.j2"
SYSTEM = "answer_system.j2"


class ConsistencyParams(TeacherParams):
    samples: int = Field(3, ge=1, le=32)
    min_agreement: float = Field(0.5, gt=0, le=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(32, ge=8)
    math_max_tokens: int = Field(320, ge=32)  # a math vote works the problem out first
    max_short_words: int = Field(6, ge=0)  # free-form and extractive keys voted on; 0: none
    on_failure: Literal["keep", "drop"] = "keep"  # a record with no usable vote


Mode = str  # "choices", "yes_no", "number", "short" or "" (no vote)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]")


def mode_of(record: Record, max_short_words: int = 6) -> Mode:
    """How the model votes on a record ('' when it does not)."""
    if record.choices:
        return "choices"
    vote = answer_format(record.format).vote
    if vote == "short":
        return "short" if 0 < len(record.answer.split()) <= max_short_words else ""
    return vote if vote in ("yes_no", "number") else ""


def applies(record: Record, max_short_words: int = 6) -> bool:
    return bool(mode_of(record, max_short_words))


def answer_schema(record: Record, mode: Mode) -> dict[str, Any]:
    if mode == "choices":
        prop = {"answer": letter_schema(len(record.choices))}
    elif mode == "yes_no":
        prop = {"answer": {"type": "string", "enum": ["yes", "no"]}}
    elif mode == "number":
        prop = {"reasoning": text_schema(), "answer": NUMBER_SCHEMA}
    else:
        prop = {"answer": text_schema()}
    return {"type": "object", "properties": prop, "required": list(prop),
            "additionalProperties": False}


def normalized(text: str, mode: Mode) -> str:
    """A vote or key as compared: a number's value, or short text without case, punctuation
    and articles."""
    if mode == "number":
        clean = text.replace(",", "").strip().rstrip(".")
        try:
            return f"{float(clean):g}"
        except ValueError:
            return clean
    if mode == "short":
        return " ".join(_ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split())
    return text


def parse_vote(text: str, record: Record, mode: Mode) -> str:
    """The answer a reply gives, as answer text (normalized for numbers and short text)."""
    data = json_object(text)
    if mode == "choices":
        return record.choices[letter_index(data.get("answer"), len(record.choices))]
    value = str(data.get("answer", "")).strip()
    if mode == "yes_no":
        value = value.lower()
        if value not in ("yes", "no"):
            raise RowError("wrong_type", "answer", f"{value!r} is not yes or no")
        return value
    if not value:
        raise RowError("missing_field", "answer", "empty")
    return normalized(value, mode)


def tally(record: Record, votes: list[str], min_agreement: float, mode: Mode = "") -> Verdict:
    """Keep when the key has at least `min_agreement` of the votes and the most of them."""
    counts = Counter(votes)
    key = normalized(record.answer, mode) if mode in ("number", "short") else record.answer
    share = counts[key] / len(votes)
    record.scores["consistency.agreement"] = round(share, 4)
    top, top_n = counts.most_common(1)[0]
    if share >= min_agreement and counts[key] == top_n:
        return KEEP
    said = (f"{LETTERS[record.choices.index(top)]}. {top[:60]}" if record.choices
            else top[:60])
    return drop("inconsistent_answer",
                f"the key got {counts[key]} of {len(votes)} votes; most: {said}")


class SelfConsistencyStage(TeacherStage[ConsistencyParams], FilterStage[ConsistencyParams]):
    """Keeps records whose key the model reaches by majority, unprompted."""

    name = "self_consistency"
    params_model = ConsistencyParams
    system_prompt = ""
    templates = (SYSTEM, TEMPLATE)
    prompt_dir = PROMPT_DIR
    outcome = "gave a vote"

    def plan_requests(self, batch: list[Record], shard: int) -> list[Ask[Record]]:
        p = self.params
        asks = []
        for record in batch:
            mode = mode_of(record, p.max_short_words)
            if not mode:
                continue
            fields = example_fields(record)
            messages = render(TEMPLATE, SYSTEM, **{**fields, "answer": None, "mode": mode})
            schema = answer_schema(record, mode)
            tokens = p.math_max_tokens if mode == "number" else p.max_tokens
            for k in range(p.samples):
                seed = xxhash.xxh3_64_intdigest(f"vote:{record.id}:{k}".encode()) & 0x7FFFFFFF
                sampling = Sampling(p.temperature, p.top_p, tokens, seed)
                asks.append(Ask(TeacherRequest(messages, sampling, schema), record, record.task))
        return asks

    def planned_outputs(self, batch: list[Record], asks: list[Ask[Any]]) -> int:
        return len(batch)

    def parse(self, ask: Ask[Record], text: str) -> str:
        return parse_vote(text, ask.about, mode_of(ask.about, self.params.max_short_words))

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        votes: dict[str, list[str]] = {}
        for answer in self.ask_all(self.plan_requests(batch, shard), shard, counters):
            if answer.error is None:
                counters["accepted"] += 1
                votes.setdefault(answer.ask.about.id, []).append(answer.value)
        verdicts = []
        for record in batch:
            mode = mode_of(record, self.params.max_short_words)
            if not mode:
                counters["not_applicable"] += 1
                verdicts.append(KEEP)
            elif record.id not in votes:
                verdicts.append(ungraded(self.params.on_failure, "no_votes",
                                         "every answer was unusable", counters))
            else:
                verdicts.append(tally(record, votes[record.id], self.params.min_agreement,
                                      mode))
        return verdicts
