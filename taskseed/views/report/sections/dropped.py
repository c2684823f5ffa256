"""Examples of dropped records per stage and reason, with the detail of each drop."""

from __future__ import annotations

from typing import Any

from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import item %}
{% for d in drop_samples %}<h3>{{ d.stage }}: {{ d.reason }} ({{ d.count }})</h3>
{% for detail, x in d.examples %}<div class="meta">{{ detail }}</div>{{ item(x) }}
{% endfor %}{% else %}<p class="empty">No records were dropped.</p>{% endfor %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"drop_samples": data.drop_samples}


SECTION = Section(110, "dropped", "Dropped records", "Dropped records", TEMPLATE, context)
