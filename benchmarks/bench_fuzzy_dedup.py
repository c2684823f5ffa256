"""End-to-end fuzzy dedup: records/s of `FuzzyDedupStage` on a LocalCluster, with
baselines run on the same records in the same run.

Input: real training and held-out records of ../shared/seeds (generated origin), plus 5%
planted near-duplicates (one word changed, upper case, or two options swapped). Sizes
repeat the seed records when they have fewer. For each size:

- `fuzzy_dedup` (default parameters) on a LocalCluster (one worker with 2 threads, or
  with `--processes` two single-thread worker processes), input in 8 Parquet shards read
  as the engine reads them, 4 output shards; time to all output partitions;
- baseline: datasketch (`MinHash.bulk` + `MinHashLSH` with the same 20 bands x 4 rows,
  insert and query, union-find), one process;
- `exact_dedup` on the same cluster, as the floor of the Dask work (shuffle and write).

`--sweep` prints instead the measurement behind the defaults: on real records of every
task, the recall of planted one-word-changed and reordered-option copies and the share of
distinct records with a neighbour at or above the threshold, for n-gram widths and
thresholds.

Usage: python benchmarks/bench_fuzzy_dedup.py [--sizes 10000 50000 100000] [--processes]
       [--sweep] [--out f.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
from taskseed.curation.dedup.exact import ExactDedupParams, ExactDedupStage
from taskseed.curation.dedup.fuzzy import FuzzyDedupParams, FuzzyDedupStage, record_text
from taskseed.curation.dedup.minhash import ngram_set
from taskseed.curation.io.arrow import to_table, write_parquet
from taskseed.curation.io.frames import read_records
from taskseed.curation.record import Origin, Record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_minhash import seed_records  # noqa: E402

WORDS = ("table", "river", "seven", "blue", "garden")


def changed_word(record: Record, rng: random.Random) -> Record:
    words = record.question.split()
    words[len(words) // 2] = rng.choice(WORDS)
    return dataclasses.replace(record, question=" ".join(words), id="")


def swapped_options(record: Record) -> Record:
    choices = list(record.choices)
    choices[0], choices[-1] = choices[-1], choices[0]
    return dataclasses.replace(record, choices=choices, id="")


def planted_copy(record: Record, rng: random.Random) -> Record:
    """A near-duplicate: a changed word, upper case, or two options swapped."""
    kind = rng.choice(["word", "case", "options"] if len(record.choices) > 1 else
                      ["word", "case"])
    if kind == "word":
        return changed_word(record, rng)
    if kind == "case":
        return dataclasses.replace(record, question=record.question.upper(), id="")
    return swapped_options(record)


def make_input(pool: list[Record], size: int,
               rng: random.Random) -> tuple[list[Record], list[tuple[str, str]]]:
    """`size` records: distinct pool records (repeated with a marker when needed) and 5%
    planted near-duplicates of them; also the (original id, copy id) pairs."""
    base = []
    for i in range(size - size // 20):
        record = pool[i % len(pool)]
        if i >= len(pool):  # a repeated pool record gets its own content
            record = dataclasses.replace(record, question=f"{record.question} (v{i})", id="")
        base.append(dataclasses.replace(record, origin=Origin.GENERATED))
    originals = [base[rng.randrange(len(base))] for _ in range(size // 20)]
    copies = [planted_copy(record, rng) for record in originals]
    return base + copies, [(o.id, c.id) for o, c in zip(originals, copies, strict=True)]


def input_frame(records: list[Record], folder: Path, partitions: int) -> Any:
    """The records as Parquet shards read back the way the engine reads a stage's input."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"part-{i:05d}.parquet" for i in range(partitions)]
    for i, path in enumerate(files):
        write_parquet(path, records[i::partitions], Record)
    return read_records(files)


def run_stage(stage: Any, frame: Any, shards: int) -> tuple[float, set[str]]:
    start = time.perf_counter()
    parts = dask.compute(*stage.run(frame, shards).to_delayed())
    dropped = {i for p in parts for i in p["id"][p["_reason"].notna()]}
    return time.perf_counter() - start, dropped


def datasketch_baseline(frame: pd.DataFrame, params: FuzzyDedupParams) -> tuple[float, int]:
    """MinHash + MinHashLSH (same bands and rows) + union-find, in one process."""
    import datasketch

    start = time.perf_counter()
    texts = record_text(frame).tolist()
    keys = [f"{task}:{i}" for i, task in enumerate(frame["task"])]
    sketches = datasketch.MinHash.bulk(
        [[g.encode() for g in ngram_set(t, params.ngram)] for t in texts],
        num_perm=params.num_perm)
    lsh = datasketch.MinHashLSH(num_perm=params.num_perm, params=(params.bands, params.rows))
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    with lsh.insertion_session() as session:
        for key, sketch in zip(keys, sketches, strict=True):
            session.insert(key, sketch)
    index = {key: i for i, key in enumerate(keys)}
    for i, sketch in enumerate(sketches):
        for other in lsh.query(sketch):
            j = index[other]
            if j != i and keys[j].split(":")[0] == keys[i].split(":")[0]:
                parent[find(i)] = find(j)
    dropped = len(keys) - len({find(i) for i in range(len(keys))})
    return time.perf_counter() - start, dropped


