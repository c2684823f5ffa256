"""Recall of the deterministic filters on a planted-defect set built from real seeds.

Builds the set of `planted.py` (about `--per-kind` items of every defect kind, fewer
hanging programs since each one costs the sandbox's time limit, and `--correct` untouched
items over all tasks), runs copied_exemplar, validity, heuristics and verify over it in
pipeline order (code in 2 sandboxes at once), and prints Markdown tables: recall per kind
and what caught it, precision of all drops, false drops on correct items per task, and
the throughput.

Usage: python benchmarks/bench_planted_defects.py [--seeds ../shared/seeds] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from planted import (
    KINDS,
    MODEL_ONLY,
    SEEDS,
    build,
    default_counts,
    load_records,
    run_filters,
    summarize,
)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _reasons(by: dict[str, int], top: int = 4) -> str:
    items = list(by.items())
    text = ", ".join(f"{reason} {n}" for reason, n in items[:top])
    rest = sum(n for _, n in items[top:])
    return text + (f", other {rest}" if rest else "") if text else "-"


def kinds_table(summary: dict[str, Any]) -> list[str]:
    """Recall per kind, with the filters and reasons that caught it."""
    lines = ["| kind | planted | caught | recall | caught by (filter:reason n) "
             "| missed (variant n) |", "|---|---:|---:|---:|---|---|"]
    for kind in KINDS:
        row = summary["kinds"].get(kind)
        if row is None or kind == "correct":
            continue
        name = f"{kind} (model judges' job)" if kind in MODEL_ONLY else kind
        lines.append(f"| {name} | {row['planted']} | {row['caught']} | {_pct(row['recall'])} | "
                     f"{_reasons(row['by'])} | {_reasons(row['missed_by_variant'])} |")
    return lines


def correct_table(summary: dict[str, Any]) -> list[str]:
    """False drops on untouched correct items, per task."""
    lines = ["| task | correct items | dropped | false-drop rate | reasons |",
             "|---|---:|---:|---:|---|"]
    total = dropped = 0
    for task, row in summary["correct_by_task"].items():
        total, dropped = total + row["n"], dropped + row["dropped"]
        lines.append(f"| {task} | {row['n']} | {row['dropped']} | {_pct(row['rate'])} | "
                     f"{_reasons(row['by'])} |")
    lines.append(f"| **all** | {total} | {dropped} | {_pct(dropped / max(total, 1))} | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=SEEDS)
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--correct", type=int, default=2000)
    parser.add_argument("--code-hangs", type=int, default=50)
    parser.add_argument("--code-seconds", type=float, default=2.0)
    parser.add_argument("--max-per-task", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    records = load_records(args.seeds, args.max_per_task)
    items = build(records, default_counts(args.per_kind, args.correct, args.code_hangs),
                  args.seed)
    built = time.perf_counter() - started
    seeds = [r for task in records.values() for r in task]
    outcomes, seconds = run_filters(items, code_seconds=args.code_seconds, workers=2,
                                    seeds=seeds)
    summary = summarize(items, outcomes)
    code = sum(i.record.format == "code" for i in items)

    print("### Planted defects: recall of the deterministic filters\n")
    print("\n".join(kinds_table(summary)))
    print(f"\nPrecision: {summary['precision']:.3f} "
          f"({summary['drops']} drops, of which correct items "
          f"{sum(r['dropped'] for r in summary['correct_by_task'].values())})\n")
    print("\n".join(correct_table(summary)))
    print(f"\nTiming: {len(items)} records ({code} run in the sandbox, "
          f"{args.code_seconds:g} s limit, 2 at once) filtered in {seconds:.1f} s = "
          f"{len(items) / seconds:.1f} records/s; loading and planting {built:.1f} s; "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    if args.out:
        report = {"args": {k: str(v) for k, v in vars(args).items()},
                  "records": len(items), "code_records": code, "seconds": seconds,
                  "records_per_s": len(items) / seconds, "build_seconds": built, **summary}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
