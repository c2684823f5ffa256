"""Prompt templates (one per format) and the JSON schema of the teacher's answer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
import xxhash

from curation.record import Format, Record

PROMPT_DIR = Path(__file__).parent / "prompts"
SYSTEM_PROMPT = (
    "You write new, original training examples for a task. Keep the task's framing, "
    "domain, difficulty and answer form; never copy the examples. Reply with JSON only."
)


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPT_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def template_name(fmt: Format) -> str:
    return f"{fmt.value}.j2"


@functools.cache
def template_hash(fmt: Format) -> str:
    """Hash of the template and the files it imports: a changed prompt is a new prompt."""
    text = (PROMPT_DIR / template_name(fmt)).read_text() + (PROMPT_DIR / "_exemplar.j2").read_text()
    return xxhash.xxh3_64_hexdigest((SYSTEM_PROMPT + text).encode())


def _exemplar(record: Record) -> dict[str, Any]:
    index = record.choices.index(record.answer) if record.answer in record.choices else None
    return {
        "context": record.context,
        "question": record.question,
        "choices": record.choices,
        "answer": record.answer,
        "answer_index": index,
        "reasoning": record.reasoning,
        "tests": record.tests[:3],
    }


def render(
    fmt: Format, task: str, exemplars: list[Record], topic: str | None = None
) -> list[dict[str, str]]:
    """Chat messages asking for one new example like the exemplars."""
    user = environment().get_template(template_name(fmt)).render(
        task=task,
        exemplars=[_exemplar(r) for r in exemplars],
        n_choices=n_choices(exemplars),
        with_context=any(r.context for r in exemplars),
        topic=topic,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def n_choices(exemplars: list[Record]) -> int:
    """The most common number of options among the exemplars (0 when they have none)."""
    counts = [len(r.choices) for r in exemplars if r.choices]
    return max(set(counts), key=counts.count) if counts else 0


def _string() -> dict[str, Any]:
    # No maxLength: grammar-constrained decoders expand it into one rule per character.
    return {"type": "string", "minLength": 1}


def response_schema(fmt: Format, exemplars: list[Record]) -> dict[str, Any]:
    """The JSON schema the teacher's reply must follow for this format."""
    props: dict[str, Any] = {"question": _string()}
    if any(r.context for r in exemplars) or fmt is Format.EXTRACTIVE:
        props["context"] = _string()
    n = n_choices(exemplars)
    if n:
        props["choices"] = {"type": "array", "items": _string(), "minItems": n, "maxItems": n}
        props["answer_index"] = {"type": "integer", "enum": list(range(n))}
    elif fmt is Format.YES_NO:
        props["answer"] = {"type": "string", "enum": ["yes", "no"]}
    else:
        if fmt is Format.MATH:
            props["reasoning"] = _string()
        props["answer"] = _string()
        if fmt is Format.CODE:
            props["tests"] = {"type": "array", "items": _string(), "minItems": 1, "maxItems": 5}
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
