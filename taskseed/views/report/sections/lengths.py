"""Length distributions of seeds and generated records."""

from taskseed.views.report import plots
from taskseed.views.report.sections import plot_section

SECTION = plot_section(50, "lengths", "Lengths", "Lengths", plots.lengths,
                       "No records to measure.")
