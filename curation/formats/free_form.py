"""Free-form answers: short text, no options."""

from __future__ import annotations

from taskseed.curation.formats.base import AnswerFormat


class FreeForm(AnswerFormat):
    name = "free_form"


FORMAT = FreeForm()
