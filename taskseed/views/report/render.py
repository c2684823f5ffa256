"""`taskseed report RUN`: one self-contained HTML file about a run directory.

The report opens offline: its plots are PNG data inside the file, its style is inline, it
has no script and references no other file. Record text is escaped (Jinja autoescape).
`--screenshot` renders it with headless Chromium into a PNG of the whole page.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from taskseed.curation.errors import TaskseedError
from taskseed.views.report.data import ReportData, headline, load_report_data
from taskseed.views.report.sections import Section, sections

TEMPLATE = "report.html.j2"


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(Path(__file__).parent), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=False)


def render_sections(env: Environment, data: ReportData) -> list[tuple[Section, Markup]]:
    """Each section of the catalogue with its rendered body."""
    return [(s, Markup(env.from_string(s.template).render(**s.context(data))))
            for s in sections()]


def render_html(data: ReportData) -> str:
    env = environment()
    summary = data.summary or {}
    hash_file = data.run_dir / "config.hash"
    return env.get_template(TEMPLATE).render(
        name=data.config.get("name", data.run_dir.name), run_dir=str(data.run_dir),
        status=summary.get("status", "no summary (unfinished run?)"),
        seconds=summary.get("seconds"),
        config_hash=hash_file.read_text().strip()[:12] if hash_file.exists() else "?",
        headline=headline(data), sections=render_sections(env, data))


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
