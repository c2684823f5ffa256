"""Turning raw rows into records, driven by the task spec's mapping.

One normalizer serves every format; the mapping says where each field lives. Answers
are stored as semantic text: a label or index is resolved against the choices.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from functools import lru_cache
from typing import Any

import jinja2
from taskseed.curation.errors import RowError
from taskseed.curation.formats import answer_format
from taskseed.curation.formats.base import LETTERS, Fields, check_distinct_choices
from taskseed.curation.record import Format, RawRow, Record
from taskseed.curation.seeds.taskspec import (
    AdaptersMapping,
    FieldsMapping,
    JinjaMapping,
    Mapping,
    TaskSpec,
    is_commercial,
)

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]")


def get_path(row: Any, path: str) -> Any:
    """Follow a dotted path with `[*]` and `[N]` through nested dicts and lists."""
    values = [row]
    fanned = False
    for name, index in _PATH_PART.findall(path):
        nxt = []
        for value in values:
            if name:
                if not isinstance(value, dict) or name not in value:
                    raise RowError("missing_field", path, "field is missing")
                nxt.append(value[name])
            elif index == "*":
                if not isinstance(value, list):
                    raise RowError("wrong_type", path, "expected a list")
                nxt.extend(value)
                fanned = True
            else:
                if not isinstance(value, list) or int(index) >= len(value):
                    raise RowError("missing_field", path, f"no item {index}")
                nxt.append(value[int(index)])
        values = nxt
    return values if fanned else values[0]


def _text(value: Any, field: str, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise RowError("missing_field", field, "field is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowError("wrong_type", field, f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    if required and not text:
        raise RowError("empty_field", field, "field is empty")
    return text or None


def _opt(row: Any, path: str | None) -> Any:
    return None if path is None else get_path(row, path)


# --- reformatted LLM-Adapters rows -------------------------------------------------------

_ADAPTER_OPTION = re.compile(r"\b(?:Answer|Option|Solution|Ending)(\d+)\s*:\s*")
_ADAPTER_PROMPT = re.compile(r"^Please (?:choose|answer|select)[^:]*:\s*")
_ADAPTER_FORMAT = re.compile(r"\s*Answer format:[^\n]*$")
_ADAPTER_LETTERED = " The options: "
_LETTERED_SPLIT = re.compile(r"(?:^|\s,\s)([A-Ja-j])\s\)\s?")


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
    instruction = _text(row.get("instruction"), "instruction")
    answer = _text(row.get("answer"), "answer")
    if _ADAPTER_LETTERED in instruction:
        question, _, options = instruction.rpartition(_ADAPTER_LETTERED)
        choices = parse_lettered(options, "instruction")
        key = answer.strip().upper()
        if len(key) != 1 or key not in LETTERS:
            raise RowError("bad_label", "answer", f"cannot read an option letter from {answer!r}")
        return {"question": _text(question, "instruction"), "choices": choices,
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


# --- Jinja templates (lm-eval doc_to_text / doc_to_choice / doc_to_target) ----------------


def _regex_replace(value: str, pattern: str = "", repl: str = "", count: int = 0) -> str:
    return re.sub(pattern, repl, value, count=count)


_JINJA = jinja2.Environment(
    loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
_JINJA.filters["regex_replace"] = _regex_replace


@lru_cache(maxsize=4096)
def _template(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


@lru_cache(maxsize=256)
def import_function(ref: str) -> Any:
    """The Python callable named `package.module.attr`."""
    module_name, _, attr = ref.removeprefix("!function ").strip().rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RowError("template_error", ref, f"cannot import: {exc}") from None


def render(source: str, row: dict[str, Any], field: str) -> Any:
    """Render a Jinja template against a row; a template naming a row field reads it."""
    if source.startswith("!function "):
        try:
            return import_function(source)(row)
        except RowError:
            raise
        except Exception as exc:  # noqa: BLE001 - task functions can raise anything
            raise RowError("template_error", field, f"{type(exc).__name__}: {exc}") from None
    if "{{" not in source and "{%" not in source:
        return row.get(source, source)
    try:
        return _template(source).render(**row)
    except jinja2.UndefinedError as exc:
        raise RowError("missing_field", field, str(exc)) from None
    except jinja2.TemplateError as exc:
        raise RowError("template_error", field, str(exc).splitlines()[0]) from None
    except Exception as exc:  # noqa: BLE001 - template expressions can raise anything
        raise RowError("template_error", field, f"{type(exc).__name__}: {exc}") from None


def _jinja_choices(source: str | list[str] | None, row: dict[str, Any]) -> list[Any]:
    if source is None:
        return []
    if isinstance(source, list):
        return [render(s, row, "choices_template") if isinstance(s, str) else s for s in source]
    value = render(source, row, "choices_template")
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise RowError("unparsable", "choices_template", "did not render a list") from None
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list | tuple):
        raise RowError("wrong_type", "choices_template", "did not render a list")
    return list(value)


def _jinja_fields(row: dict[str, Any], mapping: JinjaMapping) -> Fields:
    question = _text(render(mapping.text_template, row, "text_template"), "text_template")
    choices = [_text(c, "choices") for c in _jinja_choices(mapping.choices_template, row)]
    target = mapping.target_template
    value: Any = target if not isinstance(target, str) else render(target, row, "target_template")
    if isinstance(value, list) and value:
        value = value[0]
    label = None
    if choices and (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        answer, label = _resolve_choice(choices, list(LETTERS[: len(choices)]), value, 0)
    else:
        answer = _text(value, "target_template")
        if answer in choices:
            label = LETTERS[choices.index(answer)]
    context = _text(_opt(row, mapping.context), "context", required=False)
    return Fields(question=question, answer=answer, context=context, choices=choices,
                  answer_label=label)


# --- field paths ---------------------------------------------------------------------------


def _is_index(key: Any) -> bool:
    if isinstance(key, float):
        return key.is_integer()
    return isinstance(key, int) or (isinstance(key, str) and key.strip().lstrip("-").isdigit())


def _resolve_choice(choices: list[str], labels: list[str], key: Any, base: int) -> tuple[str, str]:
    """Map an answer key (label or index) to (answer text, answer label)."""
    if isinstance(key, bool):
        raise RowError("wrong_type", "answer_key", "boolean answer key")
    if isinstance(key, str) and key.strip() in labels:
        i = labels.index(key.strip())
    elif isinstance(key, str) and key.strip().upper() in labels:
        i = labels.index(key.strip().upper())
    elif _is_index(key):
        i = int(key) - base
    else:
        raise RowError("bad_label", "answer_key", f"label {key!r} is not among the choices")
    if not 0 <= i < len(choices):
        raise RowError("label_out_of_range", "answer_key", f"label {key!r} out of range")
    return choices[i], labels[i]


def _choices(row: Any, mapping: FieldsMapping) -> list[str]:
    if mapping.choices is None:
        return []
    if isinstance(mapping.choices, list):
        raw: Any = [get_path(row, p) for p in mapping.choices]
    else:
        raw = get_path(row, mapping.choices)
    if mapping.choices_format == "lettered":
        raw = parse_lettered(_text(raw, "choices"))
    if not isinstance(raw, list):
        raise RowError("wrong_type", "choices", "expected a list of choices")
    texts = [_text(c, "choices") for c in raw]
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
    question = _text(_opt(row, mapping.question or "question"), mapping.question or "question")
    context = _text(_opt(row, mapping.context), mapping.context or "context", required=False)
    choices = _choices(row, mapping)
    label = None
    reasoning = _text(_opt(row, mapping.reasoning), "reasoning", required=False)
    if mapping.answer_key is not None:
        labels = (
            [_text(x, "choice_labels") for x in get_path(row, mapping.choice_labels)]
            if mapping.choice_labels
            else list(LETTERS[: len(choices)])
        )
        if len(labels) != len(choices):
            raise RowError("wrong_type", "choice_labels", "labels and choices differ in count")
        answer, label = _resolve_choice(
            choices, labels, get_path(row, mapping.answer_key), mapping.answer_key_base
        )
    else:
        value = answer_format(fmt).seed_answer(_answer_value(row, mapping))
        answer = _text(value, mapping.answer or "answer")
        if mapping.final_answer_marker:
            if mapping.final_answer_marker not in answer:
                raise RowError("missing_field", mapping.answer or "answer",
                               f"no final answer after '{mapping.final_answer_marker}'")
            worked, _, final = answer.rpartition(mapping.final_answer_marker)
            reasoning = reasoning or worked.strip() or None
            answer = _text(final, mapping.answer or "answer")
        if answer in choices:
            label = LETTERS[choices.index(answer)]
    tests = _opt(row, mapping.tests) or []
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise RowError("wrong_type", "tests", "expected a list of test strings")
    return Fields(
        question=question, answer=answer, context=context, choices=choices, answer_label=label,
        reasoning=reasoning,
        knowledge=_text(_opt(row, mapping.knowledge), "knowledge", required=False),
        tests=list(tests),
    )


def _adapter_fields(row: dict[str, Any]) -> Fields:
    parsed = parse_llm_adapters(row)
    choices = parsed["choices"]
    if parsed["answer_index"] is None:
        return Fields(question=parsed["question"], answer=parsed["answer"])
    if not 0 <= parsed["answer_index"] < len(choices):
        raise RowError("label_out_of_range", "answer",
                       f"{parsed['answer']!r} names no option (there are {len(choices)})")
    labels = list(LETTERS[: len(choices)])
    answer, label = _resolve_choice(choices, labels, parsed["answer_index"], 0)
    return Fields(question=parsed["question"], answer=answer, choices=choices,
                      answer_label=label)


def extract_fields(row: Any, mapping: Mapping, fmt: Format) -> Fields:
    """Read the record fields of one row with a mapping, or raise RowError."""
    if not isinstance(row, dict):
        raise RowError("wrong_type", "row", "a row must be a JSON object")
    if isinstance(mapping, AdaptersMapping):
        fields = _adapter_fields(row)
    elif isinstance(mapping, JinjaMapping):
        fields = _jinja_fields(row, mapping)
    else:
        fields = _path_fields(row, mapping, fmt)
    answer_format(fmt).check_seed(fields)
    return fields


def normalize_row(
    raw: RawRow, spec: TaskSpec, mapping: Mapping, *, held_out: bool = False
) -> Record:
    """Build a record from one raw row, or raise RowError naming the field.

    A seed whose options repeat is refused; a held-out eval item is kept as it is (it is a
    decontamination target, and every one of them counts).
    """
    try:
        row = json.loads(raw.payload)
    except json.JSONDecodeError as exc:
        raise RowError("invalid_json", "row", exc.msg) from None
    fields = extract_fields(row, mapping, spec.format)
    if not held_out:
        check_distinct_choices(fields)
    license_id, commercial = spec.license, bool(spec.commercial)
    if mapping.license is not None:
        row_license = _text(_opt(row, mapping.license), mapping.license, required=False)
        if row_license:
            license_id, commercial = row_license, is_commercial(row_license)
    return Record(
        task=spec.name,
        family=spec.family,
        format=spec.format,
        **fields.as_record_fields(),
        license=license_id,
        commercial=commercial,
        source=raw.source,
    )

