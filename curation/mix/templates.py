"""Rendering templates of the mix: several surface forms of one record, for every format.

Every template writes readable text for every answer format. Answers are always the
semantic text (an option's words, "Yes", a number, code), never a bare option letter.
Reasoning and background knowledge appear where the record has them and the template
shows them. Text is tidied on the way: Windows line ends become `\\n` and GSM8K-style
calculator notes (`<<48/2=24>>`) are removed.

- `plain`: the question and its answer; a sentence stem or one blank is completed in place;
- `options`: short `Q:`/`A:` labels with the options as a list;
- `explained`: background and reasoning before "The answer is ...";
- `exam`: lettered options, background, reasoning, then the letter with the option's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskseed.curation.formats import answer_format
from taskseed.curation.formats.base import LETTERS, AnswerFormat

_CALC = re.compile(r"<<[^<>\n]*>>")
_BLANK = re.compile(r"(?<!\w)_+(?!\w)")
_FINISHED = re.compile(r"[.?!:;\"')\]]$")
_ATTACHED = re.compile(r"^[,.;:!?']")


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # NA has no truth value
        return True


def _text(value: Any) -> str:
    if _missing(value):
        return ""
    return _CALC.sub("", str(value).replace("\r\n", "\n").replace("\r", "\n")).strip()


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        return ()
    return tuple(t for t in (_text(v) for v in value) if t)


@dataclass(frozen=True, slots=True)
class Example:
    """The fields of a record a template shows, tidied."""

    format: str
    question: str
    answer: str
    context: str = ""
    choices: tuple[str, ...] = ()
    reasoning: str = ""
    knowledge: str = ""
    tests: tuple[str, ...] = ()

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Example:
        """An example from a record row (a dict of record columns)."""
        fmt = str(row["format"])
        question = _text(row["question"])
        if not answer_format(fmt).is_code and question[:1].islower():
            question = question[0].upper() + question[1:]
        return cls(
            format=fmt,
            question=question,
            answer=_text(row["answer"]),
            context=_text(row.get("context")),
            choices=_texts(row.get("choices")),
            reasoning=_text(row.get("reasoning")),
            knowledge=_text(row.get("knowledge")),
            tests=_texts(row.get("tests")),
        )

    @property
    def kind(self) -> AnswerFormat:
        return answer_format(self.format)

    @property
    def is_code(self) -> bool:
        return self.kind.is_code

    @property
    def is_stem(self) -> bool:
        """A text its answer continues (HellaSwag contexts, "Plants need ...")."""
        if self.kind.continues_text:
            return True
        return bool(self.choices) and "_" not in self.question and not _FINISHED.search(
            self.question)

    @property
    def blank(self) -> bool:
        """A sentence with exactly one blank that its answer fills."""
        return bool(self.choices) and len(_BLANK.findall(self.question)) == 1


def answer_text(ex: Example) -> str:
    """The answer as words: an implied option capitalized ("Yes"/"No"), else the answer."""
    if ex.kind.implied_options:
        return ex.answer.capitalize()
    return ex.answer


def _code(text: str) -> str:
    return f"```python\n{text}\n```"


def _continued(stem: str, ending: str) -> str:
    return stem + ("" if _ATTACHED.match(ending) else " ") + ending


def _filled(ex: Example) -> str:
    return _BLANK.sub(lambda _: ex.answer, ex.question, count=1)


def _join(parts: Iterable[str]) -> str:
    return "\n".join(p for p in parts if p) + "\n"


def _lead(ex: Example, label: str = "") -> str:
    if not ex.context:
        return ""
    return f"{label}{ex.context}\n"


def _tests(ex: Example) -> str:
    return f"Tests:\n{_code(chr(10).join(ex.tests))}" if ex.tests else ""


def plain(ex: Example) -> str:
    """The question and its answer, nothing else."""
    if ex.is_code:
        return _join([_lead(ex), ex.question + "\n", _code(ex.answer)])
    if ex.is_stem:
        return _join([_lead(ex), _continued(ex.question, ex.answer)])
    if ex.blank:
        return _join([_lead(ex), _filled(ex)])
    return _join([_lead(ex), f"Question: {ex.question}", f"Answer: {answer_text(ex)}"])


def options(ex: Example) -> str:
    """`Q:`/`A:` with the options as a list and the chosen option's text."""
    choices = ex.choices or ex.kind.implied_options
    listed = ["Options:", *(f"- {c}" for c in choices)] if choices else []
    if ex.kind.continues_text:
        question = f"Q: Which ending best continues the text?\n{ex.question} ..."
    else:
        question = f"Q: {ex.question}"
    if ex.is_code:
        return _join([_lead(ex, "Context: "), question, "A:", _code(ex.answer), _tests(ex)])
    answer = f"A: {ex.reasoning}\nSo the answer is {ex.answer}." if ex.reasoning else (
        f"A: {answer_text(ex)}")
    return _join([_lead(ex, "Context: "), question, *listed, answer])


def explained(ex: Example) -> str:
    """Background and reasoning first, then the answer in a sentence."""
    background = f"Background: {ex.knowledge}" if ex.knowledge else ""
    reasoning = f"Explanation: {ex.reasoning}" if ex.reasoning else ""
    if ex.is_code:
        return _join([_lead(ex), ex.question, background, reasoning, "Solution:",
                      _code(ex.answer), _tests(ex)])
    listed = f"Choices: {'; '.join(c.rstrip('.') for c in ex.choices)}." if ex.choices else ""
    if ex.is_stem:
        question = f"{ex.question} ..."
        closing = f"The text continues: {_continued(ex.question, ex.answer)}"
    else:
        question = ex.question
        closing = f"The answer is {ex.answer}" + ("" if _FINISHED.search(ex.answer) else ".")
    return _join([_lead(ex), question, listed, background, reasoning, closing])


def exam(ex: Example) -> str:
    """Lettered options, background, reasoning, then the letter with the option's text."""
    lettered = [f"{LETTERS[i]}. {c}" for i, c in enumerate(ex.choices)]
    background = f"Background: {ex.knowledge}" if ex.knowledge else ""
    reasoning = f"Reasoning: {ex.reasoning}" if ex.reasoning else ""
    if ex.is_code:
        answer = f"Answer:\n{_code(ex.answer)}"
    elif ex.answer in ex.choices:
        answer = f"Answer: {LETTERS[ex.choices.index(ex.answer)]}. {ex.answer}"
    else:
        answer = f"Answer: {answer_text(ex)}"
    return _join([_lead(ex), f"Question: {ex.question}", *lettered, background, reasoning,
                  answer, _tests(ex)])


TEMPLATES: dict[str, Callable[[Example], str]] = {
    "plain": plain,
    "options": options,
    "explained": explained,
    "exam": exam,
}


def render(template: str, row: Mapping[str, Any] | Example) -> str:
    """The training text of a record row under a named template."""
    ex = row if isinstance(row, Example) else Example.of(row)
    return TEMPLATES[template](ex)
