"""Drops per reason and stage."""

from taskseed.views.report import plots
from taskseed.views.report.sections import plot_section

SECTION = plot_section(30, "drops", "Drops", "Drops", plots.drops,
                       "No stage dropped a record.")
