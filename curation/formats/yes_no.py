"""Yes/no questions: the answer is exactly `yes` or `no`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import AnswerFormat, Fields
from taskseed.curation.verdict import KEEP, Verdict, drop

if TYPE_CHECKING:
    from taskseed.curation.record import Record

# A question that asks "what", "which", "how"... cannot be answered yes or no.
_OPEN = re.compile(r"^\W*(what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
_POLAR = re.compile(
    r"^\W*(is|are|was|were|am|do|does|did|can|could|should|would|will|shall|may|might|must|"
    r"has|have|had)\b", re.IGNORECASE)
_YES = {"true", "yes", "1"}
_NO = {"false", "no", "0"}


class YesNo(AnswerFormat):
    name = "yes_no"
    answer_kind = "value"
    vote = "yes_no"
    implied_options = ("yes", "no")

    def seed_answer(self, value: Any) -> Any:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value

    def check_seed(self, fields: Fields) -> None:
        super().check_seed(fields)
        value = fields.answer.strip().lower()
        if value in _YES:
            fields.answer = "yes"
        elif value in _NO:
            fields.answer = "no"
        else:
            raise RowError("bad_label", "answer", f"'{fields.answer}' is not yes or no")

    def check_answer(self, record: Record) -> Verdict:
        if record.answer not in ("yes", "no"):
            return drop("answer_not_yes_no", f"'{record.answer[:80]}'")
        return KEEP

    def check_question(self, record: Record) -> Verdict:
        """A yes/no question asks ("...?" or "Is ...") and is not an open one ("What ...")."""
        question = record.question.strip()
        asks = question.endswith("?") or _POLAR.match(question)
        if _OPEN.match(question) or not asks:
            return drop("not_a_question", f"not a yes/no question: '{record.question[:60]}'")
        return KEEP

    def answer_schema(self) -> dict[str, Any]:
        return {"answer": {"type": "string", "enum": ["yes", "no"]}}


FORMAT = YesNo()