def bench(sizes: list[int], workdir: Path, processes: bool) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster

    pool = seed_records()
    random.Random(0).shuffle(pool)
    params = FuzzyDedupParams(shards=4, against_seeds=False)
    rows = []
    print(f"{len(pool)} distinct seed records; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'records':>8} {'fuzzy s':>8} {'fuzzy r/s':>10} {'dropped':>8} {'planted found':>13} "
          f"{'ds s':>7} "
          f"{'ds r/s':>8} {'ds drop':>8} {'x ds':>6} {'exact s':>8}")
    workers = {"n_workers": 2, "threads_per_worker": 1} if processes else \
        {"n_workers": 1, "threads_per_worker": 2}
    with LocalCluster(processes=processes, dashboard_address=":0", **workers) as cluster, \
            Client(cluster):
        for size in sizes:
            records, planted = make_input(pool, size, random.Random(size))
            frame = input_frame(records, workdir / f"in-{size}", 8)
            data = to_table(records, Record).to_pandas()
            fuzzy_s, fuzzy_drop = run_stage(FuzzyDedupStage(params), frame, 4)
            exact_s, _ = run_stage(ExactDedupStage(ExactDedupParams(shards=4)), frame, 4)
            ds_s, ds_drop = datasketch_baseline(data, params)
            found = sum(a in fuzzy_drop or b in fuzzy_drop for a, b in planted)
            row = {"records": size, "fuzzy_s": round(fuzzy_s, 2),
                   "fuzzy_dropped": len(fuzzy_drop), "planted": len(planted),
                   "planted_found": found,
                   "datasketch_s": round(ds_s, 2), "datasketch_merged": ds_drop,
                   "exact_s": round(exact_s, 2), "x_vs_datasketch": round(ds_s / fuzzy_s, 1)}
            rows.append(row)
            print(f"{size:>8} {fuzzy_s:>8.1f} {size / fuzzy_s:>10,.0f} {len(fuzzy_drop):>8} "
                  f"{found:>6}/{len(planted):<6} "
                  f"{ds_s:>7.1f} {size / ds_s:>8,.0f} {ds_drop:>8} {ds_s / fuzzy_s:>5.1f}x "
                  f"{exact_s:>8.1f}")
    first, last = rows[0], rows[-1]
    print(f"growth {first['records']} -> {last['records']} records "
          f"(x{last['records'] / first['records']:.0f}): fuzzy time "
          f"x{last['fuzzy_s'] / first['fuzzy_s']:.1f}, datasketch time "
          f"x{last['datasketch_s'] / first['datasketch_s']:.1f}")
    return rows


# --- the measurement behind the defaults ------------------------------------------------


def _sparse(texts: list[str], n: int) -> tuple[Any, np.ndarray]:
    from scipy.sparse import csr_matrix

    keys: dict[str, int] = {}
    rows, cols = [], []
    for i, text in enumerate(texts):
        for gram in ngram_set(text, n):
            rows.append(i)
            cols.append(keys.setdefault(gram, len(keys)))
    matrix = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                        shape=(len(texts), len(keys)))
    return matrix, np.asarray(matrix.sum(axis=1)).ravel()


def _both_jaccard(frame: pd.DataFrame, n: int, pick: list[int]) -> np.ndarray:
    """For each picked row, the highest min(whole-text, question-side) Jaccard with any
    other row of different text."""
    out = None
    for context in (True, False):
        texts = record_text(frame, context=context).tolist()
        matrix, sizes = _sparse(texts, n)
        inter = (matrix[pick] @ matrix.T).toarray()
        score = inter / np.maximum(sizes[pick][:, None] + sizes[None, :] - inter, 1)
        out = score if out is None else np.minimum(out, score)
    whole = np.array(record_text(frame).tolist())
    for k, i in enumerate(pick):
        out[k, whole == whole[i]] = -1
    return out.max(axis=1)


def sweep(ngrams: list[int], thresholds: list[float], per_task: int = 3000) -> None:
    rng = random.Random(0)
    by_task: dict[str, list[Record]] = {}
    for record in seed_records():
        if record.source.split == "train":
            by_task.setdefault(record.task, []).append(record)
    for task in by_task:
        by_task[task] = by_task[task][:per_task]
    pairs: dict[str, list[float]] = {}
    neighbours: dict[int, list[np.ndarray]] = {n: [] for n in ngrams}
    for records in by_task.values():
        frame = to_table(records, Record).to_pandas()
        pick = rng.sample(range(len(records)), min(300, len(records)))
        for n in ngrams:
            neighbours[n].append(_both_jaccard(frame, n, pick))
        for record in rng.sample(records, min(150, len(records))):
            for kind in ("word", "options"):
                if kind == "options" and len(record.choices) < 2:
                    continue
                copy = changed_word(record, rng) if kind == "word" else swapped_options(record)
                both = to_table([record, copy], Record).to_pandas()
                for n in ngrams:
                    score = min(
                        _pair(record_text(both, context=c).tolist(), n) for c in (True, False))
                    pairs.setdefault(f"{kind}:{n}", []).append(score)
    print(f"{'n':>3} {'t':>5} {'word recall':>12} {'options recall':>15} "
          f"{'distinct w/ neighbour':>22}")
    for n in ngrams:
        nearest = np.concatenate(neighbours[n])
        for t in thresholds:
            word = np.mean(np.array(pairs[f"word:{n}"]) >= t)
            options = np.mean(np.array(pairs[f"options:{n}"]) >= t)
            print(f"{n:>3} {t:>5.2f} {word:>12.3f} {options:>15.3f} "
                  f"{np.mean(nearest >= t):>22.4f}")


def _pair(texts: list[str], n: int) -> float:
    a, b = (ngram_set(t, n) for t in texts)
    return len(a & b) / max(1, len(a | b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--processes", action="store_true", help="two worker processes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.sweep:
        sweep([3, 4, 5, 6, 8], [0.6, 0.7, 0.75, 0.8, 0.9])
        return
    with tempfile.TemporaryDirectory() as workdir:
        rows = bench(args.sizes, Path(workdir), args.processes)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
