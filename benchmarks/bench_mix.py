"""Mix throughput: the `mix` stage on a LocalCluster vs a plain single-process loop.

Input: real normalized records of every task with local seed files (../shared/seeds), all
treated as generated and repeated under new ids to reach each size, committed as 8 input
shards. Both sides start from those Parquet shards and count tokens with the default
estimate (4 characters per token).

(a) stage: `FrameRun.execute` (copies, budgets, output shards by id) then `finalize`
    (global shuffle, rendering, token counts, JSONL + Parquet files, manifest) on a
    `LocalCluster(n_workers=2, threads_per_worker=1)`; weights on two tasks, a budget on
    one family, shards of 10,000 records, commercial subset on.
(b) plain loop (baseline): one process reads the shards, renders each record under its
    hash-chosen template, counts its tokens and appends it to its dataset's JSONL file;
    no weights, budgets, shuffle, shards, Parquet or manifest.

`--chars-per-token` instead measures characters per token of the embedded model's vocabulary
(SmolLM2) on every template of the real records, per format: the basis of the estimate.

Usage: python benchmarks/bench_mix.py [--sizes 2000 8000 32000] [--chars-per-token]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shutil
import tempfile
import time
from glob import glob
from pathlib import Path
from typing import Any

import orjson
import xxhash
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.mix.plan import MIX_OF
from taskseed.curation.mix.stage import MixParams, MixStage
from taskseed.curation.mix.templates import TEMPLATES, render
from taskseed.curation.record import Origin, Record
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_specs
from taskseed.curation.stage import StageResult

from taskseed.execution.engine import FrameRun
from taskseed.execution.shard import commit
from taskseed.rundir.layout import StageDir

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
INPUT_SHARDS = 8


def real_records(seeds: Path, per_task: int = 400) -> list[Record]:
    """Normalized records of every task with local files (an eval split stands in for a
    missing training split), as generated ones."""
    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    local = {}
    for name, spec in specs.items():
        split = spec.train or (spec.eval[0] if spec.eval else None)
        if split is not None and split.files:
            local[name] = spec if spec.train else spec.model_copy(update={"train": split})
    stage = SeedStage(SeedParams(rows_per_shard=5000, max_per_task=per_task), local, seeds)
    normalize = NormalizeStage(None, local)
    out = []
    for shard in stage.plan():
        out.extend(normalize.process(stage.read(shard).items, 0).items)
    return [dataclasses.replace(r, origin=Origin.GENERATED) for r in out]


def sized(records: list[Record], size: int) -> list[Record]:
    """`size` records: the real ones, repeated under new ids."""
    return [dataclasses.replace(records[i % len(records)],
                                id=f"{records[i % len(records)].id}-{i // len(records)}")
            for i in range(size)]


def baseline(files: list[Path], out: Path) -> int:
    """Read, render, count, write JSONL: one process, one pass."""
    names = list(TEMPLATES)
    handles: dict[str, Any] = {}
    written = 0
    for path in files:
        for record in read_parquet(path, Record):
            data = record.to_dict()
            name = names[xxhash.xxh64_intdigest(f"0:template:{record.id}".encode())
                         % len(names)]
            text = render(name, data)
            dataset = MIX_OF[record.format.value]
            if dataset not in handles:
                handles[dataset] = (out / f"{dataset}.jsonl").open("wb")
            row = {"text": text, "id": record.id, "dataset": dataset, "task": record.task,
                   "template": name, "tokens": math.ceil(len(text) / 4.0),
                   "source": data["source"], "lineage": data["lineage"]}
            handles[dataset].write(orjson.dumps(row) + b"\n")
            written += 1
    for handle in handles.values():
        handle.close()
    return written


def stage_run(src: StageDir, out: Path) -> int:
    params = MixParams(shards=INPUT_SHARDS, weights={"tasks": {"gsm8k": 2, "boolq": 0.5}},
                       token_budgets={"families": {"arc": 200_000}}, shard_records=10_000,
                       commercial_subset=True)
    stage = MixStage(params)
    run = FrameRun(2, stage, StageDir(out), src, stage.shard_count())
    run.execute(0)
    run.finalize()
    return sum(run.out.read_marker(s).outputs for s in run.out.done_shards())


def chars_per_token(records: list[Record]) -> None:
    from collections import Counter

    from taskseed.curation.mix.tokens import EmbeddedTokenizer, load_counter

    rows = [(r.format.value, render(name, r.to_dict())) for r in records for name in TEMPLATES]
    counts = load_counter(EmbeddedTokenizer()).count([text for _, text in rows])
    chars, tokens = Counter(), Counter()
    for (fmt, text), n in zip(rows, counts, strict=True):
        chars[fmt] += len(text)
        tokens[fmt] += n
    for fmt in sorted(chars):
        print(f"{fmt:>16} {chars[fmt] / tokens[fmt]:.2f} chars/token")
    print(f"{'all':>16} {sum(chars.values()) / sum(tokens.values()):.2f} chars/token "
          f"over {len(rows)} texts")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--seeds", type=Path, default=SEEDS)
    parser.add_argument("--chars-per-token", action="store_true")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    real = real_records(args.seeds)
    if args.chars_per_token:
        chars_per_token(real)
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{len(real)} real records repeated to each size")
    print(f"{'records':>8} {'stage s':>8} {'stage rec/s':>12} {'loop s':>8} "
          f"{'loop rec/s':>11} {'stage/loop':>10} {'written':>8}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        for size in args.sizes:
            root = Path(tempfile.mkdtemp(prefix="bench-mix-"))
            try:
                records = sized(real, size)
                src = StageDir(root / "in")
                for i in range(INPUT_SHARDS):
                    commit(src, i, StageResult(items=records[i::INPUT_SHARDS]), Record, 0, 0)
                files = [src.shard_path(i) for i in range(INPUT_SHARDS)]
                start = time.perf_counter()
                written = stage_run(src, root / "mix")
                stage_s = time.perf_counter() - start
                (root / "loop").mkdir()
                start = time.perf_counter()
                baseline(files, root / "loop")
                loop_s = time.perf_counter() - start
                print(f"{size:>8} {stage_s:>8.2f} {size / stage_s:>12,.0f} {loop_s:>8.2f} "
                      f"{size / loop_s:>11,.0f} {loop_s / stage_s:>10.2f} {written:>8}")
            finally:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
