"""Drops per reason and stage."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{{ plot_or_line(plots.drops, "No stage dropped a record.") }}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"drops": plots.drops(data)}}


SECTION = Section(30, "drops", "Drops", "Drops", TEMPLATE, context)
