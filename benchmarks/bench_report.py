"""How the run report's cost grows with a run's size.

The sample run of the tests (`tests/sample_run.py`: real seed rows, every stage the report
draws, a loopback teacher) is replicated F times into a synthetic run directory (ids
suffixed, tasks spread over 60 names, 50,000 rows per shard). Timed on it:

- ours: `load_report_data` (columns read with pyarrow) and the whole `write_report`;
- baseline: reading every stage's shards as typed records (`StageDir.read_shard`), only to
  count records per task, the least any report does.

    python benchmarks/bench_report.py --factors 1000 5000 20000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from taskseed.curation.record import RawRow, Record  # noqa: E402

from taskseed.rundir.layout import StageDir  # noqa: E402
from taskseed.views.report.data import load_report_data  # noqa: E402
from taskseed.views.report.render import write_report  # noqa: E402

ROWS_PER_SHARD = 50_000
TASK_NAMES = 60


def _suffix(values: pa.ChunkedArray | pa.Array, text: str) -> pa.Array:
    return pc.binary_join_element_wise(values, pa.scalar(text), "")


def replicate(table: pa.Table, factor: int) -> pa.Table:
    """`factor` copies of a shard table with distinct ids, tasks and lineage ids."""
    parts = []
    for j in range(factor):
        t = table
        if "id" in t.column_names:
            t = t.set_column(t.column_names.index("id"), "id", _suffix(t["id"], f"-{j}"))
        if "task" in t.column_names:
            t = t.set_column(t.column_names.index("task"), "task",
                             _suffix(t["task"], f"_{j % TASK_NAMES}"))
        if "lineage" in t.column_names:
            lineage = t["lineage"].combine_chunks()
            ids = lineage.field("seed_ids")
            new_ids = pa.ListArray.from_arrays(ids.offsets, _suffix(ids.flatten(), f"-{j}"))
            fields = [new_ids if lineage.type[i].name == "seed_ids" else lineage.field(i)
                      for i in range(lineage.type.num_fields)]
            t = t.set_column(t.column_names.index("lineage"), "lineage",
                             pa.StructArray.from_arrays(fields, fields=list(lineage.type)))
        parts.append(t)
    return pa.concat_tables(parts)


def build(source: Path, factor: int, target: Path) -> Path:
    """A run directory holding `factor` copies of every stage of `source`."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("config.yaml", "config.hash", "summary.json", "acceptance.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    for folder in sorted((source / "stages").iterdir()):
        src, out = StageDir(folder), StageDir(target / "stages" / folder.name)
        (out.path / "rejects").mkdir(parents=True)
        for extra in ("decontamination.json", "manifest.json", "stage.json"):
            if (folder / extra).exists():
                shutil.copy(folder / extra, out.path / extra)
        shards = src.done_shards()
        items = replicate(pa.concat_tables(
            [pq.read_table(src.shard_path(s)) for s in shards], promote_options="default"),
            factor)
        rejects = replicate(pa.concat_tables(
            [pq.read_table(src.rejects_path(s)) for s in shards], promote_options="default"),
            factor)
        markers = [src.read_marker(s) for s in shards]
        count = max(1, -(-items.num_rows // ROWS_PER_SHARD))
        per_reject = -(-rejects.num_rows // count)
        for s in range(count):
            kept = items.slice(s * ROWS_PER_SHARD, ROWS_PER_SHARD)
            dropped = rejects.slice(s * per_reject, per_reject)
            pq.write_table(kept, out.shard_path(s))
            pq.write_table(dropped, out.rejects_path(s))
            counters: Counter[str] = Counter()
            for marker in markers:
                for key, value in marker["counters"].items():
                    counters[key] += value * factor // count
            out.done_path(s).write_text(json.dumps({
                "inputs": kept.num_rows + dropped.num_rows, "outputs": kept.num_rows,
                "rejects": dict(Counter(dropped["reason"].to_pylist())),
                "counters": dict(counters), "seconds": 1.0}))
    return target


def baseline(run: Path) -> Counter[str]:
    """Every stage read as typed records, to count records per task."""
    counts: Counter[str] = Counter()
    for folder in sorted((run / "stages").iterdir()):
        stage = StageDir(folder)
        kind = RawRow if folder.name.endswith("-seeds") else Record
        for shard in stage.done_shards():
            counts.update(item.task for item in stage.read_shard(shard, kind))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[1000, 5000, 20000])
    args = parser.parse_args()
    from sample_run import build_sample_run

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        source = build_sample_run(Path(tmp) / "sample")
        final = sorted((source / "stages").iterdir())[-1].name
        print(f"{'final records':>14} {'load s':>8} {'report s':>9} {'baseline s':>11} "
              f"{'baseline/load':>14}")
        for factor in args.factors:
            run = build(source, factor, Path(tmp) / f"run-{factor}")
            records = sum(pq.read_metadata(p).num_rows
                          for p in (run / "stages" / final).glob("part-*.parquet"))
            start = time.perf_counter()
            load_report_data(run, 3)
            load = time.perf_counter() - start
            start = time.perf_counter()
            write_report(run, samples=3)
            report = time.perf_counter() - start
            start = time.perf_counter()
            baseline(run)
            base = time.perf_counter() - start
            print(f"{records:>14,} {load:>8.2f} {report:>9.2f} {base:>11.2f} "
                  f"{base / load:>13.1f}x", flush=True)
            shutil.rmtree(run)


if __name__ == "__main__":
    main()
