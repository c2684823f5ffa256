"""How busy the pipeline keeps a teacher of fixed capacity: stage by stage vs streamed.

The teacher, judge and enricher are one loopback server in capacity mode
(`FakeOpenAIServer(capacity=Capacity(slots, seconds_per_token))`): at most `slots` answers
are served at once and each holds its slot for a time proportional to its output tokens,
as a GPU server's continuous batch does. The server measures the share of its slot-time
that was busy between its first and its last request.

Cascade: seeds -> normalize -> generate -> validity -> heuristics -> verify ->
self_consistency -> llm_judge -> enrich, on 3 multiple-choice tasks (written here) in 6
shards. Each configuration runs into a fresh run directory:

(a) stage by stage (baseline, `executor: {stream: false}`): every stage waits for all of
    its shards;
(b) streamed (the default): a shard moves on as soon as it is committed, and a worker's
    shards share its one request pool per model.

With 1 and with 2 local workers (`max_concurrency` = slots / workers, so the pool can
fill the server). Both must commit the same records; a difference is printed.

Usage: python benchmarks/bench_streaming.py [--slots 64] [--seconds-per-token 0.02]
       [--groups 8] [--samples 20] [--workers 1 2] [--units-per-worker 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import xxhash

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from taskseed.curation.io.arrow import read_parquet  # noqa: E402
from taskseed.curation.record import Record  # noqa: E402
from taskseed.generation.servers.fake import Capacity, FakeOpenAIServer, requested_schema  # noqa: E402
from workspace import write_task  # noqa: E402

from taskseed.execution.run import run_pipeline  # noqa: E402

NAMES = ["Maya", "Omar", "Lena", "Tariq", "Ines", "Kofi", "Priya", "Jonas", "Aiko", "Bruno"]
JOBS = ["fix a loose nail in", "hang a picture on", "tighten a hinge on", "mend a shelf in",
        "repair a fence by", "build a birdhouse for"]
PLACES = ["the kitchen", "the garden", "the garage", "the attic", "the porch", "the barn"]
RIGHT = "a sturdy hammer"
WRONG = ["a soft pillow", "a glass of milk", "a paper napkin", "a woollen scarf"]

PIPE = """name: streambench
run_dir: {run}
seeds_root: .
tasks: [tools_a.yaml, tools_b.yaml, tools_c.yaml]
executor: {{workers: {workers}, stream: {stream}, units_per_worker: {units}}}
teacher: &model {{backend: openai, base_url: "{url}", model: bench-teacher,
                  max_concurrency: {concurrency}, max_retries: 2, timeout_s: 600}}
models: {{judge: *model}}
stages:
  - {{name: seeds, rows_per_shard: 8}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: {samples}, groups_per_shard: {groups}}}
  - {{name: validity}}
  - {{name: heuristics}}
  - {{name: verify}}
  - {{name: self_consistency, model: judge, samples: 3}}
  - {{name: llm_judge, model: judge}}
  - {{name: enrich}}
"""


def _right_letter(prompt: str) -> str:
    """The letter of the hammer among the options the prompt lists."""
    for letter, text in re.findall(r"^\(?([A-J])[).:] (.*)$", prompt, re.MULTILINE):
        if RIGHT in text:
            return letter
    return "A"


class Responder:
    """Distinct multiple-choice items for generate; agreeing answers and passing grades for
    the judges; a few sentences for enrich."""

    def __call__(self, body: dict) -> str:
        schema = requested_schema(body) or {}
        required = list(schema.get("required", []))
        prompt = body["messages"][-1]["content"]
        if "question" in required:
            k = xxhash.xxh3_64_intdigest(f"{prompt}|{body.get('seed')}".encode()) % 10**6
            n = schema["properties"]["choices"].get("minItems", 4)
            question = (f"{NAMES[k % 10]} needs to {JOBS[k % 6]} {PLACES[(k // 6) % 6]} "
                        f"before visitor number {k} arrives. Which item should "
                        f"{NAMES[k % 10]} pick up first?")
            choices = [RIGHT, *WRONG][:n]
            return json.dumps({"question": question, "choices": choices, "answer_index": 0})
        out: dict = {}
        for name in required:
            prop = schema["properties"].get(name, {})
            if name == "answer":
                out[name] = _right_letter(prompt) if prop.get("enum") or prop.get(
                    "pattern") else RIGHT
            elif prop.get("type") == "integer":
                out[name] = prop.get("maximum", 5)
            else:
                out[name] = ("A hammer drives nails and knocks parts into place, so it is "
                             "the tool for a loose nail or a wobbly shelf; the other items "
                             "are soft or fragile and cannot do that work.")
        return json.dumps(out)


def workspace(root: Path) -> None:
    for t, name in enumerate(["tools_a", "tools_b", "tools_c"]):
        rows = [{"q": f"{NAMES[(i + t) % 10]} wants to {JOBS[i % 6]} {PLACES[(i + t) % 6]}. "
                      "Which item helps most?",
                 "c": [RIGHT, *WRONG[:3]], "a": RIGHT} for i in range(16)]
        write_task(root, name, "multiple_choice", rows, "{question: q, choices: c, answer: a}")


def committed(run: Path) -> list[str]:
    folder = run / "stages" / "09-enrich"
    return sorted(r.id for p in folder.glob("part-*.parquet") for r in read_parquet(p, Record))


def measure(args: argparse.Namespace, workers: int, stream: bool) -> dict:
    root = Path(tempfile.mkdtemp(prefix="streambench-"))
    workspace(root)
    capacity = Capacity(args.slots, args.seconds_per_token)
    with FakeOpenAIServer(responder=Responder(), capacity=capacity, record=False) as server:
        config = root / "pipe.yaml"
        config.write_text(PIPE.format(url=server.base_url, workers=workers, run=root / "run",
                                      stream=str(stream).lower(), groups=args.groups,
                                      samples=args.samples, units=args.units_per_worker,
                                      concurrency=max(1, args.slots // workers)))
        start = time.perf_counter()
        run_pipeline(config, progress=lambda line: None)
        wall = time.perf_counter() - start
        stats = server.clock_stats()
    return {"workers": workers, "stream": stream, "wall_s": wall, **stats,
            "records": committed(root / "run")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--seconds-per-token", type=float, default=0.02)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--units-per-worker", type=int, default=8)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"server: {args.slots} slots, {args.seconds_per_token * 1000:g} ms per output token")
    print("| workers | mode | requests | wall s | server busy | records |")
    print("|---:|---|---:|---:|---:|---:|")
    for workers in args.workers:
        rows = [measure(args, workers, stream) for stream in (False, True)]
        for row in rows:
            mode = "streamed" if row["stream"] else "stage by stage (baseline)"
            print(f"| {workers} | {mode} | {row['served']} | {row['wall_s']:.1f} | "
                  f"{row['busy_share']:.1%} | {len(row['records'])} |")
        if rows[0]["records"] != rows[1]["records"]:
            print(f"DIFFERENT RECORDS with {workers} workers", flush=True)


if __name__ == "__main__":
    main()
