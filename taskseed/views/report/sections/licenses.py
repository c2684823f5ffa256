"""Records and tokens per license, the commercial subset, and the terms of the models that wrote text."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{{ plot_or_line(plots.licenses, "No records to break down by license.") }}
{% if licenses %}<table><tr><th>license</th><th>records</th><th>tokens</th><th>commercial records</th><th>commercial tokens</th></tr>
{% for r in licenses %}<tr><td>{{ r.license }}</td><td class="n">{{ r.records }}</td><td class="n">{{ r.tokens if r.tokens is not none else "" }}</td><td class="n">{{ r.commercial_records }}</td><td class="n">{{ r.commercial_tokens if r.commercial_tokens is not none else "" }}</td></tr>
{% endfor %}</table>{% endif %}
<h3>Model terms</h3>
{% if model_terms.models %}<table><tr><th>stage</th><th>model</th><th>license</th><th>training on outputs</th><th>records</th></tr>
{% for m in model_terms.models %}<tr><td>{{ m.stage }}</td><td>{{ m.model }}</td><td>{{ m.license }}</td><td>{{ m.outputs }}</td><td class="n">{{ m.records }}</td></tr>
{% endfor %}</table>
{% for m in model_terms.models if m.obligations %}{% for duty in m.obligations %}<p>Obligation ({{ m.license }}): {{ duty }}</p>{% endfor %}{% endfor %}
{% else %}<p class="empty">No record contains text a model wrote.</p>{% endif %}
{% if model_terms.not_commercial %}<table><tr><th>not commercial because</th><th>records</th></tr>
{% for reason, n in model_terms.not_commercial.items() %}<tr><td>{{ reason }}</td><td class="n">{{ n }}</td></tr>
{% endfor %}</table>{% endif %}
"""


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"licenses": plots.licenses(data)}, "licenses": data.licenses,
            "model_terms": data.model_terms}


SECTION = Section(80, "licenses", "Licenses", "Licenses", TEMPLATE, context)
