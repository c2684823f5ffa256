"""Math word problems: a worked solution and a numeric final answer."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from taskseed.curation.formats.base import AnswerFormat, text_schema
from taskseed.curation.verdict import KEEP, Verdict, drop

if TYPE_CHECKING:
    from taskseed.curation.record import Record

_NUMBER = re.compile(r"^-?[\d,]*\.?\d+$")
# `[.]`, not an escaped dot: llama.cpp's grammar compiler crashed on `\\.` in a pattern.
NUMBER_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^-?[0-9]+([.][0-9]+)?$"}
_HAS_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|hundred|thousand|million|half|twice|double|triple|dozen)\b", re.IGNORECASE)


class Math(AnswerFormat):
    name = "math"
    answer_kind = "value"
    vote = "number"
    verifier = "math"

    def check_answer(self, record: Record) -> Verdict:
        if not _NUMBER.match(record.answer.strip().rstrip(".")):
            return drop("answer_not_numeric", f"'{record.answer[:80]}'")
        return KEEP

    def check_question(self, record: Record) -> Verdict:
        """A word problem states quantities: it has a number."""
        if not _HAS_NUMBER.search(record.question):
            return drop("not_a_question", "a math problem without a number")
        return KEEP

    def answer_schema(self) -> dict[str, Any]:
        """The final answer is constrained to a plain number: a small teacher that was
        free to write text there wrote words after correct working."""
        return {"reasoning": text_schema(), "answer": NUMBER_SCHEMA}


FORMAT = Math()
