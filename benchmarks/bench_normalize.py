"""Normalization throughput over all seed data: a local Dask cluster vs a plain pandas loop.

(a) Dask: `SeedStage.plan()` shards every task's training split and every held-out split
    is planned as one more shard; `client.map` runs read + normalize per shard on a
    `LocalCluster(n_workers=2, threads_per_worker=1)`.
(b) pandas: one process reads each file with pandas and normalizes row by row.

Usage: python benchmarks/bench_normalize.py [--seeds ../shared/seeds] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
from taskseed.curation.decontam.eval_sets import EvalSplit, eval_splits, read_eval_split
from taskseed.curation.errors import RowError
from taskseed.curation.record import RawRow, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import (
    apply_mapping_rows,
    expand_files,
    iter_blocks,
    iter_labels,
)
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import SplitSpec, TaskSpec, load_task_specs

from taskseed.execution.shard import ready

REPO = Path(__file__).resolve().parents[1]


def _dask_shard(job: tuple[str, Any], specs: dict[str, TaskSpec], seeds: Path,
                rows_per_shard: int) -> tuple[int, int]:
    kind, shard = job
    if kind == "train":
        stage = ready(SeedStage(SeedParams(rows_per_shard=rows_per_shard), specs, seeds))
        read = stage.read(shard)
        done = ready(NormalizeStage(None, specs)).process(read.items, 0)
        return len(done.items), len(read.rejects) + len(done.rejects)
    task, split = shard
    target = next(t for t in eval_splits(specs) if (t.task, t.split) == (task, split))
    result = read_eval_split(target, seeds)
    return len(result.items), len(result.rejects)


def run_dask(specs: dict[str, TaskSpec], seeds: Path, rows_per_shard: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: None)
        start = time.perf_counter()
        stage = SeedStage(SeedParams(rows_per_shard=rows_per_shard), specs, seeds)
        # Whole held-out splits are the largest jobs: they go first so no worker idles at the end.
        jobs: list[tuple[str, Any]] = [("eval", (t.task, t.split))
                                       for t in eval_splits(specs) if t.local]
        jobs += [("train", s) for s in stage.plan()]
        planned = time.perf_counter()
        futures = client.map(_dask_shard, jobs, specs=specs, seeds=seeds,
                             rows_per_shard=rows_per_shard, pure=False)
        counts = client.gather(futures)
        seconds = time.perf_counter() - start
    records = sum(c[0] for c in counts)
    return {"records": records, "rejects": sum(c[1] for c in counts), "shards": len(jobs),
            "seconds": seconds, "plan_seconds": planned - start,
            "records_per_s": records / seconds}


def _pandas_rows(split: SplitSpec, seeds: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each file of a split as a list of row dicts, read with pandas."""
    out = []
    for path, labels in expand_files(split, seeds):
        if split.reader == "blocks":
            rows = [r for r in iter_blocks(path, split.block_lines)]
        elif path.suffix == ".jsonl":
            rows = pd.read_json(path, lines=True, dtype=False).to_dict("records")
        elif path.suffix == ".json":
            rows = pd.read_json(path, dtype=False).to_dict("records")
        else:
            rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        if labels is not None:
            values = iter_labels(labels)
            rows = [{**r, split.label_field: v} for r, v in zip(rows, values, strict=False)]
        out.append((str(path), rows))
    return out


def _splits(specs: dict[str, TaskSpec]) -> list[tuple[TaskSpec, SplitSpec, bool]]:
    """(spec, split, held out) for every training split and every local held-out split."""
    pairs = [(s, s.train, False) for _, s in sorted(specs.items()) if s.train is not None]
    targets: list[EvalSplit] = [t for t in eval_splits(specs) if t.local]
    return pairs + [(t.spec, t.split_spec, True) for t in targets]


def run_pandas(specs: dict[str, TaskSpec], seeds: Path) -> dict[str, Any]:
    start = time.perf_counter()
    records = rejects = 0
    for spec, split, held_out in _splits(specs):
        for path, rows in _pandas_rows(split, seeds):
            for index, row in apply_mapping_rows(rows, split.mapping):
                if isinstance(row, RowError):
                    rejects += 1
                    continue
                source = Source(spec.source.dataset, spec.source.config, split.split, index, path)
                raw = RawRow(spec.name, source, json.dumps(row, ensure_ascii=False, default=str))
                try:
                    normalize_row(raw, spec, split.mapping, held_out=held_out)
                except RowError:
                    rejects += 1
                    continue
                records += 1
    seconds = time.perf_counter() - start
    return {"records": records, "rejects": rejects, "seconds": seconds,
            "records_per_s": records / seconds}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput."""
    return sorted(runs, key=lambda r: r["records_per_s"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=REPO.parent / "shared" / "seeds")
    parser.add_argument("--tasks", type=Path, default=REPO / "configs" / "tasks")
    parser.add_argument("--rows-per-shard", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs; medians count")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    specs = load_task_specs(sorted(args.tasks.glob("*.yaml")))
    pandas_runs, dask_runs = [], []
    for _ in range(args.repeat):
        pandas_runs.append(run_pandas(specs, args.seeds))
        dask_runs.append(run_dask(specs, args.seeds, args.rows_per_shard))
    pandas_result = _median(pandas_runs)
    dask_result = _median(dask_runs)
    result = {
        "repeats": args.repeat,
        "dask_local_cluster_2x1": dask_result,
        "pandas_single_process": pandas_result,
        "dask_over_pandas": dask_result["records_per_s"] / pandas_result["records_per_s"],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(f"dask (2 workers x 1 thread): {dask_result['records']} records in "
          f"{dask_result['seconds']:.2f} s = {dask_result['records_per_s']:,.0f} records/s "
          f"({dask_result['shards']} shards, plan {dask_result['plan_seconds']:.2f} s)")
    print(f"pandas (1 process):          {pandas_result['records']} records in "
          f"{pandas_result['seconds']:.2f} s = {pandas_result['records_per_s']:,.0f} records/s")
    print(f"ratio dask/pandas: {result['dask_over_pandas']:.2f}x")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
