"""Planted contamination: held-out items copied verbatim or lightly edited, and how many
decontamination removes, with the n-gram index alone and with the near-copy index.

Items come from the held-out splits in ../shared/seeds (MMLU, ARC, GSM8K, SQuAD,
CommonsenseQA, OpenBookQA, BoolQ, PIQA); each is planted once per edit kind:

- `verbatim`; `case_punct`: lowercased, sentence punctuation dropped;
- `word_changed`: one question word replaced by a word of another item;
- `word_dropped_added`: one question word dropped, or one inserted;
- `options_shuffled`; `option_reworded`: one option with a word inserted;
- `options_replaced`: the question kept, the options those of another item.

A planted item keeps its passage (SQuAD, BoolQ), as a teacher that copies an item would.
False positives are the training records of every task in ../shared/seeds (none is in an
eval set) that a check drops. Rates are records per second of this process's CPU time.

    python benchmarks/bench_decontam_edits.py [--per-benchmark 300] [--json out.json]

`--semantic N` also runs the optional embedding pass (all-MiniLM-L6-v2, cosine >= 0.85) on
the planted items and on N training records drawn at random (its false positives). Its index
holds the held-out items of the planted benchmarks only (embedding every task's takes far
longer on a CPU); it is cached under ~/.cache/taskseed/bench-semantic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from glob import glob
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decontam import training_records  # noqa: E402
from taskseed.curation.decontam.eval_sets import eval_splits, read_eval_split  # noqa: E402
from taskseed.curation.decontam.near_index import NearIndex, near_text  # noqa: E402
from taskseed.curation.decontam.ngram_index import NgramIndex  # noqa: E402
from taskseed.curation.decontam.stage import collect_eval, record_texts  # noqa: E402
from taskseed.curation.record import Record  # noqa: E402
from taskseed.curation.seeds.taskspec import load_task_specs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
BENCHMARKS = ("mmlu", "arc_easy", "arc_challenge", "gsm8k", "squad", "commonsense_qa",
              "openbookqa", "boolq", "piqa")
WORD = re.compile(r"\w+")
Edit = Callable[[Record, Record, random.Random], Record | None]


def copy(record: Record, **changes: Any) -> Record:
    return dataclasses.replace(record, **{"choices": list(record.choices), **changes})


def verbatim(record: Record, other: Record, rng: random.Random) -> Record:
    return copy(record)


def case_punct(record: Record, other: Record, rng: random.Random) -> Record:
    return copy(record, question=re.sub(r"[?!.,;:]+", " ", record.question).lower())


def _pool_word(other: Record, rng: random.Random, avoid: set[str]) -> str:
    words = [w for w in WORD.findall(other.question) if len(w) > 3 and w.lower() not in avoid]
    return rng.choice(words) if words else "probably"


def word_changed(record: Record, other: Record, rng: random.Random) -> Record | None:
    words = record.question.split()
    spots = [i for i, w in enumerate(words) if len(WORD.sub("", w)) < len(w)]
    if not spots:
        return None
    i = rng.choice(spots)
    words[i] = _pool_word(other, rng, {w.lower() for w in WORD.findall(record.question)})
    return copy(record, question=" ".join(words))


def word_dropped_added(record: Record, other: Record, rng: random.Random) -> Record | None:
    words = record.question.split()
    if len(words) < 3:
        return None
    if rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    else:
        avoid = {w.lower() for w in WORD.findall(record.question)}
        words.insert(rng.randrange(len(words) + 1), _pool_word(other, rng, avoid))
    return copy(record, question=" ".join(words))


def options_shuffled(record: Record, other: Record, rng: random.Random) -> Record | None:
    if len(record.choices) < 2:
        return None
    choices = list(record.choices)
    while choices == record.choices:
        rng.shuffle(choices)
    return copy(record, choices=choices)


def option_reworded(record: Record, other: Record, rng: random.Random) -> Record | None:
    if len(record.choices) < 2:
        return None
    choices = list(record.choices)
    i = rng.randrange(len(choices))
    words = choices[i].split() or [""]
    words.insert(rng.randrange(len(words) + 1), _pool_word(other, rng, set()))
    choices[i] = " ".join(words)
    answer = choices[i] if record.choices[i] == record.answer else record.answer
    return copy(record, choices=choices, answer=answer)


def options_replaced(record: Record, other: Record, rng: random.Random) -> Record | None:
    if len(record.choices) < 2 or len(other.choices) < 2 or other.choices == record.choices:
        return None
    return copy(record, choices=list(other.choices), answer=other.answer)


EDITS: dict[str, Edit] = {
    "verbatim": verbatim, "case_punct": case_punct, "word_changed": word_changed,
    "word_dropped_added": word_dropped_added, "options_shuffled": options_shuffled,
    "option_reworded": option_reworded, "options_replaced": options_replaced,
}


def eval_records(per_benchmark: int, seed: int) -> dict[str, list[Record]]:
    """A sample of each benchmark's held-out records (every held-out split it has here)."""
    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    rng = random.Random(seed)
    out: dict[str, list[Record]] = {}
    for target in eval_splits(specs):
        if target.task not in BENCHMARKS or not target.local:
            continue
        out.setdefault(target.task, []).extend(read_eval_split(target, SEEDS).items)
    for task, records in out.items():
        rng.shuffle(records)
        out[task] = records[:per_benchmark]
    return out


