"""`parser: jinja`: lm-eval style templates (`doc_to_text`, `doc_to_choice`,
`doc_to_target`) rendered against the row."""

from __future__ import annotations

import ast
import importlib
import re
from functools import lru_cache
from typing import Any, Literal

import jinja2
from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import LETTERS, Fields
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers.base import (
    RowParser,
    RowSteps,
    optional_path,
    resolve_choice,
    text_of,
)


class JinjaMapping(RowSteps):
    """lm-eval style templates rendered against the row (`doc_to_text`/`doc_to_choice`/
    `doc_to_target`). A template without `{{` that names a row field reads that field, and
    `!function module.attr` calls that Python function with the row."""

    parser: Literal["jinja"]
    text_template: str
    choices_template: str | list[str] | None = None
    target_template: str | int | None = None
    context: str | None = None


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


def _jinja_fields(row: dict[str, Any], mapping: JinjaMapping, fmt: Format) -> Fields:
    question = text_of(render(mapping.text_template, row, "text_template"), "text_template")
    choices = [text_of(c, "choices") for c in _jinja_choices(mapping.choices_template, row)]
    target = mapping.target_template
    value: Any = target if not isinstance(target, str) else render(target, row, "target_template")
    if isinstance(value, list) and value:
        value = value[0]
    label = None
    if choices and (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        answer, label = resolve_choice(choices, list(LETTERS[: len(choices)]), value, 0)
    else:
        answer = text_of(value, "target_template")
        if answer in choices:
            label = LETTERS[choices.index(answer)]
    context = text_of(optional_path(row, mapping.context), "context", required=False)
    return Fields(question=question, answer=answer, context=context, choices=choices,
                  answer_label=label)


PARSER = RowParser("jinja", JinjaMapping, _jinja_fields)
