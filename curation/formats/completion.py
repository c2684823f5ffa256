"""Completion: a context to continue, with candidate endings (HellaSwag-style)."""

from __future__ import annotations

from taskseed.curation.formats.base import AnswerFormat


class Completion(AnswerFormat):
    name = "completion"
    vote = "choices"
    continues_text = True
    hub_tasks = ()
    needs_choices = True


FORMAT = Completion()
