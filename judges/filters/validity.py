"""The validity filter: well-formed question and answer, and the rules of the record's format."""

from __future__ import annotations

from pydantic import Field
from taskseed.curation.formats import answer_format
from taskseed.curation.record import Record
from taskseed.curation.stage import FilterStage, StageParams, Verdict, drop


class ValidityParams(StageParams):
    min_question_chars: int = Field(10, ge=0)
    max_chars: int = Field(20000, ge=1)


def check(record: Record, params: ValidityParams) -> Verdict:
    """The verdict on one record; reasons are short stable tags."""
    if len(record.question.strip()) < params.min_question_chars:
        return drop("question_too_short", f"{len(record.question.strip())} chars")
    if not record.answer.strip():
        return drop("answer_missing", "empty answer")
    size = len(record.question) + len(record.answer) + len(record.context or "")
    if size > params.max_chars:
        return drop("too_long", f"{size} chars")
    return answer_format(record.format).check(record)


class ValidityStage(FilterStage[ValidityParams]):
    """Drops records that are malformed for their format; every drop carries its reason."""

    name = "validity"
    params_model = ValidityParams

    def check(self, record: Record) -> Verdict:
        return check(record, self.params)