def planted(samples: dict[str, list[Record]], seed: int) -> list[tuple[str, str, Record]]:
    rng = random.Random(seed)
    items = []
    for task, records in sorted(samples.items()):
        for i, record in enumerate(records):
            other = records[(i + 1) % len(records)]
            for kind, edit in EDITS.items():
                made = edit(record, other, rng)
                if made is not None:
                    items.append((task, kind, made))
    return items


class Checks:
    """The n-gram index alone, and with the near-copy index."""

    def __init__(self, ngram: int) -> None:
        specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
        started = time.process_time()
        corpus = collect_eval(specs, SEEDS, "skip")
        self.ngram = NgramIndex.build(corpus.items, corpus.texts, ngram)
        self.ngram_build = time.process_time() - started
        started = time.process_time()
        self.near = NearIndex.build(corpus.near_texts, corpus.choices)
        self.near_build = time.process_time() - started
        self.items = len(corpus.items)

    def flags(self, records: list[Record], batch: int = 20_000) -> dict[str, list[bool]]:
        by_ngram, by_near = [], []
        self.seconds = {"ngram": 0.0, "near": 0.0}
        for lo in range(0, len(records), batch):
            chunk = records[lo:lo + batch]
            started = time.process_time()
            by_ngram += [bool(len(f)) for f in self.ngram.match([record_texts(r) for r in chunk])]
            self.seconds["ngram"] += time.process_time() - started
            started = time.process_time()
            by_near += [bool(len(f)) for f in self.near.match(
                [near_text(r.question, r.context) for r in chunk], [r.choices for r in chunk])]
            self.seconds["near"] += time.process_time() - started
        return {"n-gram index": by_ngram,
                "n-gram + near-copy": [a or b for a, b in zip(by_ngram, by_near, strict=True)]}


def semantic_flags(samples: dict[str, list[Record]], records: list[Record],
                   threshold: float) -> tuple[list[bool], int, float]:
    """Which records the embedding pass flags, the items it indexed, and its CPU seconds."""
    from taskseed.curation.decontam.semantic import Embedder, SemanticIndex, item_text

    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    held_out = [r for t in eval_splits(specs) if t.task in samples and t.local
                for r in read_eval_split(t, SEEDS).items]
    started = time.process_time()
    embedder = Embedder()
    index = SemanticIndex.build(held_out, embedder,
                                Path.home() / ".cache" / "taskseed" / "bench-semantic")
    found = index.matches([item_text(r) for r in records], threshold)
    return [bool(f) for f in found], len(index), time.process_time() - started


