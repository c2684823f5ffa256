"""Semantic (embedding) vs n-gram decontamination on real held-out items, measured.

Positives are held-out items of ../shared/seeds, sampled per task, in several forms: verbatim;
lightly edited (case, punctuation, one changed word, shuffled options); paraphrased by rules
(clause reordering, synonyms from a small table, "Which of the following" rephrasings, numbers
and names changed); and, with `--llm N`, paraphrased by the embedded SmolLM2-135M. Negatives are
training items of the same tasks. Every query is checked against every held-out item of the
chosen tasks by
(a) baselines: 13-gram and 8-gram overlap (normalized words; any shared n-gram; an item shorter
    than n matches when the query contains all of it), implemented here;
(b) `SemanticIndex` (all-MiniLM-L6-v2) at several cosine thresholds.
Texts are `item_text` (question, choices, answer) for both, so contexts shared by many items
do not decide. It prints recall per edit kind, false positives on training items, what the
semantic pass catches that 8-grams miss, embedding and matching throughput, and how matching
cost grows with the index size. The held-out index is cached under `--cache`.

Usage: python benchmarks/bench_semantic_decontam.py [--seeds ../shared/seeds] [--per-task 40]
       [--negatives 150] [--llm 0] [--threads 2] [--tasks ...] [--out f.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from taskseed.curation.decontam.eval_sets import EvalSplit, eval_splits, read_eval_split
from taskseed.curation.decontam.semantic import Embedder, SemanticIndex, item_text
from taskseed.curation.record import Record
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs
from taskseed.curation.text import normalize_text, word_ngrams

REPO = Path(__file__).resolve().parents[1]
TASKS = ["arc_challenge", "commonsense_qa", "gsm8k", "mbpp", "openbookqa", "social_i_qa"]
THRESHOLDS = [0.75, 0.80, 0.85, 0.90, 0.95]
KINDS = ["verbatim", "case", "punctuation", "one_word", "shuffled_options", "paraphrase",
         "paraphrase_llm"]

PHRASES = [
    ("which of the following", "which one of these options"),
    ("which of these", "which option here"),
    ("what is the most likely", "what would probably be the"),
    ("how many", "what number of"),
    ("how much", "what amount"),
    ("most likely", "probably"),
    ("best explains", "gives the best explanation of"),
    ("write a function to", "create a routine that will"),
    ("write a python function to", "implement a python routine that will"),
    ("what does", "what would"),
    ("in order to", "so as to"),
    ("a lot of", "plenty of"),
]
SYNONYMS = {
    "best": "most accurately", "explains": "accounts for", "describes": "characterizes",
    "because": "since", "used": "utilized", "use": "utilize", "uses": "utilizes",
    "many": "numerous", "buy": "purchase", "buys": "purchases", "bought": "purchased",
    "each": "every", "every": "each", "total": "overall", "person": "individual",
    "people": "individuals", "wants": "would like", "make": "create", "makes": "creates",
    "help": "assist", "large": "big", "big": "large", "small": "little", "little": "small",
    "fast": "quick", "quickly": "rapidly", "start": "begin", "starts": "begins",
    "show": "demonstrate", "shows": "demonstrates", "find": "locate", "get": "obtain",
    "gets": "obtains", "need": "require", "needs": "requires", "example": "instance",
    "important": "significant", "different": "distinct", "likely": "probable",
    "happen": "occur", "happens": "occurs", "after": "following", "before": "prior to",
    "correct": "right", "travel": "journey", "home": "house", "store": "shop",
    "students": "pupils", "student": "pupil", "teacher": "instructor", "given": "specified",
    "list": "sequence", "number": "figure", "found": "discovered", "causes": "leads to",
    "cause": "lead to", "change": "alter", "changes": "alters", "increase": "rise",
    "decrease": "drop", "scientists": "researchers", "water": "H2O", "money": "cash",
    "week": "7-day period", "hours": "hrs", "minutes": "mins", "dollars": "bucks",
    "feel": "be", "friends": "pals", "friend": "pal", "went": "headed", "said": "stated",
    "would": "will", "likes": "enjoys", "like": "enjoy", "car": "automobile",
    "called": "named", "object": "item", "objects": "items", "amount": "quantity",
}
NAMES = ["James", "John", "Robert", "Michael", "David", "Mary", "Linda", "Sarah", "Jennifer",
         "Janet", "Tom", "Mark", "Paul", "Lisa", "Nancy", "Karen", "Betty", "Helen", "Sandra",
         "Tracy", "Riley", "Jordan", "Kendall", "Cameron", "Skylar", "Sasha", "Austin", "Carson",
         "Aubrey", "Quinn", "Robin", "Lee", "Jesse", "Taylor", "Alex", "Remy", "Bailey", "Casey",
         "Ash", "Jan", "Addison", "Kai", "Sydney", "Jack", "Emily", "Anna", "Ben", "Joe", "Tim",
         "Bob", "Alice", "Peter", "Kylie", "Carla", "Marie", "Josh", "Brian", "Susan", "Greg"]
NEW_NAMES = ["Priyanka", "Oluwaseun", "Mateo", "Ingrid", "Kenji", "Fatima", "Dmitri", "Leilani"]
SUBORDINATORS = ("if", "when", "because", "after", "before", "since", "while", "although", "as")


def _case_like(word: str, new: str) -> str:
    return new[:1].upper() + new[1:] if word[:1].isupper() else new


def synonyms(text: str, rng: random.Random, share: float = 1.0) -> str:
    """Replace table phrases, then table words (each with probability `share`)."""
    for old, new in PHRASES:
        text = re.sub(rf"\b{old}\b", lambda m, n=new: _case_like(m.group(0), n), text,
                      flags=re.IGNORECASE)

    def one(m: re.Match[str]) -> str:
        word = m.group(0)
        new = SYNONYMS.get(word.lower())
        return _case_like(word, new) if new and rng.random() < share else word

    return re.sub(r"[A-Za-z]+", one, text)


def change_names(text: str) -> str:
    """Each known first name becomes one of a fixed list of other names."""
    mapping: dict[str, str] = {}

    def one(m: re.Match[str]) -> str:
        name = m.group(0)
        mapping.setdefault(name, NEW_NAMES[len(mapping) % len(NEW_NAMES)])
        return mapping[name]

    return re.sub(r"\b(" + "|".join(NAMES) + r")\b", one, text)


def change_numbers(text: str) -> str:
    """Every integer n becomes n + 1 (decimals and digits inside words stay)."""
    return re.sub(r"(?<![\w.])(\d+)(?![\w.]\d)", lambda m: str(int(m.group(1)) + 1), text)


def reorder_clauses(text: str) -> str:
    """`If X, Y.` becomes `Y if X.`; of several sentences the first two swap places."""
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    out = []
    for s in sentences:
        m = re.match(r"^(\w+)\s+([^,]{3,}),\s+(.+?)([.?!]?)$", s)
        if m and m.group(1).lower() in SUBORDINATORS:
            main = m.group(3)
            out.append(f"{main[:1].upper()}{main[1:]} {m.group(1).lower()} {m.group(2)}"
                       f"{m.group(4)}")
        else:
            out.append(s)
    if len(out) >= 3:
        out[0], out[1] = out[1], out[0]
    return " ".join(out)


def shuffled(choices: list[str], rng: random.Random) -> list[str]:
    out = list(choices)
    for _ in range(5):
        rng.shuffle(out)
        if out != choices:
            break
    return out


def edit_one_word(text: str, rng: random.Random) -> str:
    """One word of four letters or more replaced (a synonym when the table has one)."""
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    if not words:
        return text + " indeed"
    m = rng.choice(words)
    new = SYNONYMS.get(m.group(0).lower(), "thing")
    return text[:m.start()] + _case_like(m.group(0), new) + text[m.end():]


def variant(record: Record, kind: str, rng: random.Random) -> Record | None:
    """The record in the given edit kind (None when the kind does not apply to it)."""
    q, choices = record.question, record.choices
    if kind == "verbatim":
        return record
    if kind == "case":
        q, choices = q.swapcase(), [c.upper() for c in choices]
    elif kind == "punctuation":
        strip = re.compile(r"[^\w\s]")
        q, choices = strip.sub("", q) + " ?", [strip.sub("", c) + "." for c in choices]
    elif kind == "one_word":
        q = edit_one_word(q, rng)
    elif kind == "shuffled_options":
        if len(choices) < 2:
            return None
        choices = shuffled(choices, rng)
    elif kind == "paraphrase":
        q = change_numbers(change_names(synonyms(reorder_clauses(q), rng)))
        choices = shuffled([change_names(synonyms(c, rng, 0.5)) for c in choices], rng)
    return dataclasses.replace(record, question=q, choices=choices)


def llm_paraphrases(records: list[Record], cache: Path) -> list[Record | None]:
    """Questions rewritten by the embedded SmolLM2 (None where it only copied or failed);
    rewrites are kept in `cache` (a JSON file) for later runs."""
    done: dict[str, str] = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [r for r in records if r.id not in done]
    if todo:
        done.update(zip((r.id for r in todo), _generate(todo), strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(done, indent=1))
    out: list[Record | None] = []
    for record in records:
        text = done[record.id].strip()
        if not text or normalize_text(text) == normalize_text(record.question):
            out.append(None)
        else:
            out.append(dataclasses.replace(record, question=text))
    return out


def _generate(records: list[Record]) -> list[str]:
    from taskseed.generation.backends.base import Sampling, TeacherRequest
    from taskseed.generation.backends.embedded import EmbeddedTeacher

    teacher = EmbeddedTeacher(n_threads=2)
    requests = [TeacherRequest(
        messages=[{"role": "system", "content": "You rewrite questions in different words."},
                  {"role": "user", "content": "Rewrite this question with different wording "
                   "and the same meaning. Reply with the rewritten question only.\n\n"
                   + r.question}],
        sampling=Sampling(temperature=0.7, max_tokens=160, seed=i))
        for i, r in enumerate(records)]

    def progress(i: int, _: Any) -> None:
        if (i + 1) % 10 == 0:
            print(f"  SmolLM2 {i + 1}/{len(requests)}", flush=True)

    replies = teacher.generate(requests, progress)
    teacher.close()
    return ["" if reply.error else reply.text or "" for reply in replies]


class NgramBaseline:
    """n-gram decontamination: normalized words, any shared n-gram; items shorter than n
    match when the query holds them whole."""

    def __init__(self, texts: list[str], n: int) -> None:
        self.n = n
        self.grams: dict[str, int] = {}
        self.short: list[tuple[str, int]] = []
        for i, text in enumerate(texts):
            norm = normalize_text(text)
            if len(norm.split()) < n:
                if norm:
                    self.short.append((f" {norm} ", i))
                continue
            for gram in word_ngrams(norm, n):
                self.grams.setdefault(gram, i)

    def match(self, text: str) -> int | None:
        """The index of an eval item the text overlaps, or None."""
        norm = normalize_text(text)
        for gram in word_ngrams(norm, self.n):
            if gram in self.grams:
                return self.grams[gram]
        padded = f" {norm} "
        return next((i for short, i in self.short if short in padded), None)


def split_records(spec: TaskSpec, split: Any, seeds: Path) -> list[Record]:
    return read_eval_split(EvalSplit(spec.name, split.split, spec, split), seeds).items


def load_data(specs: dict[str, TaskSpec], seeds: Path, tasks: list[str], per_task: int,
              negatives: int, rng: random.Random) -> tuple[list[Record], list[Record],
                                                           list[Record]]:
    """All held-out items of the tasks, sampled positives, and sampled training items."""
    held: list[Record] = []
    positives: list[Record] = []
    train: list[Record] = []
    chosen = {name: specs[name] for name in tasks}
    for target in (t for t in eval_splits(chosen) if t.local):
        held.extend(split_records(target.spec, target.split_spec, seeds))
    for name in tasks:
        mine = [r for r in held if r.task == name]
        positives.extend(rng.sample(mine, min(per_task, len(mine))))
        spec = specs[name]
        if spec.train is not None and spec.train.files:
            rows = split_records(spec, spec.train, seeds)
            train.extend(rng.sample(rows, min(negatives, len(rows))))
    return held, positives, train


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Result, wall seconds and this process's CPU seconds (other load shows as their gap)."""
    cpu = time.process_time()
    out, wall = timed(fn)
    return out, wall, time.process_time() - cpu


