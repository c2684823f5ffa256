"""Length distributions of seeds and generated records."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{{ plot_or_line(plots.lengths, "No records to measure.") }}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"lengths": plots.lengths(data)}}


SECTION = Section(50, "lengths", "Lengths", "Lengths", TEMPLATE, context)
