"""`taskseed catalog ...` commands: build seed specs from lm-eval's task index."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from taskseed.curation.seeds.lm_eval_catalog import import_catalog, load_task_index, write_specs

DEFAULT_OUT = Path("configs/tasks/lm_eval")


def add_catalog_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `catalog import-lm-eval` on a CLI's subparsers; returns the `catalog` parser."""
    catalog = subparsers.add_parser("catalog", help="build task specs from task catalogs")
    commands = catalog.add_subparsers(dest="catalog_command", required=True)
    lm_eval = commands.add_parser(
        "import-lm-eval",
        help="write seed specs for every lm-eval task with a usable training split (offline)",
    )
    lm_eval.add_argument("--out", type=Path, default=DEFAULT_OUT,
                         help=f"folder for the specs (default: {DEFAULT_OUT})")
    lm_eval.add_argument("--include-path", default=None,
                         help="an extra folder of lm-eval task YAMLs")
    lm_eval.add_argument("--no-defaults", action="store_true",
                         help="index only --include-path, not lm-eval's own tasks")
    lm_eval.add_argument("--report", type=Path, default=None,
                         help="also write the report as JSON here")
    lm_eval.set_defaults(func=run_import_lm_eval)
    return catalog


def run_import_lm_eval(args: argparse.Namespace) -> int:
    """Import the lm-eval catalog, write the specs, and print a report."""
    index = load_task_index(args.include_path, include_defaults=not args.no_defaults)
    roots = [Path(args.include_path).resolve()] if args.include_path else None
    if not args.no_defaults:
        from taskseed.curation.seeds.lm_eval_catalog import tasks_root

        roots = [tasks_root(), *(roots or [])]
    result = import_catalog(index, roots)
    paths = write_specs(result.specs, args.out)
    summary = result.summary()
    print(f"lm-eval tasks with a training split: {summary['tasks_with_training_split']}")
    print(f"kept: {summary['tasks_kept']} tasks in {summary['families_kept']} families "
          f"({summary['dataset_paths']} dataset paths, {summary['dataset_configs']} configs)")
    print(f"excluded: {summary['tasks_excluded']} tasks")
    for reason, count in summary["excluded_by_reason"].items():
        print(f"  {count:5d}  {reason}")
    print(f"specs written (one per path/name/split source): {len(paths)} -> {args.out}")
    print(f"specs calling lm-eval Python functions: {summary['specs_using_python_functions']}")
    if args.report is not None:
        report = {**summary, "aliases": {k: v for k, v in result.aliases.items() if v},
                  "excluded": result.excluded}
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return 0
