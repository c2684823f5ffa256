"""Records per task: seeds, candidates, the accept loop's target and final records."""

from __future__ import annotations

from typing import Any

from taskseed.views.report.data import ReportData, task_rows
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% if tasks %}<table><tr><th>task</th><th>family</th><th>seeds</th><th>candidates</th><th>accepted (loop)</th><th>target</th><th>final records</th></tr>
{% for t in tasks %}<tr><td>{{ t.task }}</td><td>{{ t.family }}</td><td class="n">{{ t.seeds }}</td><td class="n">{{ t.candidates }}</td><td class="n">{{ t.accepted if t.accepted is not none else "" }}</td><td class="n">{{ t.target if t.target is not none else "" }}</td><td class="n">{{ t.final }}</td></tr>
{% endfor %}</table>{% else %}<p class="empty">No task has records in this run.</p>{% endif %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"tasks": task_rows(data)}


SECTION = Section(10, "tasks", "Tasks", "Records per task", TEMPLATE, context)
