"""Teacher HTTP client benchmark: OpenAITeacher vs the openai SDK's AsyncOpenAI.

Runs the fake OpenAI-compatible server in a separate process on loopback and measures
(a) requests/s against an instant server, client pinned to one core, and
(b) the share of ideal throughput with 1,000 requests in flight and 2 s server latency.

    python benchmarks/bench_client.py [--requests N] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.openai import OpenAITeacher

ROOT = Path(__file__).resolve().parents[1]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "answer": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "string"}, "minItems": 4},
        "label": {"type": "string", "enum": ["A", "B", "C", "D"]},
    },
    "required": ["question", "answer", "choices", "label"],
    "additionalProperties": False,
}


def make_requests(n: int, tag: str) -> list[TeacherRequest]:
    return [
        TeacherRequest(
            messages=[
                {"role": "system", "content": "Write one new exam question like the examples."},
                {"role": "user", "content": f"Example {tag}-{i}: what is {i} + {i}? {2 * i}"},
            ],
            sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=256),
            json_schema=SCHEMA,
        )
        for i in range(n)
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(latency_s: float, cpu: int | None) -> Iterator[tuple[str, int]]:
    """The fake server as a child process; yields (base_url, pid)."""
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskseed.generation.servers.fake", "--port", "0",
         "--latency", str(latency_s)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.split()[-1], proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def measure(run: Callable[[list[TeacherRequest]], int], warmup: list[TeacherRequest],
            timed: list[TeacherRequest], server_pid: int) -> dict[str, float]:
    """Warm up, then time `run(timed)`; `run` returns the number of successful requests."""
    run(warmup)
    gc.collect()
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    start = time.perf_counter()
    ok = run(timed)
    seconds = time.perf_counter() - start
    return {
        "requests": len(timed),
        "ok": ok,
        "seconds": round(seconds, 3),
        "rps": round(len(timed) / seconds, 1),
        "client_cpu_us_per_request": round((time.process_time() - client_cpu)
                                           / len(timed) * 1e6, 1),
        "server_cpu_share": round((cpu_seconds(server_pid) - server_cpu) / seconds, 3),
    }


def ours_sync(base_url: str, concurrency: int) -> Callable[[list[TeacherRequest]], int]:
    """OpenAITeacher.generate() on its own loop."""
    teacher = OpenAITeacher(base_url, "bench", max_concurrency=concurrency, timeout_s=60)

    def run(requests: list[TeacherRequest]) -> int:
        return sum(r.ok for r in teacher.generate(requests))

    run.close = teacher.close  # type: ignore[attr-defined]
    return run


def ours_asyncio(base_url: str, concurrency: int) -> Callable[[list[TeacherRequest]], int]:
    """OpenAITeacher.agenerate() on the caller's asyncio loop, as the SDK runs."""
    teacher = OpenAITeacher(base_url, "bench", max_concurrency=concurrency, timeout_s=60)
    loop = asyncio.new_event_loop()

    def run(requests: list[TeacherRequest]) -> int:
        return sum(r.ok for r in loop.run_until_complete(teacher.agenerate(requests)))

    def close() -> None:
        loop.run_until_complete(teacher.aclose())
        loop.close()

    run.close = close  # type: ignore[attr-defined]
    return run


def sdk(base_url: str, concurrency: int) -> Callable[[list[TeacherRequest]], int]:
    """openai.AsyncOpenAI with default settings, asyncio.gather under a semaphore."""
    from openai import AsyncOpenAI

    loop = asyncio.new_event_loop()
    client = AsyncOpenAI(base_url=base_url, api_key="bench")

    async def batch(requests: list[TeacherRequest]) -> int:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(request: TeacherRequest) -> bool:
            async with semaphore:
                try:
                    response = await client.chat.completions.create(
                        model="bench",
                        messages=request.messages,  # type: ignore[arg-type]
                        temperature=request.sampling.temperature,
                        top_p=request.sampling.top_p,
                        max_tokens=request.sampling.max_tokens,
                        response_format={  # type: ignore[arg-type]
                            "type": "json_schema",
                            "json_schema": {"name": "record", "schema": SCHEMA, "strict": True},
                        },
                    )
                    json.loads(response.choices[0].message.content or "")
                    return True
                except Exception:  # noqa: BLE001
                    return False

        return sum(await asyncio.gather(*(one(r) for r in requests)))

    def run(requests: list[TeacherRequest]) -> int:
        return loop.run_until_complete(batch(requests))

    def close() -> None:
        loop.run_until_complete(client.close())
        loop.close()

    run.close = close  # type: ignore[attr-defined]
    return run


