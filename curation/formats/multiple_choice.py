"""Multiple choice: a question with options; the answer is the text of the right option."""

from __future__ import annotations

from taskseed.curation.formats.base import AnswerFormat


class MultipleChoice(AnswerFormat):
    name = "multiple_choice"
    mix = "multiple_choice"
    vote = "choices"
    hub_tasks = ("multiple-choice", "question-answering")
    needs_choices = True


FORMAT = MultipleChoice()
