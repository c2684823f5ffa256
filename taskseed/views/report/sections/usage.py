"""Model calls, cache hits, tokens and cost per stage and per task."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{{ plot_or_line(plots.usage, "No stage called a model.") }}
{% if usage %}<table><tr><th>stage</th><th>model</th><th>backend</th><th>calls</th><th>cache hits</th><th>prompt tokens</th><th>completion tokens</th><th>USD</th></tr>
{% for u in usage %}<tr><td>{{ u.stage }}</td><td>{{ u.model }}</td><td>{{ u.model_id }}</td><td class="n">{{ u.calls }}</td><td class="n">{{ u.cache_hits }}</td><td class="n">{{ u.prompt_tokens }}</td><td class="n">{{ u.completion_tokens }}</td><td class="n">{{ "%.4f"|format(u.usd) if u.usd is not none else "n/a" }}</td></tr>
{% endfor %}</table>
{% if not priced %}<p class="empty">The config sets no token prices (budget.usd_per_1m_*), so no cost is shown.</p>{% endif %}
{% if usage_by_task %}<h3>Per task</h3><table><tr><th>task</th><th>calls</th><th>prompt tokens</th><th>completion tokens</th><th>USD</th></tr>
{% for t in usage_by_task %}<tr><td>{{ t.task }}</td><td class="n">{{ t.calls }}</td><td class="n">{{ t.prompt_tokens }}</td><td class="n">{{ t.completion_tokens }}</td><td class="n">{{ "%.4f"|format(t.usd) if t.usd is not none else "n/a" }}</td></tr>
{% endfor %}</table>{% endif %}{% endif %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"usage": plots.usage(data)}, "usage": data.usage,
            "usage_by_task": data.usage_by_task, "priced": data.priced}


SECTION = Section(90, "usage", "Usage and cost", "Teacher usage and cost", TEMPLATE, context)
