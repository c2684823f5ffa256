"""Judge, reward and self-consistency scores on kept and dropped records, with thresholds."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{% for p in plots.scores %}{{ plot_or_line(p, "") }}{% else %}<p class="empty">No judge, reward or self-consistency scores in this run.</p>{% endfor %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"scores": plots.scores(data)}}


SECTION = Section(40, "scores", "Scores", "Judge and reward scores", TEMPLATE, context)
