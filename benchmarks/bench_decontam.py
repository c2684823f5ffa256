"""Decontamination throughput: our NumPy n-gram index vs a plain Python set of n-gram tuples.

Both check the same generated-like records (the normalized training records of every task
in ../shared/seeds, repeated to fill the largest size) against every held-out split there:
(a) ours: `NgramIndex.match` over batches of `--batch` records, and the same through
    `DecontaminateStage.judge` on `Record`s (texts, verdicts and counters included);
(b) baseline: `re.findall` words, one set of n-gram tuples (and one of whole short items),
    one `in` test per n-gram of each record; the same keys as (a), so both flag the same
    records (the `agree` column).
Rates are given by wall clock and by this process's CPU time (the CPU figure is the one
to trust on a shared machine). Index build time, size on disk and load time are printed.
Sizes grow 10x per step to show how cost grows with input size. Run in one process.

Usage: python benchmarks/bench_decontam.py [--seeds ../shared/seeds] [--ngram 13]
       [--sizes 10000 100000 1000000] [--batch 5000] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from taskseed.curation.decontam.ngram_index import NgramIndex
from taskseed.curation.decontam.stage import (
    DecontaminateStage,
    DecontamParams,
    collect_eval,
    record_texts,
)
from taskseed.curation.errors import RowError
from taskseed.curation.record import RawRow, Record, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs

REPO = Path(__file__).resolve().parents[1]
WORD = re.compile(r"\w+")


def training_records(specs: dict[str, TaskSpec], seeds: Path) -> list[Record]:
    """The normalized training records of every task (rows that fail normalization left out)."""
    out = []
    for name, spec in sorted(specs.items()):
        if spec.train is None:
            continue
        for path, index, row in iter_split(spec.train, seeds):
            if isinstance(row, RowError):
                continue
            raw = RawRow(name, Source(spec.source.dataset, spec.source.config,
                                      spec.train.split, index, path), json.dumps(row))
            try:
                out.append(normalize_row(raw, spec, spec.train.mapping))
            except RowError:
                continue
    return out


class SetBaseline:
    """The plain Python decontaminator: sets of word tuples, with the same keys as ours
    (n-grams inside the head or the tail; items with neither that long kept whole)."""

    def __init__(self, texts: list[tuple[str, str]], n: int) -> None:
        self.n, self.grams, self.whole = n, set(), set()
        for head, tail in texts:
            first, second = self.words(head), self.words(tail)
            if len(first) < n and len(second) < n:
                self.whole.update({tuple(first + second), tuple(first)})
            for words in (first, second):
                self.grams.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))

    @staticmethod
    def words(text: str) -> list[str]:
        return WORD.findall(text.lower())

    def contaminated(self, head: str, tail: str) -> bool:
        n, first, second = self.n, self.words(head), self.words(tail)
        if len(first) < n and len(second) < n and (
            tuple(first + second) in self.whole or tuple(first) in self.whole
        ):
            return True
        return any(tuple(words[i:i + n]) in self.grams
                   for words in (first, second) for i in range(len(words) - n + 1))


def check_ours(index: NgramIndex, texts: list[tuple[str, str]], batch: int) -> list[bool]:
    return [len(m) > 0 for lo in range(0, len(texts), batch)
            for m in index.match(texts[lo:lo + batch])]


def check_stage(stage: DecontaminateStage, records: list[Record], batch: int) -> int:
    counters: Counter[str] = Counter()
    return sum(not v.keep for lo in range(0, len(records), batch)
               for v in stage.judge(records[lo:lo + batch], 0, counters))


def check_baseline(baseline: SetBaseline, texts: list[tuple[str, str]]) -> list[bool]:
    return [baseline.contaminated(head, tail) for head, tail in texts]


def timed(fn: Any) -> tuple[Any, float, float]:
    """fn's result, wall seconds and this process's CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def rates(size: int, wall: float, cpu: float) -> dict[str, float]:
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "rps_wall": round(size / wall), "rps_cpu": round(size / cpu)}


