"""`taskseed native check` and `taskseed native build-server`: the llama.cpp build here."""

from __future__ import annotations

import argparse
from pathlib import Path

from taskseed.curation.errors import TaskseedError
from taskseed.curation.io import packaged_models


def add_native_commands(subparsers: argparse._SubParsersAction) -> None:
    native = subparsers.add_parser("native", help="check the llama.cpp build, build llama-server")
    sub = native.add_subparsers(dest="native_command", required=True)
    check = sub.add_parser("check", help="is the installed llama.cpp portable, and does it "
                           "generate? (exit 1 when not)")
    check.add_argument("--model", default=packaged_models.TINY,
                       help="packaged model to generate one token with (default: %(default)s)")
    check.set_defaults(func=_check)
    build = sub.add_parser("build-server", help="build llama-server portably from the "
                           "installed llama-cpp-python's llama.cpp sources")
    build.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    build.add_argument("--source", type=Path, help="a llama-cpp-python sdist or unpacked tree "
                       "(default: fetched from the package index)")
    build.add_argument("--force", action="store_true", help="rebuild when one is built already")
    build.set_defaults(func=_build)


def _check(args: argparse.Namespace) -> int:
    from taskseed.generation.backends.native import REBUILD, check_build, find_llama_server

    model = packaged_models.packaged(args.model)
    path = model.path() if model.installed() else None
    result = check_build(path)
    print(f"llama.cpp: {result.system_info.strip()}")
    if path is not None:
        print(f"generated one token with {model.title}: {result.generated}")
    else:
        print(f"no generation check: {model.title} is not installed ({model.install})")
    try:
        print(f"llama-server: {find_llama_server()}")
    except TaskseedError as err:
        print(f"llama-server: {err}")
    if not result.portable:
        print(f"not portable: built with {', '.join(result.unportable)}; rebuild: {REBUILD}")
        return 1
    print("portable: yes")
    return 0


def _build(args: argparse.Namespace) -> int:
    from taskseed.generation.backends.native import (
        build_llama_server,
        find_llama_server,
        server_dir,
    )

    if not args.force:
        try:
            existing = find_llama_server()
        except TaskseedError:
            existing = None
        if existing is not None and existing.parent == server_dir():
            print(f"llama-server: {existing} (built already; --force rebuilds)")
            return 0
    path = build_llama_server(args.jobs, args.source, log=lambda line: print(line, flush=True))
    print(f"llama-server: {path}")
    return 0
