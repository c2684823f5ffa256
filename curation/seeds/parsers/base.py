"""What every seed-row parser shares: the row steps of a mapping, the parser contract and
the helpers that read fields out of a row."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import Fields
from taskseed.curation.record import Format


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RowFilter(Strict):
    """Keep only rows whose `field` lies in [min, max] or equals one of `values`.

    Used where one file holds several splits (MBPP: the split is a task_id range).
    """

    field: str
    min: float | None = None
    max: float | None = None
    values: list[str | int] | None = None


class RowSteps(Strict):
    """Row-level steps every mapping may take before its fields are read.

    - `explode`: top-level fields holding parallel lists; each row becomes one row per
      item with those fields set to the item (a string field is decoded as JSON or a
      Python literal first). Row indices then count the exploded items of a file.
    - `where`: keeps only the rows of this split when one file holds several splits.
    - `process_docs`: `module.attr` of a function applied to a hub split (a `datasets`
      Dataset) before its rows are read, as lm-eval's `process_docs`.
    - `license`: the path of a row field holding that row's license, for sources whose
      rows carry different licenses (rows without one have the task's license).
    """

    explode: list[str] = Field(default_factory=list)
    where: RowFilter | None = None
    process_docs: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class RowParser:
    """One row layout: its `parser:` name in a task spec, the mapping model that configures
    it (a `RowSteps` with a `parser` literal) and the function that reads a row's fields."""

    name: str
    mapping: type[RowSteps]
    extract: Callable[[dict[str, Any], Any, Format], Fields]


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


def text_of(value: Any, field: str, required: bool = True) -> str | None:
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


def optional_path(row: Any, path: str | None) -> Any:
    return None if path is None else get_path(row, path)


# --- reformatted LLM-Adapters rows -------------------------------------------------------

def _is_index(key: Any) -> bool:
    if isinstance(key, float):
        return key.is_integer()
    return isinstance(key, int) or (isinstance(key, str) and key.strip().lstrip("-").isdigit())


def resolve_choice(choices: list[str], labels: list[str], key: Any, base: int) -> tuple[str, str]:
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
