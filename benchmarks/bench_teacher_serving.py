"""Teacher throughput: one llama-server with parallel slots against single-sequence
llama-cpp-python (the baseline), in the same run, on the same generate requests.

The requests are the generate stage's own prompts (template, three real training exemplars,
JSON schema) over gsm8k, arc_easy, commonsense_qa and openbookqa seeds from ../shared/seeds.
The baselines are `backend: embedded` as the pipeline runs it: one copy of the model per
Dask worker, each one sequence at a time on its share of the cores (1 worker with every
thread; 2 workers with half each, answering their halves at once). Ours serves the same
GGUF once with `llama-server --parallel P` and sends P requests at a time (`backend: openai`,
`max_concurrency: P`), as the pipeline's workers do.

    python benchmarks/bench_teacher_serving.py [--model qwen2.5-coder-1.5b] [--requests 8]
        [--parallel 2 4 8] [--max-tokens 160] [--threads 2]

Prints load time, wall time, completion tokens per second and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import load_records  # noqa: E402
from taskseed.curation.record import Sampling  # noqa: E402
from taskseed.generation.backends.base import TeacherRequest  # noqa: E402
from taskseed.generation.backends.embedded import EmbeddedConfig, served_name  # noqa: E402
from taskseed.generation.backends.openai import OpenAIConfig  # noqa: E402
from taskseed.generation.prompts import render, response_schema  # noqa: E402
from taskseed.generation.servers.managed import ManagedServer, ServerConfig  # noqa: E402

TASKS = ("gsm8k", "arc_easy", "commonsense_qa", "openbookqa")


def generate_requests(n: int, max_tokens: int, seed: int = 0) -> list[TeacherRequest]:
    """`n` generate-stage requests, round-robin over TASKS, three exemplars each."""
    records = load_records(max_per_task=200)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        group = rng.sample(records[task], 3)
        out.append(TeacherRequest(messages=render(group[0].format, task, group),
                                  sampling=Sampling(0.7, 0.95, max_tokens, i),
                                  json_schema=response_schema(group[0].format, group)))
    return out


def measure(teacher, requests: list[TeacherRequest]) -> dict[str, float]:
    started = time.perf_counter()
    replies = teacher.generate(requests)
    seconds = time.perf_counter() - started
    tokens = sum(r.usage.completion_tokens for r in replies)
    prompt = sum(r.usage.prompt_tokens for r in replies)
    ok = sum(1 for r in replies if r.ok)
    return {"seconds": seconds, "tokens": tokens, "prompt_tokens": prompt, "ok": ok,
            "tok_s": tokens / seconds if seconds else 0.0}


def measure_copies(model: str, copies: int, threads: int,
                   requests: list[TeacherRequest]) -> tuple[float, dict[str, float]]:
    """`copies` in-process models of `threads` threads each, answering their share at once."""
    started = time.perf_counter()
    teachers = [EmbeddedConfig(model=model, n_ctx=4096, n_threads=threads).build()
                for _ in range(copies)]
    load_s = time.perf_counter() - started
    shares = [requests[i::copies] for i in range(copies)]
    started = time.perf_counter()
    with ThreadPoolExecutor(copies) as pool:  # llama.cpp runs without the GIL
        replies = [r for part in pool.map(lambda pair: pair[0].generate(pair[1]),
                                          zip(teachers, shares, strict=True)) for r in part]
    seconds = time.perf_counter() - started
    for teacher in teachers:
        teacher.close()
    tokens = sum(r.usage.completion_tokens for r in replies)
    return load_s, {"seconds": seconds, "tokens": tokens, "ok": sum(r.ok for r in replies),
                    "tok_s": tokens / seconds if seconds else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--parallel", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2, help="cores to use in all")
    args = ap.parse_args()
    requests = generate_requests(args.requests, args.max_tokens)
    rows = []

    load_s, base = measure_copies(args.model, 1, args.threads, requests)
    rows.append((f"llama-cpp-python, 1 copy x {args.threads} threads (baseline)", load_s, base))
    if args.threads >= 2:
        load_s, two = measure_copies(args.model, 2, args.threads // 2, requests)
        rows.append((f"llama-cpp-python, 2 copies x {args.threads // 2} threads", load_s, two))

    name = served_name(args.model)
    for parallel in args.parallel:
        server_args = ["--ctx-size", str(4096 * parallel), "--threads", str(args.threads)]
        cfg = ServerConfig(launch="llama-server", checkpoint=f"packaged:{args.model}",
                           parallel=parallel, args=server_args)
        with tempfile.TemporaryDirectory() as tmp:
            server = ManagedServer(cfg, name, Path(tmp) / "server.log")
            with server:
                teacher = OpenAIConfig(model=name, base_url=server.base_url,
                                       max_concurrency=parallel, timeout_s=900).build()
                result = measure(teacher, requests)
                teacher.close()
            rows.append((f"llama-server, {parallel} slots", server.healthy_after_s or 0.0,
                         result))

    print(f"\n{args.model}: {args.requests} generate requests, max_tokens {args.max_tokens}, "
          f"{args.threads} threads in all\n")
    print("| teacher | load s | wall s | completion tokens | tokens/s | vs baseline | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, load, r in rows:
        print(f"| {label} | {load:.1f} | {r['seconds']:.0f} | {r['tokens']} | "
              f"{r['tok_s']:.1f} | {r['tok_s'] / base['tok_s']:.2f}x | "
              f"{r['ok']}/{args.requests} |")


if __name__ == "__main__":
    main()