def matching_growth(dim: int, queries: int, sizes: list[int]) -> list[dict[str, float]]:
    """Exact block matching time against random unit vectors of growing index sizes."""
    gen = np.random.default_rng(0)
    q = gen.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rows = []
    for size in sizes:
        vectors = gen.standard_normal((size, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = SemanticIndex([str(i) for i in range(size)], vectors)
        _, seconds = timed(lambda index=index: index.match_vectors(q, 0.85))
        rows.append({"index_items": size, "queries": queries, "seconds": round(seconds, 3),
                     "queries_per_s": round(queries / seconds)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=Path, default=REPO.parent / "shared" / "seeds")
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--per-task", type=int, default=40)
    ap.add_argument("--negatives", type=int, default=150, help="training items per task")
    ap.add_argument("--llm", type=int, default=0, help="SmolLM2 paraphrases per task")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/taskseed-bench-semantic"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    specs = load_task_specs(sorted((REPO / "configs" / "tasks").glob("*.yaml")))
    held, positives, train = load_data(specs, args.seeds, args.tasks, args.per_task,
                                       args.negatives, rng)
    print(f"held-out items {len(held)}, sampled positives {len(positives)}, "
          f"training negatives {len(train)} ({', '.join(args.tasks)})", flush=True)

    queries: list[tuple[str, Record, Record]] = []  # (kind, source item, variant)
    for kind in KINDS[:-1]:
        for record in positives:
            edited = variant(record, kind, rng)
            if edited is not None:
                queries.append((kind, record, edited))
    if args.llm:
        picked = [r for name in args.tasks
                  for r in [p for p in positives if p.task == name][:args.llm]]
        cache = args.cache / "smollm2-paraphrases.json"
        (rewrites, llm_s) = timed(lambda: llm_paraphrases(picked, cache))
        kept = [(r, v) for r, v in zip(picked, rewrites, strict=True) if v is not None]
        print(f"SmolLM2: {len(kept)}/{len(picked)} usable rewrites in {llm_s:.0f} s")
        queries.extend(("paraphrase_llm", r, v) for r, v in kept)

    (embedder, load_s) = timed(lambda: Embedder())
    (index, index_s) = timed(lambda: SemanticIndex.build(held, embedder, args.cache))
    query_texts = [item_text(v) for _, _, v in queries]
    neg_texts = [item_text(r) for r in train]
    (q_vec, q_s, q_cpu) = cpu_timed(lambda: embedder.embed(query_texts + neg_texts))
    rate = len(q_vec) / q_s
    (sem, match_s) = timed(lambda: index.match_vectors(q_vec, -1.0, top_k=1))
    best = np.array([m[0].score for m in sem])
    top_id = [m[0].id for m in sem]
    nq = len(queries)

    held_texts = [item_text(r) for r in held]
    results: dict[str, Any] = {"counts": {"held_out": len(held), "queries": nq,
                                          "negatives": len(train)}}
    ngram_hits: dict[int, list[bool]] = {}
    for n in (13, 8):
        (base, build_s) = timed(lambda n=n: NgramBaseline(held_texts, n))
        (hits, check_s) = timed(lambda base=base: [base.match(t) is not None
                                                   for t in query_texts + neg_texts])
        ngram_hits[n] = hits
        results[f"ngram{n}_seconds"] = {"build": round(build_s, 3), "check": round(check_s, 3)}

    kinds = [k for k in KINDS if any(q[0] == k for q in queries)]
    header = f"{'method':<16}" + "".join(f"{k:>17}" for k in kinds) + f"{'FP train':>10}"
    print("\nrecall per edit kind (share of queries flagged), false positives on training items")
    print(header)
    table: dict[str, dict[str, float]] = {}

    def row(name: str, flags: np.ndarray) -> None:
        cells = {k: float(np.mean([flags[i] for i in range(nq) if queries[i][0] == k]))
                 for k in kinds}
        cells["fp_train"] = float(np.mean(flags[nq:])) if len(train) else 0.0
        table[name] = cells
        print(f"{name:<16}" + "".join(f"{cells[k]:>17.3f}" for k in kinds)
              + f"{cells['fp_train']:>10.3f}")

    for n in (13, 8):
        row(f"{n}-gram", np.array(ngram_hits[n]))
    for t in THRESHOLDS:
        row(f"cosine>={t:.2f}", best >= t)
    for t in (0.85, 0.90):
        row(f"13g|cos>={t:.2f}", np.array(ngram_hits[13]) | (best >= t))
    results["recall_fp"] = table

    tasks = [r.task for _, r, _ in queries] + [r.task for r in train]
    methods = {"13-gram": np.array(ngram_hits[13]), "8-gram": np.array(ngram_hits[8]),
               "cos>=0.85": best >= 0.85, "cos>=0.90": best >= 0.90}
    para = [i for i in range(nq) if queries[i][0] == "paraphrase"]
    print("\nper task: paraphrase recall | false positives on training items")
    print(f"{'task':<16}" + "".join(f"{m:>11}" for m in methods) + "  |"
          + "".join(f"{m:>11}" for m in methods))
    per_task: dict[str, Any] = {}
    for name in args.tasks:
        mine = [i for i in para if tasks[i] == name]
        negs = [i for i in range(nq, len(tasks)) if tasks[i] == name]
        rec = {m: float(np.mean(f[mine])) if mine else float("nan") for m, f in methods.items()}
        fps = {m: float(np.mean(f[negs])) if negs else float("nan") for m, f in methods.items()}
        per_task[name] = {"paraphrase_recall": rec, "fp_train": fps}
        print(f"{name:<16}" + "".join(f"{v:>11.3f}" for v in rec.values()) + "  |"
              + "".join(f"{v:>11.3f}" for v in fps.values()))
    results["per_task"] = per_task

    llm = [i for i in range(nq) if queries[i][0] == "paraphrase_llm"]
    for i in rng.sample(llm, min(3, len(llm))):
        print(f"  SmolLM2 [cos {best[i]:.3f}, 8-gram {'hit' if ngram_hits[8][i] else 'miss'}] "
              f"{queries[i][2].question[:140]!r}\n       eval: {queries[i][1].question[:100]!r}")

    source_top1 = Counter(q[0] for i, q in enumerate(queries) if top_id[i] == q[1].id)
    per_kind = Counter(q[0] for q in queries)
    print("\ntop-1 neighbour is the item the query came from: "
          + ", ".join(f"{k} {source_top1[k]}/{per_kind[k]}" for k in kinds))

    print("\ncaught by the semantic pass but missed by 8-grams (of each kind's queries):")
    gained: dict[str, dict[str, int]] = {}
    for t in (0.80, 0.85, 0.90):
        counts = Counter(q[0] for i, q in enumerate(queries)
                         if best[i] >= t and not ngram_hits[8][i])
        gained[f"{t:.2f}"] = dict(counts)
        print(f"  cosine>={t:.2f}: " + ", ".join(f"{k} {counts[k]}/{per_kind[k]}"
                                                 for k in kinds))
    results["semantic_not_8gram"] = gained
    missed = [i for i in range(nq) if best[i] >= 0.85 and not ngram_hits[8][i]]
    for i in rng.sample(missed, min(3, len(missed))):
        kind, source, edited = queries[i]
        print(f"  e.g. [{kind}, cos {best[i]:.3f}] {edited.question[:110]!r}\n"
              f"       eval: {source.question[:110]!r}")

    neg_best = best[nq:]
    if len(neg_best):
        order = np.argsort(-neg_best)[:3]
        print("\ntraining items closest to a held-out item (cosine quantiles "
              f"p50 {np.quantile(neg_best, .5):.3f} p99 {np.quantile(neg_best, .99):.3f}):")
        by_id = {r.id: r for r in held}
        for j in order:
            near = by_id[top_id[nq + j]]
            print(f"  cos {neg_best[j]:.3f} train {train[j].task}: {train[j].question[:90]!r}"
                  f"\n            eval: {near.question[:90]!r}")

    growth = matching_growth(embedder.dim, 1024, [8_000, 32_000, 64_000, 128_000])
    results["speed"] = {
        "model_load_s": round(load_s, 2),
        "index_build_s": round(index_s, 2),
        "embeddings_per_s": round(rate, 1),
        "embeddings_per_cpu_s": round(len(q_vec) / q_cpu, 1),
        "threads": torch.get_num_threads(),
        "match_s_all_queries": round(match_s, 3),
        "ngram13_check_s": results["ngram13_seconds"]["check"],
        "matching_growth": growth,
    }
    print(f"\nembedding: {rate:.1f} texts/s on {torch.get_num_threads()} threads "
          f"({len(q_vec)} texts, {q_s:.1f} s wall, {q_cpu:.1f} CPU s: "
          f"{len(q_vec) / q_cpu:.1f} texts per CPU s; load avg {os.getloadavg()[0]:.1f})\n"
          f"model load {load_s:.1f} s; index {len(held)} items in {index_s:.1f} s "
          "(cached after the first run)")
    ng = results["ngram13_seconds"]["check"]
    print(f"checking {len(q_vec)} texts: 13-gram {ng:.3f} s; semantic embed {q_s:.1f} s + match "
          f"{match_s:.3f} s (semantic / 13-gram time ratio {(q_s + match_s) / ng:.0f}x)")
    print("exact matching, 1,024 queries vs random index (cost grows linearly with index size):")
    for g in growth:
        print(f"  {g['index_items']:>7} items: {g['seconds']:.3f} s ({g['queries_per_s']} q/s; "
              f"{rate / g['queries_per_s']:.3f} of embedding time)")
    results["platform"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load_avg": os.getloadavg()}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
