"""Answer formats: one module per format in this folder, each an `AnswerFormat` named `FORMAT`.

The modules list themselves: adding a format is adding its module here and its prompt
template `generation/prompts/<name>.j2`.
"""

from __future__ import annotations

from enum import StrEnum

from taskseed.curation.catalog import modules
from taskseed.curation.formats.base import AnswerFormat

DEFINITIONS: dict[str, AnswerFormat] = {
    m.FORMAT.name: m.FORMAT for m in modules(__name__) if isinstance(
        getattr(m, "FORMAT", None), AnswerFormat)
}

# The answer form of a task: one member per registered format (`Format.MULTIPLE_CHOICE`).
Format = StrEnum("Format", {name.upper(): name for name in DEFINITIONS})


def answer_format(fmt: str) -> AnswerFormat:
    """The definition of a format (a `Format` member or its name)."""
    return DEFINITIONS[str(fmt)]
