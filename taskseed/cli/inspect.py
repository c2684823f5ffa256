"""The `taskseed inspect` command line; the work is in `taskseed.views.inspect`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskseed.curation.errors import TaskseedError


def add_inspect_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `inspect` on a CLI's subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "inspect", help="show the records of a run's stage, kept or dropped",
        description="Show the records of one stage of a run (kept, or dropped with --rejects), "
                    "filtered, as a table or as JSONL.")
    parser.add_argument("run", type=Path, metavar="RUN", help="the run directory")
    parser.add_argument("--stage", help="a stage's name (generate), number (3) or folder "
                                        "(03-generate); default: the last stage")
    parser.add_argument("--rejects", action="store_true",
                        help="show the dropped records with their reason and detail")
    parser.add_argument("--task", dest="tasks", metavar="TASK", action="append", default=[],
                        help="only this task (repeatable)")
    parser.add_argument("--reason", dest="reasons", metavar="REASON", action="append",
                        default=[],
                        help="only drops with this reason (repeatable; implies --rejects)")
    parser.add_argument("--score", dest="scores", metavar="NAME:LO:HI", action="append",
                        default=[],
                        help="only records whose score NAME lies in [LO, HI]; an empty bound "
                             "is open, e.g. judge.correctness:4: (repeatable)")
    parser.add_argument("--grep", metavar="TEXT",
                        help="only records whose question, answer, choices, context or "
                             "reasoning contain TEXT (any case)")
    parser.add_argument("--limit", type=int, default=20, metavar="N",
                        help="show at most N records (default 20; 0: all)")
    parser.add_argument("--jsonl", action="store_true",
                        help="one JSON object per line, full records, instead of a table")
    parser.set_defaults(func=run_inspect)
    return parser


def run_inspect(args: argparse.Namespace) -> int:
    """Print the selection as a table, or as JSONL with --jsonl."""
    if args.limit < 0:
        raise TaskseedError("--limit must be 0 (all) or more")
    from taskseed.views.inspect import (
        Query,
        ScoreRange,
        jsonl_lines,
        render_plain,
        render_rich,
        select,
    )

    scores = [ScoreRange.parse(text) for text in args.scores]
    query = Query(args.stage, args.rejects, args.tasks, args.reasons, scores, args.grep,
                  args.limit)
    selection = select(args.run, query)
    if args.jsonl:
        for line in jsonl_lines(selection):
            sys.stdout.write(line + "\n")
        return 0
    try:
        from rich.console import Console
    except ImportError:
        print(render_plain(selection))
        return 0
    render_rich(selection, Console())
    return 0
