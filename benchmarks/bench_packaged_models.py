"""The packaged models as teachers: load time, prompt and generation speed, usable items.

Each packaged model (`smollm2`, `qwen2.5-coder-1.5b`) answers the same 12 generate-stage
requests (three real exemplars each from gsm8k, arc_easy, commonsense_qa and mbpp in
../shared/seeds, the generate prompt and its JSON schema) in this process with llama.cpp,
one sequence at a time. Prompt speed is the prompt's tokens over the time to a one-token
reply; generation speed is the reply's tokens over the time of the full reply that follows
(llama.cpp reuses the prompt it has just evaluated, so that time is decoding).
An item is *parsed* when its reply follows the schema and becomes a record, and *passes*
when the deterministic filters keep it (the generate stage's copy check, validity,
heuristics, verify with the code sandbox): the share the model-based judges then see.

    python benchmarks/bench_packaged_models.py [--models smollm2 qwen2.5-coder-1.5b]
        [--threads 2] [--show]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import Chain, Planted, load_records  # noqa: E402
from taskseed.curation.formats import answer_format  # noqa: E402
from taskseed.curation.record import Origin, Record, Sampling  # noqa: E402
from taskseed.generation.backends.base import TeacherRequest  # noqa: E402
from taskseed.generation.backends.embedded import EmbeddedConfig  # noqa: E402
from taskseed.generation.backends.replies import json_object  # noqa: E402
from taskseed.generation.prompts import render, response_schema  # noqa: E402
from taskseed.generation.stages.generate import copied_exemplar  # noqa: E402
from taskseed.judges import heuristics  # noqa: E402

TASKS = ("gsm8k", "arc_easy", "commonsense_qa", "mbpp")


def prompts(records: dict[str, list[Record]], per_task: int = 3, seed: int = 0
            ) -> list[tuple[list[Record], TeacherRequest]]:
    rng = random.Random(seed)
    out = []
    for task in TASKS:
        for i in range(per_task):
            group = rng.sample(records[task], 3)
            out.append((group, TeacherRequest(
                messages=render(group[0].format, task, group),
                sampling=Sampling(0.7, 0.95, 320, i), json_schema=response_schema(
                    group[0].format, group))))
    return out


def parse(group: list[Record], text: str) -> Record | None:
    first = group[0]
    try:
        fields = answer_format(first.format).parse_reply(json_object(text))
    except Exception:  # noqa: BLE001 - any unusable reply counts as not parsed
        return None
    return Record(task=first.task, family=first.family, format=first.format,
                  origin=Origin.GENERATED, question=fields.question, context=fields.context,
                  choices=fields.choices, answer=fields.answer,
                  answer_label=fields.answer_label, reasoning=fields.reasoning,
                  tests=fields.tests, license=first.license, source=first.source)


def bench(model: str, asks: list[tuple[list[Record], TeacherRequest]], threads: int,
          seeds: list[Record], show: bool) -> dict[str, float]:
    started = time.perf_counter()
    teacher = EmbeddedConfig(model=model, n_ctx=4096, n_threads=threads).build()
    load_s = time.perf_counter() - started
    prompt_tokens = prompt_s = gen_tokens = gen_s = 0.0
    parsed = passed = 0
    chain = Chain(framing=heuristics.framing_of(seeds))
    for group, request in asks:
        one = TeacherRequest(request.messages, Sampling(0.0, 1.0, 1, 0), None)
        started = time.perf_counter()
        [first] = teacher.generate([one])
        first_s = time.perf_counter() - started
        prompt_tokens += first.usage.prompt_tokens
        prompt_s += first_s
        started = time.perf_counter()
        [reply] = teacher.generate([request])
        gen_tokens += reply.usage.completion_tokens
        gen_s += time.perf_counter() - started  # the prompt is cached from the first call
        record = parse(group, reply.text) if reply.ok else None
        if record is None:
            continue
        parsed += 1
        keep = copied_exemplar(record, group).keep and chain.judge(
            Planted("correct", "", record, group)).filter is None
        passed += int(keep)
        if show:
            print(f"[{model}] {record.task} {'PASS' if keep else 'drop'}: "
                  f"{record.question[:120]!r} -> {record.answer[:80]!r}")
    teacher.close()
    return {"load_s": load_s, "prompt_tok_s": prompt_tokens / prompt_s,
            "gen_tok_s": gen_tokens / gen_s, "parsed": parsed, "passed": passed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smollm2", "qwen2.5-coder-1.5b"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", action="store_true", help="print each item and its fate")
    args = ap.parse_args()
    records = load_records(max_per_task=200)
    asks = prompts(records)
    seeds = [r for task in TASKS for r in records[task]]
    rows = {m: bench(m, asks, args.threads, seeds, args.show) for m in args.models}
    print(f"\n{len(asks)} generate requests ({', '.join(TASKS)}, 3 each), "
          f"{args.threads} threads, one sequence at a time\n")
    print("| model | load s | prompt tok/s | generation tok/s | parsed | pass the "
          "deterministic filters |")
    print("|---|---:|---:|---:|---:|---:|")
    for model, r in rows.items():
        print(f"| {model} | {r['load_s']:.1f} | {r['prompt_tok_s']:.0f} | "
              f"{r['gen_tok_s']:.1f} | {r['parsed']}/{len(asks)} | {r['passed']}/{len(asks)} |")


if __name__ == "__main__":
    main()