CLIENTS = {"ours": ours_sync, "ours_agenerate": ours_asyncio, "openai_sdk": sdk}


def worker(args: argparse.Namespace) -> None:
    """Measure one client in this fresh process and print its result as JSON."""
    os.sched_setaffinity(0, {args.cpu})
    run = CLIENTS[args.worker](args.url, args.concurrency)
    try:
        result = measure(run, make_requests(args.warmup, f"w{args.worker}"),
                         make_requests(args.requests, args.worker), args.server_pid)
    finally:
        run.close()  # type: ignore[attr-defined]
    print(json.dumps(result), flush=True)


def bench(clients: list[str], latency_s: float, concurrency: int, warmup_n: int, timed_n: int,
          client_cpu: int, server_cpu: int | None) -> dict[str, dict[str, float]]:
    """Each client runs in its own process, so no client pays for another's imports."""
    results = {}
    with server_process(latency_s, server_cpu) as (base_url, pid):
        for name in clients:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--url", base_url,
                 "--server-pid", str(pid), "--cpu", str(client_cpu),
                 "--concurrency", str(concurrency), "--warmup", str(warmup_n),
                 "--requests", str(timed_n)],
                check=True, capture_output=True, text=True,
            ).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            print(f"  {name:<18} {results[name]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000,
                        help="timed requests per client against the instant server")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--waves", type=int, default=3, help="timed waves for the latency test")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    load_at_start = os.getloadavg()
    cpus = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], None)
    try:
        openai_version: str | None = importlib.metadata.version("openai")
        clients = list(CLIENTS)
    except importlib.metadata.PackageNotFoundError:
        openai_version = None
        clients = ["ours", "ours_agenerate"]
        print("openai is not installed: the SDK baseline is skipped", flush=True)

    print(f"(a) instant server, {args.requests} requests, concurrency {args.concurrency}, "
          f"client pinned to CPU {client_cpu}", flush=True)
    throughput = bench(clients, 0.0, args.concurrency, min(2000, args.requests),
                       args.requests, client_cpu, server_cpu)
    print(f"(b) {args.in_flight} in flight, server latency {args.latency}s", flush=True)
    in_flight = bench(clients, args.latency, args.in_flight, args.in_flight,
                      args.in_flight * args.waves, client_cpu, server_cpu)
    ideal = args.in_flight / args.latency
    for result in in_flight.values():
        result["share_of_ideal"] = round(result["rps"] / ideal, 3)

    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "openai": openai_version,
            "client_cpu": client_cpu, "server_cpu": server_cpu,
            "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(),
        },
        "throughput": throughput,
        "in_flight": {"in_flight": args.in_flight, "latency_s": args.latency,
                      "ideal_rps": ideal, "results": in_flight},
    }
    if "openai_sdk" in throughput:
        report["ours_over_sdk"] = round(
            throughput["ours"]["rps"] / throughput["openai_sdk"]["rps"], 2)
    ours = throughput["ours"]["rps"]
    report["targets"] = {
        "ours_rps_ge_3000": ours >= 3000,
        "ours_ge_5x_sdk": report.get("ours_over_sdk", 0) >= 5,
        "ours_share_of_ideal_ge_0.9": in_flight["ours"]["share_of_ideal"] >= 0.9,
    }

    print()
    latency_header = f"req/s ({args.latency:g}s, {args.in_flight} in flight)"
    print(f"{'client':<20}{'req/s (instant)':>16}{'cpu us/req':>12}"
          f"{latency_header:>28}{'share of ideal':>16}")
    for name in clients:
        a, b = throughput[name], in_flight[name]
        print(f"{name:<20}{a['rps']:>16,.0f}{a['client_cpu_us_per_request']:>12,.0f}"
              f"{b['rps']:>28,.0f}{b['share_of_ideal']:>16.1%}")
    if "ours_over_sdk" in report:
        print(f"ours / openai SDK (instant server): {report['ours_over_sdk']}x")
    print(f"targets: {report['targets']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