def run(seeds: Path, ngram: int, sizes: list[int], batch: int, tmp: Path) -> dict[str, Any]:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    specs = load_task_specs(sorted((REPO / "configs" / "tasks").glob("*.yaml")))
    corpus, read_s, _ = timed(lambda: collect_eval(specs, seeds))
    _, build_s, build_cpu = timed(lambda: NgramIndex.build(corpus.items, corpus.texts, ngram))
    stage = DecontaminateStage(DecontamParams(ngram=ngram), specs, seeds, tmp)
    _, first_use_s, _ = timed(stage.check_ready)
    npz, table = stage.index_paths()
    index, load_s, _ = timed(lambda: NgramIndex.load(npz, table))
    baseline, base_build_s, base_build_cpu = timed(lambda: SetBaseline(corpus.texts, ngram))
    pool = training_records(specs, seeds)
    random.Random(0).shuffle(pool)  # every size gets the same mix of tasks
    rows = []
    for size in sizes:
        records = [pool[i % len(pool)] for i in range(size)]
        texts = [record_texts(r) for r in records]
        index.match(texts[:batch])  # warm the bit filters
        check_stage(stage, records[:batch], batch)
        found, *ours = timed(partial(check_ours, index, texts, batch))
        dropped, *staged = timed(partial(check_stage, stage, records, batch))
        flags, *base = timed(partial(check_baseline, baseline, texts))
        agree = sum(a == b for a, b in zip(found, flags, strict=True))
        rows.append({"records": size, "ours": rates(size, *ours),
                     "stage": rates(size, *staged), "baseline": rates(size, *base),
                     "ratio_wall": round(base[0] / ours[0], 2),
                     "ratio_cpu": round(base[1] / ours[1], 2),
                     "flagged": sum(found), "stage_dropped": dropped,
                     "agreement": round(agree / size, 5)})
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "ngram": ngram, "eval_items": len(corpus.items), "eval_read_s": round(read_s, 2),
        "splits_indexed": len(corpus.indexed), "splits_not_indexed": len(corpus.not_indexed),
        "index": {"build_s": round(build_s, 2), "build_cpu_s": round(build_cpu, 2),
                  "first_use_s": round(first_use_s, 2), "load_s": round(load_s, 2),
                  "size_mb": round((npz.stat().st_size + table.stat().st_size) / 1e6, 1),
                  "keys": int(len(index.keys)), "postings": int(len(index.posting_offsets) - 1),
                  "vocab": int(len(index.vocab))},
        "baseline_build_s": round(base_build_s, 2),
        "baseline_build_cpu_s": round(base_build_cpu, 2),
        "baseline_ngrams": len(baseline.grams), "training_pool": len(pool), "sizes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=REPO.parent / "shared" / "seeds")
    parser.add_argument("--ngram", type=int, default=13)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.seeds, args.ngram, args.sizes, args.batch, Path(tmp))
    ix = report["index"]
    print(f"eval items {report['eval_items']} from {report['splits_indexed']} splits "
          f"({report['splits_not_indexed']} not indexed), read in {report['eval_read_s']} s; "
          f"load average {report['machine']['load_average'][0]:.1f} on "
          f"{report['machine']['cpus']} cpus")
    print(f"index build {ix['build_s']} s (cpu {ix['build_cpu_s']} s; set baseline "
          f"{report['baseline_build_s']} s), first use in a run (read + build + save) "
          f"{ix['first_use_s']} s, {ix['size_mb']} MB on disk, {ix['keys']} keys, "
          f"load {ix['load_s']} s")
    print("records/s by wall clock (and by this process's CPU time):")
    print(f"{'records':>9} {'ours':>17} {'stage':>17} {'baseline':>15} {'ratio':>12} "
          f"{'flagged':>8} {'agree':>6}")
    for row in report["sizes"]:
        ours, stage, base = row["ours"], row["stage"], row["baseline"]
        print(f"{row['records']:>9} {ours['rps_wall']:>8} ({ours['rps_cpu']:>6}) "
              f"{stage['rps_wall']:>8} ({stage['rps_cpu']:>6}) "
              f"{base['rps_wall']:>7} ({base['rps_cpu']:>5}) "
              f"{row['ratio_wall']:>5} ({row['ratio_cpu']:>4}) {row['flagged']:>8} "
              f"{row['agreement']:>6}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
