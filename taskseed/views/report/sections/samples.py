"""Generated records per task beside the seeds they came from."""

from __future__ import annotations

from typing import Any

from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import record %}
{% for task, pairs in samples.items() %}<h3>{{ task }}</h3>
{% for rec, seeds in pairs %}<div class="pair sample" data-task="{{ task }}"><div>{{ record(rec, "gen") }}</div><div>{% for s in seeds %}{{ record(s, "seed") }}{% else %}<p class="empty">Its seeds are not in the run directory.</p>{% endfor %}</div></div>
{% endfor %}{% else %}<p class="empty">No generated records in the final stage.</p>{% endfor %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"samples": data.samples}


SECTION = Section(100, "samples", "Samples", "Samples per task", TEMPLATE, context)
