"""Overlap with every indexed held-out split, for generated records and seeds."""

from __future__ import annotations

from typing import Any

from taskseed.views.report import plots
from taskseed.views.report.data import ReportData
from taskseed.views.report.sections import Section

TEMPLATE = """\
{% from "macros.html.j2" import plot_or_line %}
{% if decontamination %}
{{ plot_or_line(plots.contamination, "No generated record or seed overlaps a held-out split.") }}
<p>{{ decontamination.ngram }}-gram overlap, at least {{ decontamination.min_matches }} shared n-gram(s); {{ decontamination.indexed|length }} held-out splits indexed ({{ decontamination.index["items"] if decontamination.index else "?" }} items).</p>
<table><tr><th>benchmark</th><th>split</th><th>items</th><th>source</th><th>generated dropped</th><th>seeds overlapping</th></tr>
{% for row in contamination_rows %}<tr><td>{{ row.benchmark }}</td><td>{{ row.split }}</td><td class="n">{{ row["items"] }}</td><td>{{ row.source }}</td><td class="n">{{ row.dropped }}</td><td class="n">{{ row.seeds }}</td></tr>
{% endfor %}</table>
{% if decontamination.not_indexed %}<p>Not indexed:</p><ul>{% for row in decontamination.not_indexed %}<li>{{ row.benchmark }}/{{ row.split }}: {{ row.reason }}</li>{% endfor %}</ul>{% endif %}
{% else %}<p class="empty">No decontamination report in this run (no decontaminate stage).</p>{% endif %}
"""


def contamination_rows(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every indexed held-out split with the generated and seed records overlapping it."""
    if not report:
        return []
    gen = (report.get("generated") or {}).get("benchmarks", {})
    seeds = (report.get("seeds") or {}).get("benchmarks", {})
    rows = []
    for entry in report.get("indexed", []):
        bench, split = entry.get("benchmark"), entry.get("split")
        rows.append({**entry,
                     "dropped": gen.get(bench, {}).get(split, {}).get("records_dropped", 0),
                     "seeds": seeds.get(bench, {}).get(split, {}).get("seed_records", 0)})
    return sorted(rows, key=lambda r: (-r["dropped"], -r["seeds"], r["benchmark"]))


def context(data: ReportData) -> dict[str, Any]:
    return {"plots": {"contamination": plots.contamination(data)},
            "decontamination": data.decontamination,
            "contamination_rows": contamination_rows(data.decontamination)}


SECTION = Section(60, "contamination", "Contamination", "Contamination", TEMPLATE, context)