def print_semantic(items: list[tuple[str, str, Record]], near: list[bool], sem: list[bool],
                   train_near: list[bool], train_sem: list[bool], indexed: int) -> None:
    kinds = list(EDITS)
    rows = {"n-gram + near-copy": near, "embedding, cosine >= 0.85": sem,
            "n-gram + near-copy or embedding": [a or b for a, b in zip(near, sem, strict=True)]}
    print(f"**Semantic pass** ({indexed} held-out items of the planted benchmarks indexed)\n")
    print("| check | " + " | ".join(kinds) + " | FP on training |")
    print("|---|" + "---:|" * (len(kinds) + 1))
    train_rows = [train_near, train_sem, [a or b for a, b in zip(train_near, train_sem,
                                                                strict=True)]]
    for (name, flagged), train in zip(rows.items(), train_rows, strict=True):
        cells = []
        for kind in kinds:
            hits = [f for (_, k, _), f in zip(items, flagged, strict=True) if k == kind]
            cells.append(f"{100 * sum(hits) / len(hits):.1f}%" if hits else "-")
        print(f"| {name} | " + " | ".join(cells) + f" | {100 * sum(train) / len(train):.2f}% |")
    missed = [(t, k, r) for (t, k, r), a, b in zip(items, near, sem, strict=True) if not a and b]
    print(f"\nCaught by the embedding pass only: {len(missed)}")
    for task, kind, record in missed[:8]:
        print(f"- {task} {kind}: {record.question[:90]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-benchmark", type=int, default=300)
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--semantic", type=int, default=0, metavar="N",
                    help="also run the embedding pass, with N training records for its FP")
    args = ap.parse_args()
    checks = Checks(args.ngram)
    samples = eval_records(args.per_benchmark, args.seed)
    items = planted(samples, args.seed)
    flags = checks.flags([record for _, _, record in items])
    removed: dict[str, dict[tuple[str, str], list[int]]] = {}
    for check, flagged in flags.items():
        table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for (task, kind, _), hit in zip(items, flagged, strict=True):
            for key in ((task, kind), ("all", kind)):
                table[key][0] += hit
                table[key][1] += 1
        removed[check] = dict(table)
    train = training_records(load_task_specs(
        [Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))]), SEEDS)
    false_flags = checks.flags(train)
    rates = {name: len(train) / max(s, 1e-9) for name, s in checks.seconds.items()}
    print(f"\n{checks.items} held-out items indexed; n-gram index built in "
          f"{checks.ngram_build:.1f} s, near-copy index in {checks.near_build:.1f} s CPU\n")
    kinds = list(EDITS)
    for check, table in removed.items():
        print(f"**{check}**: share of planted items removed\n")
        print("| benchmark | " + " | ".join(kinds) + " |")
        print("|---|" + "---:|" * len(kinds))
        for task in (*BENCHMARKS, "all"):
            cells = []
            for kind in kinds:
                hit, n = table.get((task, kind), (0, 0))
                cells.append(f"{100 * hit / n:.0f}% ({n})" if n else "-")
            if any(c != "-" for c in cells):
                print(f"| {task} | " + " | ".join(cells) + " |")
        print()
    fp = {check: sum(flagged) for check, flagged in false_flags.items()}
    print(f"False positives on {len(train)} training records: " + ", ".join(
        f"{check} {n} ({100 * n / len(train):.2f}%)" for check, n in fp.items()))
    print("Throughput on the training records (CPU): " + ", ".join(
        f"{name} {rate / 1000:.0f}k records/s" for name, rate in rates.items()))
    if args.semantic:
        sample = random.Random(args.seed).sample(range(len(train)), min(args.semantic,
                                                                        len(train)))
        chosen = [train[i] for i in sample]
        near_train = [false_flags["n-gram + near-copy"][i] for i in sample]
        sem, indexed, seconds = semantic_flags(samples, [r for _, _, r in items] + chosen,
                                               0.85)
        print_semantic(items, flags["n-gram + near-copy"], sem[:len(items)], near_train,
                       sem[len(items):], indexed)
        print(f"Embedding pass: {seconds:.0f} s CPU (index and queries)")
    if args.json:
        args.json.write_text(json.dumps({
            "removed": {c: {f"{t}/{k}": v for (t, k), v in tab.items()}
                        for c, tab in removed.items()},
            "false_positives": fp, "training_records": len(train), "rates": rates}, indent=1))


if __name__ == "__main__":
    main()
