"""`parser: llm_adapters`: question and options parsed out of an LLM-Adapters
`instruction` string (numbered or lettered options, or none for yes/no rows)."""

from __future__ import annotations

import re
from typing import Any, Literal

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import LETTERS, Fields
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers.base import RowParser, RowSteps, resolve_choice, text_of
from taskseed.curation.seeds.parsers.fields import parse_lettered

_ADAPTER_OPTION = re.compile(r"\b(?:Answer|Option|Solution|Ending)(\d+)\s*:\s*")
_ADAPTER_PROMPT = re.compile(r"^Please (?:choose|answer|select)[^:]*:\s*")
_ADAPTER_FORMAT = re.compile(r"\s*Answer format:[^\n]*$")
_ADAPTER_LETTERED = " The options: "



class AdaptersMapping(RowSteps):
    """Question and options parsed out of an LLM-Adapters `instruction` string."""

    parser: Literal["llm_adapters"]


def parse_llm_adapters(row: dict[str, Any]) -> dict[str, Any]:
    """Recover question, options and answer from an instruction-style row.

    Handles numbered options (`Answer1: a Answer2: b`, `Option1:`, `Solution1:`,
    `Ending1:`), lettered options (`<problem> The options: A ) .. , B ) ..`) and
    option-less yes/no rows. Returns `question`, `choices` and `answer_index` (None
    without options) and `answer` (the raw answer field).
    """
    for name in ("instruction", "answer"):
        if name in row and not isinstance(row[name], str):
            raise RowError("wrong_type", name, f"expected text, got {type(row[name]).__name__}")
    instruction = text_of(row.get("instruction"), "instruction")
    answer = text_of(row.get("answer"), "answer")
    if _ADAPTER_LETTERED in instruction:
        question, _, options = instruction.rpartition(_ADAPTER_LETTERED)
        choices = parse_lettered(options, "instruction")
        key = answer.strip().upper()
        if len(key) != 1 or key not in LETTERS:
            raise RowError("bad_label", "answer", f"cannot read an option letter from {answer!r}")
        return {"question": text_of(question, "instruction"), "choices": choices,
                "answer_index": LETTERS.index(key), "answer": answer}
    body = _ADAPTER_FORMAT.sub("", instruction.rstrip())
    parts = _ADAPTER_OPTION.split(body)
    question = _ADAPTER_PROMPT.sub("", parts[0], count=1).strip()
    if not question:
        raise RowError("empty_field", "instruction", "no question before the options")
    if len(parts) == 1:
        return {"question": question, "choices": [], "answer_index": None, "answer": answer}
    numbers = [int(n) for n in parts[1::2]]
    if numbers != list(range(1, len(numbers) + 1)) or len(numbers) < 2:
        raise RowError("unparsable", "instruction", "options are not numbered 1, 2, ...")
    options = [p.strip() for p in parts[2::2]]
    match = re.search(r"(\d+)\s*$", answer)
    if not match:
        raise RowError("bad_label", "answer", f"cannot read an option number from {answer!r}")
    return {"question": question, "choices": options,
            "answer_index": int(match.group(1)) - 1, "answer": answer}


def _adapter_fields(row: dict[str, Any], mapping: AdaptersMapping, fmt: Format) -> Fields:
    parsed = parse_llm_adapters(row)
    choices = parsed["choices"]
    if parsed["answer_index"] is None:
        return Fields(question=parsed["question"], answer=parsed["answer"])
    if not 0 <= parsed["answer_index"] < len(choices):
        raise RowError("label_out_of_range", "answer",
                       f"{parsed['answer']!r} names no option (there are {len(choices)})")
    labels = list(LETTERS[: len(choices)])
    answer, label = resolve_choice(choices, labels, parsed["answer_index"], 0)
    return Fields(question=parsed["question"], answer=answer, choices=choices,
                      answer_label=label)


PARSER = RowParser("llm_adapters", AdaptersMapping, _adapter_fields)
