"""Records through each stage, by family and by task, with each stage's totals."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{{ plot_or_line(plots.funnel, "No stage has finished a shard yet.") }}
{{ plot_or_line(plots.task_funnel, "No records per task to show.") }}
<table><tr><th>stage</th><th>shards</th><th>in</th><th>out</th><th>dropped</th><th>seconds</th></tr>
{% for s in stages %}<tr><td>{{ s.label }}</td><td class="n">{{ s.shards }}</td><td class="n">{{ s.inputs }}</td><td class="n">{{ s.outputs }}</td><td class="n">{{ s.rejects.values()|sum }}</td><td class="n">{{ "%.1f"|format(s.seconds) }}</td></tr>
{% endfor %}</table>
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"funnel": plots.funnel(data), "task_funnel": plots.task_funnel(data)},
            "stages": data.stages}


SECTION = Section(20, "funnel", "Funnel", "Funnel", TEMPLATE, context)
