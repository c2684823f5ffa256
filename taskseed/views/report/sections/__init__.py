"""The report's sections, one module each: this folder is their catalogue.

A section module defines `SECTION = Section(order, anchor, title, heading, template,
context)`: `context(data)` picks what the section shows from the run's `ReportData`, and
`template` is the Jinja body rendered with it (the macros in `macros.html.j2` are
importable). Sections appear in `order`; adding one is adding its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskseed.curation.catalog import modules

if TYPE_CHECKING:
    from taskseed.views.report.data import ReportData


@dataclass(frozen=True)
class Section:
    """One part of the report: where it sits, its link and heading, and what it shows."""

    order: int
    anchor: str
    title: str  # its link in the navigation bar
    heading: str
    template: str  # Jinja source of the body, below the heading
    context: Callable[[ReportData], dict[str, Any]]


def plot_section(order: int, anchor: str, title: str, heading: str,
                 plot: Callable[[ReportData], Any], empty: str) -> Section:
    """A section that is one plot, or a line saying why there is none."""
    template = ('{% from "macros.html.j2" import plot_or_line %}\n'
                "{{ plot_or_line(plot, empty) }}\n")
    return Section(order, anchor, title, heading, template,
                   lambda data: {"plot": plot(data), "empty": empty})


def sections() -> list[Section]:
    """Every section in this folder, in report order."""
    found = [m.SECTION for m in modules(__name__) if isinstance(getattr(m, "SECTION", None),
                                                                Section)]
    anchors = [s.anchor for s in found]
    duplicated = sorted({a for a in anchors if anchors.count(a) > 1})
    if duplicated:
        raise ValueError(f"report sections share an anchor: {', '.join(duplicated)}")
    return sorted(found, key=lambda s: (s.order, s.anchor))
