"""The `taskseed report` command line; the work is in `taskseed.views.report.render`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _report_command(args: argparse.Namespace) -> int:
    from taskseed.views.report.browser import screenshot
    from taskseed.views.report.render import write_report

    path = write_report(args.run, args.out, args.samples)
    print(f"report: {path}")
    if args.screenshot is not None:
        screenshot(path, args.screenshot, height=args.screenshot_height)
        print(f"screenshot: {args.screenshot}")
    return 0


def add_report_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `taskseed report RUN [--out FILE] [--samples N] [--screenshot PNG]`."""
    parser = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run directory")
    parser.add_argument("run", type=Path, help="the run directory")
    parser.add_argument("--out", type=Path, help="the HTML file (default RUN/report.html)")
    parser.add_argument("--samples", type=int, default=3,
                        help="sample records per task and per drop reason (default 3)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="also render the report with headless Chromium into a PNG")
    parser.add_argument("--screenshot-height", type=int, metavar="PX",
                        help="only the top PX pixels of the page in the screenshot")
    parser.set_defaults(func=_report_command)
    return parser
