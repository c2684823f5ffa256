"""`parser: fields` (the default): record fields read from row fields by path."""

from __future__ import annotations

import ast
import re
from typing import Any, Literal

from taskseed.curation.errors import RowError
from taskseed.curation.formats import answer_format
from taskseed.curation.formats.base import LETTERS, Fields
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers.base import (
    RowParser,
    RowSteps,
    get_path,
    optional_path,
    resolve_choice,
    text_of,
)

_LETTERED_SPLIT = re.compile(r"(?:^|\s,\s)([A-Ja-j])\s\)\s?")


class FieldsMapping(RowSteps):
    """Record fields read from row fields by path (`parser: fields`, the default).

    Paths are dotted (`question.stem`), with `[*]` to map over a list
    (`question.choices[*].text`) and `[N]` to index. `choices` may also be a
    list of paths, one per option.

    - `choices_format`: `lettered` reads choices from one string such as
      `a ) 38 , b ) 27 , c ) 30`.
    - `strip_choice_labels`: removes a leading `A.`/`(B)`/`C )` from the N-th choice.
    - `answer_key`: a label or index resolved against the choices (`choice_labels`, or
      A, B, C...; numbers count from `answer_key_base`).
    - `answer_default`: the answer used when the answer field is missing or empty
      (e.g. `unanswerable` for SQuAD 2.0 questions without an answer).
    - `final_answer_marker`: the answer field holds a worked solution, then this marker,
      then the final answer (GSM8K's `####`).
    """

    parser: Literal["fields"] = "fields"
    question: str | None = None
    context: str | None = None
    choices: str | list[str] | None = None
    choices_format: Literal["list", "lettered"] = "list"
    strip_choice_labels: bool = False
    choice_labels: str | None = None
    answer: str | None = None
    answer_key: str | None = None
    answer_key_base: int = 0
    answer_default: str | None = None
    final_answer_marker: str | None = None
    reasoning: str | None = None
    knowledge: str | None = None
    tests: str | None = None


def parse_lettered(options: str, field: str = "choices") -> list[str]:
    """Choices from one string `A ) 38 , B ) 27.675 , C ) 30` (or a list literal of them)."""
    text = options.strip()
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise RowError("unparsable", field, "malformed list of options") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RowError("unparsable", field, "malformed list of options")
        return [_strip_label(i, n, repeat=True) for n, i in enumerate(items)]
    parts = _LETTERED_SPLIT.split(text)
    if len(parts) < 5 or parts[0].strip():
        raise RowError("unparsable", field, "no lettered options found")
    letters, values = parts[1::2], parts[2::2]
    if [c.upper() for c in letters] != list(LETTERS[: len(letters)]):
        raise RowError("unparsable", field, "option letters are not A, B, C, ... in order")
    return [_strip_label(v.strip(), n, repeat=True) for n, v in enumerate(values)]


def _strip_label(text: str, index: int, repeat: bool = False) -> str:
    """Drop a leading `A.`, `(A)`, `A )` for the index-th option (several times if repeat)."""
    letter = LETTERS[index] if index < len(LETTERS) else ""
    pattern = re.compile(rf"^\(?[{letter}{letter.lower()}](?:\s*[.．:)?]\s*|\s+)")
    out = pattern.sub("", text, count=1)
    while repeat and out != text:
        text, out = out, pattern.sub("", out, count=1)
    return out.strip()


def _choices(row: Any, mapping: FieldsMapping) -> list[str]:
    if mapping.choices is None:
        return []
    if isinstance(mapping.choices, list):
        raw: Any = [get_path(row, p) for p in mapping.choices]
    else:
        raw = get_path(row, mapping.choices)
    if mapping.choices_format == "lettered":
        raw = parse_lettered(text_of(raw, "choices"))
    if not isinstance(raw, list):
        raise RowError("wrong_type", "choices", "expected a list of choices")
    texts = [text_of(c, "choices") for c in raw]
    if mapping.strip_choice_labels:
        texts = [_strip_label(t, i) for i, t in enumerate(texts)]
        if not all(texts):
            raise RowError("empty_field", "choices", "a choice is empty once its label is removed")
    return texts


def _answer_value(row: Any, mapping: FieldsMapping) -> Any:
    path = mapping.answer or "answer"
    try:
        value = get_path(row, path)
    except RowError:
        if mapping.answer_default is None:
            raise
        return mapping.answer_default
    if mapping.answer_default is not None and (value is None or value == "" or value == []):
        return mapping.answer_default
    return value


def _path_fields(row: Any, mapping: FieldsMapping, fmt: Format) -> Fields:
    where = mapping.question or "question"
    question = text_of(optional_path(row, where), where)
    context = text_of(optional_path(row, mapping.context), mapping.context or "context",
                      required=False)
    choices = _choices(row, mapping)
    label = None
    reasoning = text_of(optional_path(row, mapping.reasoning), "reasoning", required=False)
    if mapping.answer_key is not None:
        labels = (
            [text_of(x, "choice_labels") for x in get_path(row, mapping.choice_labels)]
            if mapping.choice_labels
            else list(LETTERS[: len(choices)])
        )
        if len(labels) != len(choices):
            raise RowError("wrong_type", "choice_labels", "labels and choices differ in count")
        answer, label = resolve_choice(
            choices, labels, get_path(row, mapping.answer_key), mapping.answer_key_base
        )
    else:
        value = answer_format(fmt).seed_answer(_answer_value(row, mapping))
        answer = text_of(value, mapping.answer or "answer")
        if mapping.final_answer_marker:
            if mapping.final_answer_marker not in answer:
                raise RowError("missing_field", mapping.answer or "answer",
                               f"no final answer after '{mapping.final_answer_marker}'")
            worked, _, final = answer.rpartition(mapping.final_answer_marker)
            reasoning = reasoning or worked.strip() or None
            answer = text_of(final, mapping.answer or "answer")
        if answer in choices:
            label = LETTERS[choices.index(answer)]
    tests = optional_path(row, mapping.tests) or []
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise RowError("wrong_type", "tests", "expected a list of test strings")
    return Fields(
        question=question, answer=answer, context=context, choices=choices, answer_label=label,
        reasoning=reasoning,
        knowledge=text_of(optional_path(row, mapping.knowledge), "knowledge", required=False),
        tests=list(tests),
    )


PARSER = RowParser("fields", FieldsMapping, _path_fields)
