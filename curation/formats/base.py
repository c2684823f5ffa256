"""What an answer format defines, in one place.

A format says how seeds of that form are checked when they are normalized, what makes a
finished record valid, which prompt template asks a teacher for a new example, the JSON
schema of the teacher's reply and how the reply becomes record fields, and how a record
is rendered into pretraining text. The defaults here serve most formats; a format module
overrides only what is particular to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from taskseed.curation.errors import RowError
from taskseed.curation.verdict import KEEP, Verdict, drop

if TYPE_CHECKING:
    from taskseed.curation.record import Record

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def letter_schema(n_choices: int) -> dict[str, Any]:
    """A reply property that names one of `n_choices` options by its letter (A, B, ...).

    Judges answer with a letter, as exams do: asked for a 0-based index of lettered options,
    small models often give the 1-based position instead.
    """
    return {"type": "string", "enum": list(LETTERS[:n_choices])}


def letter_index(value: Any, n_choices: int, name: str = "answer") -> int:
    """The position of the option a reply's letter names; RowError when it names none."""
    letter = value.strip().rstrip(".)").upper() if isinstance(value, str) else value
    if not isinstance(letter, str) or len(letter) != 1 or letter not in LETTERS[:n_choices]:
        raise RowError("label_out_of_range", name,
                       f"{value!r} is not one of {', '.join(LETTERS[:n_choices])}")
    return LETTERS.index(letter)

# A question asks ("...?", "Which ..."), instructs ("Explain ..."), has a blank to fill
# ("... _ ...") or is an unfinished stem that its options complete ("Plants need").
_ASKS = re.compile(
    r"\?|_|(^|[.!:;\n]\s*)(who|whom|whose|what|which|when|where|why|how|is|are|was|were|do|"
    r"does|did|can|could|should|would|will|has|have|had|may|might|must|shall|name|list|give|"
    r"explain|describe|identify|find|calculate|compute|determine|choose|select|pick|state|"
    r"complete|fill|predict|estimate|compare|classify|write|solve|evaluate|tell|define)\b",
    re.IGNORECASE)
_FINISHED = re.compile(r"[.!\"')\]]\s*$")
_LETTERED = re.compile(r"^\(?([A-Ja-j])[).:]\s")


@dataclass(slots=True)
class Fields:
    """The record fields of one example: read out of a seed row, or out of a teacher's reply."""

    question: str
    answer: str
    context: str | None = None
    choices: list[str] = field(default_factory=list)
    answer_label: str | None = None
    reasoning: str | None = None
    knowledge: str | None = None
    tests: list[str] = field(default_factory=list)

    def as_record_fields(self) -> dict[str, Any]:
        """These fields as keyword arguments of a `Record`."""
        return {name: getattr(self, name) for name in (
            "question", "context", "choices", "answer", "answer_label", "reasoning",
            "knowledge", "tests")}


def text_schema() -> dict[str, Any]:
    """A non-empty string.

    No maxLength: grammar-constrained decoders expand it into one rule per character.
    """
    return {"type": "string", "minLength": 1}


def check_choices(record: Record) -> Verdict:
    """At least two distinct, non-empty choices, and the answer among them."""
    if len(record.choices) < 2:
        return drop("too_few_choices", f"{len(record.choices)} choices")
    if any(not c.strip() for c in record.choices):
        return drop("empty_choice", "a choice is empty")
    if len({c.strip().lower() for c in record.choices}) != len(record.choices):
        return drop("duplicate_choices", "two choices are the same")
    if record.answer not in record.choices:
        return drop("answer_not_in_choices", f"'{record.answer[:80]}'")
    marks = [_LETTERED.match(c) for c in record.choices]
    if all(marks) and [m.group(1).upper() for m in marks if m] == list(
            LETTERS[:len(marks)]):
        return drop("lettered_choices", f"the choices carry their own letters: "
                    f"'{record.choices[0][:40]}'")
    return KEEP


def check_distinct_choices(fields: Fields) -> None:
    """Raise RowError when two options are the same text (an ambiguous example to learn from)."""
    folded = [c.strip().lower() for c in fields.choices]
    if len(set(folded)) != len(folded):
        repeated = next(c for c in fields.choices if folded.count(c.strip().lower()) > 1)
        raise RowError("duplicate_choices", "choices", f"'{repeated[:80]}' is given twice")


