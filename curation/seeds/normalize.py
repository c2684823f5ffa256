"""Turning raw rows into records, driven by the task spec's mapping.

The mapping's parser (`curation/seeds/parsers/`) says where each field lives. Answers
are stored as semantic text: a label or index is resolved against the choices.
"""

from __future__ import annotations

import json

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import check_distinct_choices
from taskseed.curation.record import RawRow, Record
from taskseed.curation.seeds.parsers import Mapping, extract_fields
from taskseed.curation.seeds.parsers.base import optional_path, text_of
from taskseed.curation.seeds.taskspec import TaskSpec, is_commercial


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
        row_license = text_of(optional_path(row, mapping.license), mapping.license, required=False)
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

