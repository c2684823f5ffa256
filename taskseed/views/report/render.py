"""`taskseed report RUN`: one self-contained HTML file about a run directory.

The report opens offline: its plots are PNG data inside the file, its style is inline, it
has no script and references no other file. Record text is escaped (Jinja autoescape).
`--screenshot` renders it with headless Chromium into a PNG of the whole page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from taskseed.curation.errors import TaskseedError
from taskseed.views.report import plots as report_plots
from taskseed.views.report.data import ReportData, headline, load_report_data, task_rows

TEMPLATE = "report.html.j2"
SECTIONS = [("tasks", "Tasks"), ("funnel", "Funnel"), ("drops", "Drops"), ("scores", "Scores"),
            ("lengths", "Lengths"), ("contamination", "Contamination"),
            ("duplicates", "Duplicates"), ("licenses", "Licenses"), ("usage", "Usage and cost"),
            ("samples", "Samples"), ("dropped", "Dropped records")]


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


def build_plots(data: ReportData) -> dict[str, Any]:
    return {
        "funnel": report_plots.funnel(data), "task_funnel": report_plots.task_funnel(data),
        "drops": report_plots.drops(data), "scores": report_plots.scores(data),
        "lengths": report_plots.lengths(data),
        "contamination": report_plots.contamination(data),
        "duplicates": report_plots.duplicates(data), "licenses": report_plots.licenses(data),
        "usage": report_plots.usage(data),
    }


def render_html(data: ReportData) -> str:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=False)
    summary = data.summary or {}
    hash_file = data.run_dir / "config.hash"
    return env.get_template(TEMPLATE).render(
        name=data.config.get("name", data.run_dir.name), run_dir=str(data.run_dir),
        status=summary.get("status", "no summary (unfinished run?)"),
        seconds=summary.get("seconds"),
        config_hash=hash_file.read_text().strip()[:12] if hash_file.exists() else "?",
        sections=SECTIONS, headline=headline(data), tasks=task_rows(data),
        stages=data.stages, plots=build_plots(data), decontamination=data.decontamination,
        contamination_rows=contamination_rows(data.decontamination),
        duplicates=data.duplicates, licenses=data.licenses, model_terms=data.model_terms,
        usage=data.usage,
        usage_by_task=data.usage_by_task, priced=data.priced, samples=data.samples,
        drop_samples=data.drop_samples)


def write_report(run_dir: Path, out: Path | None = None, samples: int = 3) -> Path:
    """Write the HTML report of `run_dir` (default `run_dir/report.html`); its path."""
    if samples < 0:
        raise TaskseedError(f"--samples must be 0 or more, not {samples}")
    run_dir = Path(run_dir)
    data = load_report_data(run_dir, samples)
    target = Path(out) if out is not None else run_dir / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(data), encoding="utf-8")
    return target
