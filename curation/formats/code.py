"""Code: a programming task, its solution and assert-style tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import AnswerFormat, Fields, text_schema
from taskseed.curation.verdict import KEEP, Verdict, drop

if TYPE_CHECKING:
    from taskseed.curation.record import Record


class Code(AnswerFormat):
    name = "code"
    answer_kind = "code"
    vote = ""
    verifier = "code"
    hub_tasks = ()

    def check_seed(self, fields: Fields) -> None:
        super().check_seed(fields)
        if not fields.tests:
            raise RowError("missing_field", "tests", "code tasks need tests")

    def check_answer(self, record: Record) -> Verdict:
        """A solution comes with tests (one rule for validity and verify)."""
        if not record.tests:
            return drop("code_without_tests", "no tests")
        return KEEP

    def check_question(self, record: Record) -> Verdict:
        """A programming task is an instruction; any text of a few words may be one."""
        if len(record.question.split()) < 3:
            return drop("not_a_question", f"'{record.question[:80]}'")
        return KEEP

    def answer_schema(self) -> dict[str, Any]:
        tests = {"type": "array", "items": text_schema(), "minItems": 1, "maxItems": 5}
        return {"answer": text_schema(), "tests": tests}


FORMAT = Code()
