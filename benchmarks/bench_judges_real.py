"""How the model-based judges do on real training items: correct keys kept, wrong keys caught.

Items are real training records from ../shared/seeds (ARC-Easy, CommonsenseQA, OpenBookQA,
GSM8K, BoolQ), each treated as a generated record of two other seeds of its task, in kinds:

- `correct`: the item as it is (its key is right: it should be kept);
- `wrong_key`: the same item with a wrong key (another option; a changed final number,
  reasoning unchanged; a flipped yes/no): it should be dropped;
- `two_keys` (options): a distractor replaced by the key's text reworded, so two options are
  defensible: it should be dropped;
- `unanswerable`: the question replaced by another item's question while the options (or
  the passage) stay, so nothing answers it: it should be dropped.

Self-consistency (3 votes at temperature 0.7, keep when the key wins at least half) and the
LLM judge (the default rubric and thresholds; with options it must pick the key) run with the
judge model served by llama-server, as the quickstart does. On GSM8K self-consistency works each
problem out and votes on the final number.

    python benchmarks/bench_judges_real.py [--per-task 6] [--model qwen2.5-coder-1.5b]
        [--parallel 4] [--json out.json]

Prints, per judge and task, the share of correct items kept and of defective items dropped.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import generated, load_records, seed_group, wrong_number  # noqa: E402
from taskseed.curation.formats.base import LETTERS  # noqa: E402
from taskseed.curation.record import Record  # noqa: E402
from taskseed.curation.stage import BuildContext  # noqa: E402
from taskseed.generation.backends.embedded import served_name  # noqa: E402
from taskseed.generation.backends.openai import OpenAIConfig  # noqa: E402
from taskseed.generation.servers.managed import ManagedServer, ServerConfig  # noqa: E402
from taskseed.judges.filters.llm_judge import JudgeParams, LLMJudgeStage  # noqa: E402
from taskseed.judges.filters.self_consistency import (  # noqa: E402
    ConsistencyParams,
    SelfConsistencyStage,
    applies,
)

TASKS = ("arc_easy", "commonsense_qa", "openbookqa", "gsm8k", "boolq")
DEFECTS = ("wrong_key", "two_keys", "unanswerable")


def wrong_key(record: Record, group: list[Record], rng: random.Random) -> Record | None:
    if record.format == "yes_no":
        return generated(record, group, answer="no" if record.answer == "yes" else "yes")
    if record.choices:
        key = record.choices.index(record.answer)
        other = rng.choice([i for i in range(len(record.choices)) if i != key])
        return generated(record, group, answer=record.choices[other],
                         answer_label=LETTERS[other])
    number = wrong_number(record.answer, rng)
    return None if number is None else generated(record, group, answer=number)


def two_keys(record: Record, group: list[Record], rng: random.Random) -> Record | None:
    if not record.choices:
        return None
    key = record.choices.index(record.answer)
    other = rng.choice([i for i in range(len(record.choices)) if i != key])
    choices = list(record.choices)
    choices[other] = f"{record.answer} (in other words)"
    return generated(record, group, choices=choices)


def unanswerable(record: Record, group: list[Record], rng: random.Random,
                 pool: list[Record]) -> Record | None:
    other = rng.choice([r for r in pool if r.id != record.id and r.question != record.question])
    return generated(record, group, question=other.question)


class Seeds:
    """The seed records by id, as the judge's context shows them."""

    def __init__(self, records: dict[str, list[Record]]) -> None:
        self.by_id = {r.id: r for pool in records.values() for r in pool}

    def get(self, ids: list[str]) -> list[Record]:
        return [self.by_id[i] for i in ids if i in self.by_id]


