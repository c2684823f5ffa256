"""The `taskseed` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taskseed.cli.catalog import add_catalog_commands
from taskseed.cli.inspect import add_inspect_command
from taskseed.cli.native import add_native_commands
from taskseed.cli.report import add_report_command
from taskseed.curation.errors import TaskseedError
from taskseed.execution.slurm.tasks import add_slurm_commands


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overlay", type=Path, action="append", default=[],
                        help="a per-scale overlay merged over the config (repeatable)")
    parser.add_argument("--set", dest="sets", metavar="KEY=VALUE", action="append", default=[],
                        help="set one value after the overlays: a dotted key and a YAML value, "
                             "e.g. accept.target=50 or stages.generate.temperature=0.9 "
                             "(repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskseed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline config (resumes an existing run directory)")
    run.add_argument("config", type=Path)
    _config_options(run)
    run.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    plan = sub.add_parser("plan", help="planned teacher requests, tokens and cost of a config")
    plan.add_argument("config", type=Path)
    _config_options(plan)
    check = sub.add_parser("check", help="validate a pipeline config and its task specs")
    check.add_argument("config", type=Path)
    _config_options(check)
    add_catalog_commands(sub)
    add_slurm_commands(sub)
    add_inspect_command(sub)
    add_report_command(sub)
    add_native_commands(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from taskseed.execution.run import run_pipeline
    from taskseed.views.summary import format_summary

    summary = run_pipeline(args.config, args.overlay, args.run_dir, sets=args.sets)
    print(format_summary(summary))
    if "card" in summary:
        print(f"dataset card: {summary['card']}")
    if "report" in summary:
        print(f"report: {summary['report']}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from taskseed.config.pipeline import load_config
    from taskseed.execution.pipeline import build_stages, terms_warnings
    from taskseed.generation.backends.openai import OpenAIConfig, missing_key

    loaded = load_config(args.config, args.overlay, sets=args.sets)
    stages = build_stages(loaded)
    loaded.config.slurm.check_names([s.name for s in stages], loaded.source_of("slurm"))
    models = {"teacher": loaded.config.teacher, **loaded.config.models}
    for role, model in models.items():
        if isinstance(model, OpenAIConfig):
            warning = missing_key(model.base_url, role, model.api_key_env)
            if warning:
                print(f"taskseed: warning: {warning}", file=sys.stderr)
    for warning in terms_warnings(stages):
        print(f"taskseed: warning: {warning}", file=sys.stderr)
    label = " + ".join(map(str, [args.config, *args.overlay]))
    label += "".join(f" --set {item}" for item in args.sets)
    print(f"{label}: ok, {len(loaded.specs)} tasks, stages: "
          + " -> ".join(s.name for s in stages) + f", config hash {loaded.hash[:12]}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from taskseed.execution.plan import format_plan, plan_run

    plans, loaded = plan_run(args.config, args.overlay, sets=args.sets)
    print(format_plan(plans, loaded))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"run": _run, "check": _check, "plan": _plan}
    handler = handlers.get(args.command) or args.func
    try:
        return handler(args)
    except TaskseedError as err:
        print(f"taskseed: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskseed: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
