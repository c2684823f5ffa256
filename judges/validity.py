"""The validity filter: parsable, answer present, answer among the choices."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from curation.record import Format, Record, Reject
from curation.stage import BatchStage, StageResult

_NUMBER = re.compile(r"^-?[\d,]*\.?\d+$")


class ValidityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_question_chars: int = 10
    max_chars: int = 20000


def check(record: Record, params: ValidityParams) -> tuple[bool, str, str]:
    """(keep, reason, detail) for one record; reasons are short stable tags."""
    if len(record.question.strip()) < params.min_question_chars:
        return False, "question_too_short", f"{len(record.question.strip())} chars"
    if not record.answer.strip():
        return False, "answer_missing", "empty answer"
    size = len(record.question) + len(record.answer) + len(record.context or "")
    if size > params.max_chars:
        return False, "too_long", f"{size} chars"
    if record.format in (Format.MULTIPLE_CHOICE,) or record.choices:
        if len(record.choices) < 2:
            return False, "too_few_choices", f"{len(record.choices)} choices"
        if any(not c.strip() for c in record.choices):
            return False, "empty_choice", "a choice is empty"
        if len({c.strip().lower() for c in record.choices}) != len(record.choices):
            return False, "duplicate_choices", "two choices are the same"
        if record.answer not in record.choices:
            return False, "answer_not_in_choices", f"'{record.answer[:80]}'"
    if record.format is Format.YES_NO and record.answer not in ("yes", "no"):
        return False, "answer_not_yes_no", f"'{record.answer[:80]}'"
    if record.format is Format.MATH and not _NUMBER.match(record.answer.strip().rstrip(".")):
        return False, "answer_not_numeric", f"'{record.answer[:80]}'"
    extractive = record.format is Format.EXTRACTIVE and record.context
    if extractive and record.answer not in record.context:
        return False, "answer_not_in_context", f"'{record.answer[:80]}'"
    if record.format is Format.CODE and not record.tests:
        return False, "code_without_tests", "no tests"
    return True, "", ""


class ValidityStage(BatchStage):
    """Drops records that are malformed for their format; every drop carries its reason."""

    name = "validity"

    def process(self, batch: list[Record], shard: int) -> StageResult:
        result = StageResult()
        for record in batch:
            keep, reason, detail = check(record, self.params)
            if keep:
                result.items.append(record)
            else:
                result.rejects.append(Reject.of(self.name, reason, detail, record))
        return result
