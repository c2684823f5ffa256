"""Extractive QA: the answer is a span of the context passage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import AnswerFormat, Fields
from taskseed.curation.verdict import KEEP, Verdict, drop

if TYPE_CHECKING:
    from taskseed.curation.record import Record


class Extractive(AnswerFormat):
    name = "extractive"
    verifier = "extractive"
    needs_context = True

    def check_seed(self, fields: Fields) -> None:
        super().check_seed(fields)
        if not fields.context:
            raise RowError("missing_field", "context", "extractive QA needs a context passage")

    def check_answer(self, record: Record) -> Verdict:
        """The answer is a span of the passage (one rule for validity and verify)."""
        if not record.context or record.answer not in record.context:
            return drop("answer_not_in_context", f"'{record.answer[:80]}'")
        return KEEP


FORMAT = Extractive()
