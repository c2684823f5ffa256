"""MinHash signatures/s: ours (NumPy, libcudf's values) vs `datasketch.MinHash`.

Both sides get the same real record texts (the fuzzy-dedup text of every training and
held-out record in ../shared/seeds), the same shingling (character 5-grams of the
normalized text) and the same number of permutations, one CPU thread each. datasketch is
run the two ways its docs show: `MinHash.bulk` (its batch API) and one `update` per
shingle; the per-shingle way runs on the smallest size only unless `--full`.

It also checks that both estimate Jaccard equally well on (text, one-word-changed text)
pairs, against the true Jaccard of the n-gram sets.

Usage: python benchmarks/bench_minhash.py [--sizes 10000 50000 100000] [--num-perm 128]
       [--full] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from glob import glob
from pathlib import Path
from typing import Any

import datasketch
import numpy as np
from taskseed.curation.decontam.eval_sets import iter_eval_records
from taskseed.curation.dedup.fuzzy import record_text
from taskseed.curation.dedup.minhash import MinHashSpec, cpu_signatures, jaccard, ngram_set
from taskseed.curation.io.arrow import to_table
from taskseed.curation.record import Record
from taskseed.curation.seeds.taskspec import load_task_specs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted import SEEDS, load_records  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def seed_records(seeds_root: Path = SEEDS) -> list[Record]:
    """Every training and held-out record of the local seeds, once each, in a fixed order."""
    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    found: dict[str, Record] = {}
    for records in load_records(seeds_root, max_per_task=10**9).values():
        for record in records:
            found.setdefault(record.id, record)
    for record in iter_eval_records(specs, seeds_root):
        found.setdefault(record.id, record)
    return list(found.values())


def seed_texts(count: int, seeds_root: Path = SEEDS) -> list[str]:
    """`count` fuzzy-dedup texts of real records in a fixed shuffled order (every size has
    the same mix of tasks; repeated when the seeds have fewer)."""
    records = seed_records(seeds_root)
    texts = record_text(to_table(records, Record).to_pandas()).tolist()
    texts = [t for t in texts if t]
    random.Random(0).shuffle(texts)
    return [texts[i % len(texts)] for i in range(count)]


def _ours(texts: list[str], spec: MinHashSpec) -> float:
    start = time.perf_counter()
    cpu_signatures(texts, spec)
    return time.perf_counter() - start


def _datasketch_bulk(texts: list[str], num_perm: int, ngram: int) -> float:
    start = time.perf_counter()
    datasketch.MinHash.bulk([[g.encode() for g in ngram_set(t, ngram)] for t in texts],
                            num_perm=num_perm)
    return time.perf_counter() - start


def _datasketch_update(texts: list[str], num_perm: int, ngram: int) -> float:
    start = time.perf_counter()
    for text in texts:
        sketch = datasketch.MinHash(num_perm=num_perm)
        for gram in ngram_set(text, ngram):
            sketch.update(gram.encode())
    return time.perf_counter() - start


def accuracy(texts: list[str], num_perm: int, ngram: int, pairs: int = 2000) -> dict[str, Any]:
    """RMSE of the Jaccard estimate vs the true n-gram Jaccard, ours and datasketch's."""
    rng = random.Random(0)
    left, right = [], []
    for text in rng.sample(texts, pairs):
        words = text.split(" ")
        for _ in range(rng.randint(1, 4)):
            words[rng.randrange(len(words))] = rng.choice(["table", "river", "seven", "blue"])
        left.append(text)
        right.append(" ".join(words))
    true = np.array([jaccard(ngram_set(a, ngram), ngram_set(b, ngram))
                     for a, b in zip(left, right, strict=True)])
    out: dict[str, Any] = {"pairs": pairs, "mean_true_jaccard": round(float(true.mean()), 4)}
    for bits in (32, 64):
        spec = MinHashSpec(num_perm=num_perm, ngram=ngram, bits=bits)
        est = (cpu_signatures(left, spec) == cpu_signatures(right, spec)).mean(axis=1)
        out[f"ours_{bits}_rmse"] = round(float(np.sqrt(((est - true) ** 2).mean())), 4)
    sketches_a = datasketch.MinHash.bulk([[g.encode() for g in ngram_set(t, ngram)]
                                          for t in left], num_perm=num_perm)
    sketches_b = datasketch.MinHash.bulk([[g.encode() for g in ngram_set(t, ngram)]
                                          for t in right], num_perm=num_perm)
    est = np.array([a.jaccard(b) for a, b in zip(sketches_a, sketches_b, strict=True)])
    out["datasketch_rmse"] = round(float(np.sqrt(((est - true) ** 2).mean())), 4)
    out["binomial_rmse"] = round(float(np.sqrt((true * (1 - true) / num_perm).mean())), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="per-shingle update at every size")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    texts = seed_texts(max(args.sizes))
    chars = np.mean([len(t) for t in texts])
    print(f"{len(texts)} real record texts, mean {chars:.0f} characters; num_perm "
          f"{args.num_perm}, character {args.ngram}-grams; {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    spec32 = MinHashSpec(num_perm=args.num_perm, ngram=args.ngram, bits=32)
    spec64 = MinHashSpec(num_perm=args.num_perm, ngram=args.ngram, bits=64)
    _ours(texts[:2000], spec32)  # warm-up (page faults, imports)
    rows = []
    header = (f"{'rows':>8} {'ours32 r/s':>11} {'ours64 r/s':>11} {'ds.bulk r/s':>12} "
              f"{'ds.update r/s':>14} {'x bulk':>7} {'x update':>9}")
    print(header)
    for size in args.sizes:
        sample = texts[:size]
        t32, t64 = _ours(sample, spec32), _ours(sample, spec64)
        bulk = _datasketch_bulk(sample, args.num_perm, args.ngram)
        per = None
        if args.full or size == min(args.sizes):
            per = _datasketch_update(sample, args.num_perm, args.ngram)
        row = {"rows": size, "ours32_s": round(t32, 3), "ours64_s": round(t64, 3),
               "datasketch_bulk_s": round(bulk, 3),
               "datasketch_update_s": None if per is None else round(per, 3),
               "x_vs_bulk": round(bulk / t32, 1),
               "x_vs_update": None if per is None else round(per / t32, 1)}
        rows.append(row)
        update_rate = "-" if per is None else f"{size / per:,.0f}"
        update_x = "-" if per is None else f"{per / t32:.1f}x"
        print(f"{size:>8} {size / t32:>11,.0f} {size / t64:>11,.0f} {size / bulk:>12,.0f} "
              f"{update_rate:>14} {bulk / t32:>6.1f}x {update_x:>9}")
    first, last = rows[0], rows[-1]
    scale = last["rows"] / first["rows"]
    print(f"growth {first['rows']} -> {last['rows']} rows (x{scale:.0f}): ours32 time "
          f"x{last['ours32_s'] / first['ours32_s']:.1f}, datasketch bulk time "
          f"x{last['datasketch_bulk_s'] / first['datasketch_bulk_s']:.1f}")
    quality = accuracy(texts, args.num_perm, args.ngram)
    print("estimate RMSE vs true Jaccard:", quality)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "accuracy": quality}, indent=1))


if __name__ == "__main__":
    main()
