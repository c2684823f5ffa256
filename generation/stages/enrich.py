"""The enrich stage: the teacher explains each record's given answer and adds background.

For each record the teacher is asked, under a JSON schema, for the fields it still lacks:
`reasoning` (how the evidence and question lead to the given answer) and `knowledge`
(background facts). A record that already has reasoning (e.g. a math solution from
generate) is only asked for knowledge; one with both is passed through. The answer is
shown as fixed and never read back, so enrichment cannot change it.

Lineage stays as generate wrote it, with the enricher added to its models (whose terms
decide, with the seeds' licenses, whether the record is commercial); the enrich template's
hash is part of this stage's fingerprint, so a changed prompt is a different stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError
from taskseed.curation.record import Record, Sampling
from taskseed.curation.stage import KEEP, StageResult, Verdict, drop
from taskseed.curation.text import normalize_text
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.replies import json_object
from taskseed.generation.model_stage import Answer, Ask, TeacherParams, TeacherStage
from taskseed.generation.prompts import environment

TEMPLATE = "enrich.j2"
FIELDS = ("reasoning", "knowledge")
SYSTEM_PROMPT = (
    "You annotate training examples. Each example comes with its correct answer, which you "
    "must keep as given. Be accurate and concise. Reply with JSON only."
)


class EnrichParams(TeacherParams):
    temperature: float = Field(0.3, ge=0, le=2)
    on_failure: Literal["keep", "drop"] = "keep"
    # What the model writes: the reasoning to the answer, background knowledge, or both.
    # A small model invents facts in background text: give it `[reasoning]`.
    fields: list[Literal["reasoning", "knowledge"]] = Field(
        default_factory=lambda: list(FIELDS), min_length=1)


def missing_fields(record: Record, wanted: tuple[str, ...] | list[str] = FIELDS) -> list[str]:
    """The enrichment fields (of `wanted`) the record does not have yet, in a fixed order."""
    return [f for f in FIELDS if f in wanted and not (getattr(record, f) or "").strip()]


def enrich_schema(fields: list[str]) -> dict[str, Any]:
    """JSON schema of the teacher's reply: the requested fields as non-empty strings."""
    return {
        "type": "object",
        "properties": {f: {"type": "string", "minLength": 1} for f in fields},
        "required": list(fields),
        "additionalProperties": False,
    }


def render_enrich(record: Record, fields: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for `fields` of one record."""
    answer = f"{record.answer_label}) {record.answer}" if record.answer_label else record.answer
    user = environment().get_template(TEMPLATE).render(
        task=record.task,
        context=record.context,
        question=record.question,
        choices=record.choices,
        solution=record.reasoning,
        answer=answer,
        fields=fields,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def request_seed(record_id: str) -> int:
    """A sampling seed fixed by the record id."""
    return xxhash.xxh3_64_intdigest(f"enrich:{record_id}".encode()) & 0x7FFFFFFF


def parse_enrichment(text: str, fields: list[str]) -> dict[str, str]:
    """The requested fields from the teacher's JSON reply, stripped; RowError if unusable."""
    data = json_object(text)
    out = {}
    for name in fields:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise RowError("missing_field", name, "missing or empty")
        out[name] = value.strip()
    return out


# The rendered prompt's instructions start here (see prompts/enrich.j2).
INSTRUCTIONS_START = "The answer above is correct"


def echoes(value: str, instructions: str, n: int = 5) -> bool:
    """Whether a reply shares a run of n words with the instructions it was given."""
    words = normalize_text(value).split()
    said = f" {normalize_text(instructions)} "
    return any(f" {' '.join(words[i:i + n])} " in said for i in range(len(words) - n + 1))


@dataclasses.dataclass(frozen=True)
class Want:
    """What one enrich request asks about: a record, the fields it lacks, the instructions."""

    record: Record
    fields: list[str]
    instructions: str


class EnrichStage(TeacherStage[EnrichParams]):
    """Fills each record's `reasoning` and `knowledge` from the teacher.

    Unusable replies (unparsable, empty, echoing the instructions) are asked again like
    generate's. A record whose enrichment still fails is kept as it was, or dropped with
    the reason when `on_failure: drop`.
    """

    name = "enrich"
    params_model = EnrichParams
    system_prompt = SYSTEM_PROMPT
    templates = (TEMPLATE,)
    outcome = "gave an enrichment"
    writes_text = True

    def plan_requests(self, batch: list[Record], shard: int) -> list[Ask[Want]]:
        """One ask for every record that lacks some enrichment field."""
        p = self.params
        planned = []
        for record in batch:
            fields = missing_fields(record, p.fields)
            if not fields:
                continue
            messages = render_enrich(record, fields)
            sampling = Sampling(p.temperature, p.top_p, p.max_tokens, request_seed(record.id))
            request = TeacherRequest(messages, sampling, enrich_schema(fields))
            instructions = messages[-1]["content"].rpartition(INSTRUCTIONS_START)[2]
            planned.append(Ask(request, Want(record, fields, instructions), record.task))
        return planned

    def parse(self, ask: Ask[Want], text: str) -> Record:
        want = ask.about
        values = parse_enrichment(text, want.fields)
        for name, value in values.items():
            if echoes(value, want.instructions):
                raise RowError("echoed_prompt", name, "repeats the prompt's instructions")
        return self.credit(dataclasses.replace(want.record, **values))

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        asks = self.plan_requests(batch, shard)
        result.counters["enrich_skipped"] += len(batch) - len(asks)
        answers = {id(a.ask.about.record): a for a in self.ask_all(asks, shard, result.counters)}
        for record in batch:
            answer = answers.get(id(record))
            if answer is None:
                result.items.append(record)
                continue
            result.apply(self.name, answer.value or record, self._verdict(answer, result))
        result.counters["accepted"] = result.counters["enriched"]
        return result

    def _verdict(self, answer: Answer[Want], result: StageResult) -> Verdict:
        if answer.error is None:
            result.counters["enriched"] += 1
            return KEEP
        result.counters["enrich_failed"] += 1
        if self.params.on_failure == "keep":
            return KEEP
        return drop(answer.error.reason, str(answer.error))
