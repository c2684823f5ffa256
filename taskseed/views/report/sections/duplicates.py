"""Exact and fuzzy duplicate clusters, with a kept and a dropped record side by side."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line, record, item %}
{{ plot_or_line(plots.duplicates, "No duplicate clusters (no exact or fuzzy dedup drops).") }}
{% if duplicates.drops %}<table><tr><th>stage</th><th>reason</th><th>dropped</th></tr>
{% for stage, reason, n in duplicates.drops %}<tr><td>{{ stage }}</td><td>{{ reason }}</td><td class="n">{{ n }}</td></tr>{% endfor %}</table>{% endif %}
{% for stage, detail, kept, dropped in duplicates.examples %}<h3>{{ stage }}: {{ detail }}</h3>
<div class="pair"><div>{% if kept %}{{ record(kept, "gen", true) }}{% else %}<p class="empty">kept record not found</p>{% endif %}</div><div>{{ item(dropped, true) }}</div></div>
{% endfor %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"duplicates": plots.duplicates(data)}, "duplicates": data.duplicates}


SECTION = Section(70, "duplicates", "Duplicates", "Duplicates", TEMPLATE, context)
