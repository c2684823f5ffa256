"""The enrich stage: the teacher explains each record's given answer and adds background.

For each record the teacher is asked, under a JSON schema, for the fields it still lacks:
`reasoning` (how the evidence and question lead to the given answer) and `knowledge`
(background facts). A record that already has reasoning (e.g. a math solution from
generate) is only asked for knowledge; one with both is passed through. The answer is
shown as fixed and never read back, so enrichment cannot change it.

Lineage stays as generate wrote it; the enrich template's hash is part of this stage's
fingerprint, so a changed prompt is a different stage.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import xxhash
from pydantic import BaseModel, ConfigDict, Field

from curation.errors import RowError
from curation.record import Record, Reject, Sampling
from curation.stage import StageResult
from curation.text import normalize_text
from generation.prompts import PROMPT_DIR, environment
from generation.replies import json_object
from generation.teacher import TeacherRequest, TeacherResponse
from generation.teacher_stage import TeacherStage

TEMPLATE = "enrich.j2"
FIELDS = ("reasoning", "knowledge")
SYSTEM_PROMPT = (
    "You annotate training examples. Each example comes with its correct answer, which you "
    "must keep as given. Be accurate and concise. Reply with JSON only."
)


class EnrichParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.3, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(384, ge=16)
    batch_size: int = Field(256, ge=1)
    on_failure: Literal["keep", "drop"] = "keep"


@functools.cache
def enrich_template_hash() -> str:
    """Hash of the system prompt and the enrich template."""
    text = SYSTEM_PROMPT + (PROMPT_DIR / TEMPLATE).read_text()
    return xxhash.xxh3_64_hexdigest(text.encode())


def missing_fields(record: Record) -> list[str]:
    """The enrichment fields the record does not have yet, in a fixed order."""
    return [f for f in FIELDS if not (getattr(record, f) or "").strip()]


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


class EnrichStage(TeacherStage):
    """Fills each record's `reasoning` and `knowledge` from the teacher."""

    name = "enrich"

    def fingerprint(self) -> str:
        return super().fingerprint() + enrich_template_hash()

    def plan_requests(self, batch: list[Record]) -> list[tuple[int, list[str], TeacherRequest]]:
        """(position in batch, requested fields, request) for every record that needs some."""
        p: EnrichParams = self.params
        planned = []
        for i, record in enumerate(batch):
            fields = missing_fields(record)
            if not fields:
                continue
            sampling = Sampling(p.temperature, p.top_p, p.max_tokens, request_seed(record.id))
            request = TeacherRequest(
                messages=render_enrich(record, fields),
                sampling=sampling,
                json_schema=enrich_schema(fields),
            )
            planned.append((i, fields, request))
        return planned

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        planned = self.plan_requests(batch)
        result.counters["enrich_skipped"] += len(batch) - len(planned)
        responses = self.ask([req for _, _, req in planned], shard, result.counters)
        outcome: dict[int, Record | None] = {}
        for (i, fields, request), response in zip(planned, responses, strict=True):
            instructions = request.messages[-1]["content"].rpartition(INSTRUCTIONS_START)[2]
            outcome[i] = self._apply(batch[i], fields, response, instructions, result)
        for i, record in enumerate(batch):
            kept = outcome.get(i, record)
            if kept is not None:
                result.items.append(kept)
        return result

    def _apply(
        self, record: Record, fields: list[str], response: TeacherResponse, instructions: str,
        result: StageResult,
    ) -> Record | None:
        """The enriched record; on failure the record as it was, or None when it is dropped."""
        try:
            if not response.ok:
                raise RowError("teacher_error", "response", response.error or "")
            if response.finish_reason == "length":
                raise RowError("truncated", "response", "the reply hit max_tokens")
            values = parse_enrichment(response.text, fields)
            for name, value in values.items():
                if echoes(value, instructions):
                    raise RowError("echoed_prompt", name, "repeats the prompt's instructions")
        except RowError as err:
            result.counters["enrich_failed"] += 1
            if self.params.on_failure == "keep":
                return record
            result.rejects.append(Reject.of(self.name, err.reason, str(err), record))
            return None
        result.counters["enriched"] += 1
        return dataclasses.replace(record, **values)
