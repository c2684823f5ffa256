"""Seed-row parsers: one module per row layout in this folder, each a `RowParser` named
`PARSER` (`fields`, the default; `llm_adapters`; `jinja`). A task spec's `mapping:` picks one
with `parser:`; adding a layout is adding its module."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Tag, TypeAdapter
from taskseed.curation.catalog import modules
from taskseed.curation.errors import RowError
from taskseed.curation.formats import answer_format
from taskseed.curation.formats.base import Fields
from taskseed.curation.io.yamlconf import tag_discriminator
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers.base import RowParser, RowSteps

DEFAULT = "fields"
PARSERS: dict[str, RowParser] = {
    m.PARSER.name: m.PARSER for m in modules(__name__)
    if isinstance(getattr(m, "PARSER", None), RowParser)
}

Mapping = Annotated[
    Union[tuple(Annotated[p.mapping, Tag(name)] for name, p in PARSERS.items())],  # noqa: UP007
    tag_discriminator("parser", DEFAULT, list(PARSERS)),
]
"""How to read one row layout into record fields, by `parser`."""

_MAPPING: TypeAdapter[Any] = TypeAdapter(Mapping)


def parse_mapping(data: dict[str, Any]) -> RowSteps:
    """A mapping from its YAML form (`parser` picks the kind; `fields` by default)."""
    return _MAPPING.validate_python(data)


def extract_fields(row: Any, mapping: RowSteps, fmt: Format) -> Fields:
    """Read the record fields of one row with a mapping, or raise RowError."""
    if not isinstance(row, dict):
        raise RowError("wrong_type", "row", "a row must be a JSON object")
    fields = PARSERS[mapping.parser].extract(row, mapping, fmt)  # type: ignore[attr-defined]
    answer_format(fmt).check_seed(fields)
    return fields