class AnswerFormat:
    """The definition of one answer format; one instance per format module."""

    name: ClassVar[str]
    mix: ClassVar[str] = "generative"  # the pretraining dataset its records go into
    needs_choices: ClassVar[bool] = False
    needs_context: ClassVar[bool] = False
    # Traits the filters, the mix and the card read instead of the format's name:
    answer_kind: ClassVar[str] = "text"  # "text" (prose), "value" (a number, yes/no), "code"
    vote: ClassVar[str] = "short"  # self-consistency: choices, yes_no, number, short or ""
    verifier: ClassVar[str | None] = None  # what `verify` checks: math, code or extractive
    implied_options: ClassVar[tuple[str, ...]] = ()  # options answered among, never listed
    continues_text: ClassVar[bool] = False  # the answer continues the question's text
    hub_tasks: ClassVar[tuple[str, ...]] = ("question-answering",)  # the hub's categories

    @property
    def is_code(self) -> bool:
        return self.answer_kind == "code"

    @property
    def template(self) -> str:
        """The prompt template (in `taskseed/generation/prompts/`) asking for a new example."""
        return f"{self.name}.j2"

    # --- seeds -------------------------------------------------------------------------

    def seed_answer(self, value: Any) -> Any:
        """The answer field of a seed row before it is read as text."""
        return value

    def check_seed(self, fields: Fields) -> None:
        """Raise RowError when a normalized seed is not of this form; may canonicalize it."""
        if self.needs_choices and len(fields.choices) < 2:
            raise RowError("missing_field", "choices", f"{self.name} needs at least two choices")

    # --- validity ----------------------------------------------------------------------

    def check(self, record: Record) -> Verdict:
        """Whether a finished record is well formed for this format."""
        if self.needs_choices or record.choices:
            verdict = check_choices(record)
            if not verdict.keep:
                return verdict
        return self.check_answer(record)

    def check_answer(self, record: Record) -> Verdict:
        return KEEP

    def check_question(self, record: Record) -> Verdict:
        """Whether the question reads as one for this format (heuristics filter)."""
        question = record.question.strip()
        stem = bool(record.choices) and not _FINISHED.search(question)
        if not (stem or _ASKS.search(question)):
            return drop("not_a_question", f"'{record.question[:80]}'")
        return KEEP

    # --- teacher replies ---------------------------------------------------------------

    def reply_schema(self, n_choices: int, with_context: bool) -> dict[str, Any]:
        """The JSON schema a teacher's reply must follow.

        With options (`n_choices` > 0) the answer comes back as an index into the new
        options, so the answer is always among them.
        """
        props: dict[str, Any] = {"question": text_schema()}
        if with_context or self.needs_context:
            props["context"] = text_schema()
        if n_choices:
            props["choices"] = {"type": "array", "items": text_schema(),
                                "minItems": n_choices, "maxItems": n_choices}
            props["answer_index"] = {"type": "integer", "enum": list(range(n_choices))}
        else:
            props.update(self.answer_schema())
        return {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }

    def answer_schema(self) -> dict[str, Any]:
        """Reply properties that carry the answer when there are no options."""
        return {"answer": text_schema()}

    def parse_reply(self, data: dict[str, Any]) -> Fields:
        """Record fields from a reply object; RowError names the field that is unusable."""
        choices = data.get("choices") or []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise RowError("wrong_type", "choices", "expected a list of strings")
        choices = [c.strip() for c in choices]
        label = None
        if "answer_index" in data:
            index = data["answer_index"]
            if (isinstance(index, bool) or not isinstance(index, int)
                    or not 0 <= index < len(choices)):
                raise RowError("label_out_of_range", "answer_index", f"{index!r} out of range")
            answer, label = choices[index], LETTERS[index]
        else:
            answer = data.get("answer")
        question = data.get("question")
        for name, value in (("question", question), ("answer", answer)):
            if not isinstance(value, str) or not value.strip():
                raise RowError("missing_field", name, "missing or empty")
        tests = data.get("tests") or []
        return Fields(
            question=question.strip(),
            answer=answer.strip(),
            context=data.get("context") or None,
            choices=choices,
            answer_label=label,
            reasoning=data.get("reasoning") or None,
            tests=[str(t) for t in tests] if isinstance(tests, list) else [],
        )
