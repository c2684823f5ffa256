"""Answer formats: one module per format, registered in `DEFINITIONS` below.

Adding a format is one module here (an `AnswerFormat` named `FORMAT`), its line in
`DEFINITIONS`, and its prompt template `taskseed/generation/prompts/<name>.j2`.
"""

from __future__ import annotations

from enum import StrEnum

from taskseed.curation.formats import (
    code,
    completion,
    extractive,
    free_form,
    math,
    multiple_choice,
    yes_no,
)
from taskseed.curation.formats.base import AnswerFormat

DEFINITIONS: dict[str, AnswerFormat] = {
    f.name: f
    for f in (
        multiple_choice.FORMAT,
        yes_no.FORMAT,
        extractive.FORMAT,
        free_form.FORMAT,
        math.FORMAT,
        code.FORMAT,
        completion.FORMAT,
    )
}

# The answer form of a task: one member per registered format (`Format.MULTIPLE_CHOICE`).
Format = StrEnum("Format", {name.upper(): name for name in DEFINITIONS})


def answer_format(fmt: str) -> AnswerFormat:
    """The definition of a format (a `Format` member or its name)."""
    return DEFINITIONS[str(fmt)]