def build(records: dict[str, list[Record]], per_task: int, seed: int = 0
          ) -> list[tuple[str, str, Record]]:
    """(task, kind, record) items: `per_task` source items per task, each in every kind."""
    rng = random.Random(seed)
    items = []
    for task in TASKS:
        pool = records[task]
        for record in rng.sample(pool, per_task):
            group = seed_group(record, pool, rng)
            items.append((task, "correct", generated(record, group)))
            for kind in DEFECTS:
                if kind == "unanswerable":
                    made = unanswerable(record, group, rng, pool)
                else:
                    made = {"wrong_key": wrong_key, "two_keys": two_keys}[kind](
                        record, group, rng)
                if made is not None:
                    items.append((task, kind, made))
    return items


def kept_ids(stage: Any, batch: list[Record]) -> tuple[set[str], float]:
    started = time.perf_counter()
    try:
        result = stage.process(batch, 0)
    finally:
        stage.teardown()
    return {r.id for r in result.items}, time.perf_counter() - started


def table(items: list[tuple[str, str, Record]], kept: dict[str, set[str]],
          scope: dict[str, set[str]]) -> dict[str, Any]:
    """Per judge and task: correct kept and defects dropped, as counts."""
    out: dict[str, Any] = {}
    for judge, ids in kept.items():
        rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for task, kind, record in items:
            if record.id not in scope[judge]:
                continue
            good = (record.id in ids) if kind == "correct" else (record.id not in ids)
            for key in (task, "all"):
                rows[key][kind][0] += int(good)
                rows[key][kind][1] += 1
        out[judge] = {task: dict(kinds) for task, kinds in rows.items()}
    return out


def share(pair: list[int] | None) -> str:
    if not pair or not pair[1]:
        return "-"
    return f"{pair[0]}/{pair[1]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-task", type=int, default=6)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    records = load_records(max_per_task=400)
    items = build(records, args.per_task)
    batch = [record for _, _, record in items]
    name = served_name(args.model)
    server_cfg = ServerConfig(launch="llama-server", checkpoint=f"packaged:{args.model}",
                              parallel=args.parallel,
                              args=["--ctx-size", str(4096 * args.parallel)])
    kept: dict[str, set[str]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            ManagedServer(server_cfg, name, Path(tmp) / "server.log") as server:
        judge = OpenAIConfig(model=name, base_url=server.base_url,
                             max_concurrency=args.parallel, timeout_s=1800)
        context = BuildContext(specs={}, seeds_root=Path("."), run_dir=Path(tmp),
                               models={"judge": judge}, seeds=Seeds(records))
        consistency = SelfConsistencyStage.build(ConsistencyParams(model="judge"), context)
        kept["self_consistency"], seconds["self_consistency"] = kept_ids(
            consistency, [r for r in batch if applies(r)])
        llm_judge = LLMJudgeStage.build(JudgeParams(), context)
        kept["llm_judge"], seconds["llm_judge"] = kept_ids(llm_judge, batch)
    scope = {"self_consistency": {r.id for r in batch if applies(r)},
             "llm_judge": {r.id for r in batch}}
    both = kept["self_consistency"] | (scope["llm_judge"] - scope["self_consistency"])
    kept["both (self_consistency, then llm_judge)"] = both & kept["llm_judge"]
    scope["both (self_consistency, then llm_judge)"] = scope["llm_judge"]
    results = table(items, kept, scope)

    print(f"\n{args.model} as judge, {args.per_task} source items per task; "
          f"thresholds: self_consistency min_agreement 0.5 of 3 votes, llm_judge rubric "
          f"defaults (correctness, answerability, alignment, clarity >= 3, safety >= 4; "
          f"options must match the key)\n")
    print("| judge | task | correct kept | wrong key caught | two keys caught | "
          "unanswerable caught |")
    print("|---|---|---:|---:|---:|---:|")
    for judge, rows in results.items():
        for task in (*TASKS, "all"):
            if task not in rows:
                continue
            kinds = rows[task]
            print(f"| {judge} | {task} | {share(kinds.get('correct'))} | "
                  f"{share(kinds.get('wrong_key'))} | {share(kinds.get('two_keys'))} | "
                  f"{share(kinds.get('unanswerable'))} |")
    print("\n" + ", ".join(f"{j}: {s:.0f} s" for j, s in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
