"""Check a GPU install: run what can run here, say what was skipped and why.

1. cuDF: normalize, exact dedup and fuzzy dedup on real ARC-Easy training rows, once on the
   pandas backend and once on cuDF (dask-cuda), and compare the kept and dropped record ids
   of each stage (the same clusters on both).
2. A managed server (`--server trtllm-serve|vllm` with `--checkpoint`): start it as a run
   does (for trtllm-serve with the guided-decoding options file), check its health, send one
   request constrained by a JSON schema and check the reply follows it.
3. TensorRT-LLM in process (`--in-process-checkpoint`): load it and send one constrained
   request.

    python benchmarks/gpu_smoke.py [--server trtllm-serve --checkpoint /models/ckpt]
        [--in-process-checkpoint /models/ckpt] [--rows 2000]

Exit code 1 when a check that ran failed; skipped checks do not fail it.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Record, Reject, Sampling
from taskseed.generation.backends.base import TeacherRequest

from taskseed.rundir.layout import RunDir

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "seeds"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}},
          "required": ["answer"], "additionalProperties": False}
QUESTION = [{"role": "user", "content": "What is 17 + 25? Reply in JSON with \"answer\"."}]


def say(status: str, what: str) -> None:
    print(f"{status:<7} {what}", flush=True)


def dedup_config(folder: Path, backend: str, rows: int) -> Path:
    config = {
        "name": f"smoke-{backend}", "run_dir": str(folder / backend),
        "seeds_root": str(SHARED), "tasks": [str(REPO / "configs/tasks/arc_easy.yaml")],
        "executor": {"workers": 2, "backend": backend},
        "stages": [{"name": "seeds", "max_per_task": rows, "rows_per_shard": 500},
                   {"name": "normalize"}, {"name": "exact_dedup", "shards": 2},
                   {"name": "fuzzy_dedup", "shards": 2}],
    }
    path = folder / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def reject_id(reject: Reject) -> str:
    return f"{reject.reason}:{reject.item_id}"


def kept_and_dropped(run: Path) -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for _, name, stage in RunDir(run).stage_dirs():
        kept: list[str] = []
        dropped: list[str] = []
        for shard in stage.done_shards():
            kept += [r.id for r in stage.read_shard(shard, Record)]
            dropped += [reject_id(r) for r in stage.read_rejects(shard)]
        out[name] = (sorted(kept), sorted(dropped))
    return out


def check_cudf(rows: int) -> bool | None:
    if importlib.util.find_spec("cudf") is None or importlib.util.find_spec("dask_cuda") is None:
        say("skipped", "cuDF dedup vs pandas: cuDF or dask-cuda is not installed "
                       "(pip install 'taskseed[gpu]')")
        return None
    if not SHARED.is_dir():
        say("skipped", f"cuDF dedup vs pandas: no seeds at {SHARED}")
        return None
    from taskseed.execution.run import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {}
        for backend in ("pandas", "cudf"):
            start = time.perf_counter()
            run_pipeline(dedup_config(folder, backend, rows), progress=lambda _: None)
            results[backend] = kept_and_dropped(folder / backend)
            print(f"        {backend}: {time.perf_counter() - start:.1f} s", flush=True)
    same = results["pandas"] == results["cudf"]
    for stage, (kept, dropped) in results["pandas"].items():
        match = results["cudf"].get(stage) == (kept, dropped)
        print(f"        {stage}: {len(kept)} kept, {len(dropped)} dropped on pandas; cuDF "
              f"{'the same' if match else 'DIFFERS'}", flush=True)
    say("ok" if same else "FAILED", f"cuDF normalize, exact and fuzzy dedup equal pandas on "
                                    f"{rows} ARC-Easy rows")
    return same


def constrained(reply_text: str) -> bool:
    """The reply is JSON that follows SCHEMA (a right answer is 42; a stand-in says 0)."""
    import json

    from taskseed.generation.backends.replies import schema_error

    try:
        return schema_error(json.loads(reply_text), SCHEMA) is None
    except ValueError:
        return False


def check_server(launch: str | None, checkpoint: str | None) -> bool | None:
    from taskseed.generation.backends.openai import OpenAIConfig
    from taskseed.generation.servers.managed import ManagedServer, ServerConfig

    if not launch or not checkpoint:
        say("skipped", "managed server: give --server trtllm-serve|vllm and --checkpoint")
        return None
    executable = "trtllm-serve" if launch == "trtllm-serve" else "vllm"
    if shutil.which(executable) is None:
        say("skipped", f"managed server: `{executable}` is not on PATH")
        return None
    server = ServerConfig(launch=launch, checkpoint=checkpoint, startup_timeout_s=3600)
    cfg = OpenAIConfig(model=Path(checkpoint).name, server=server, timeout_s=600)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with ManagedServer(server, cfg.model, Path(tmp) / "server.log") as running:
                say("ok", f"{launch} healthy after {running.healthy_after_s:.0f} s at "
                          f"{running.health_url}")
                teacher = cfg.served_at(running.base_url).build()
                try:
                    [reply] = teacher.generate([TeacherRequest(
                        QUESTION, Sampling(temperature=0.0, max_tokens=32), SCHEMA)])
                finally:
                    teacher.close()
        except TaskseedError as err:
            say("FAILED", f"{launch}: {err}")
            return False
    good = reply.ok and constrained(reply.text)
    say("ok" if good else "FAILED", f"{launch}: one request in {cfg.structured_output} form "
                                    f"answered {reply.text[:80]!r} ({reply.error or 'no error'})")
    return good


def check_in_process(checkpoint: str | None) -> bool | None:
    from taskseed.generation.backends.tensorrt_llm import TensorRTLLMConfig

    if not checkpoint:
        say("skipped", "TensorRT-LLM in process: give --in-process-checkpoint")
        return None
    if importlib.util.find_spec("tensorrt_llm") is None:
        say("skipped", "TensorRT-LLM in process: tensorrt_llm is not installed")
        return None
    try:
        teacher = TensorRTLLMConfig(model=checkpoint).build()
    except Exception as err:  # noqa: BLE001 - reported, not raised
        say("FAILED", f"TensorRT-LLM in process: {str(err).splitlines()[0][:200]}")
        return False
    try:
        [reply] = teacher.generate([TeacherRequest(
            QUESTION, Sampling(temperature=0.0, max_tokens=32), SCHEMA)])
    finally:
        teacher.close()
    good = reply.ok and constrained(reply.text)
    say("ok" if good else "FAILED", f"TensorRT-LLM in process answered {reply.text[:80]!r}")
    return good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--server", choices=["trtllm-serve", "vllm"])
    parser.add_argument("--checkpoint")
    parser.add_argument("--in-process-checkpoint")
    args = parser.parse_args(argv)
    results = [check_cudf(args.rows), check_server(args.server, args.checkpoint),
               check_in_process(args.in_process_checkpoint)]
    ran = [r for r in results if r is not None]
    print(f"{len(ran)} checked, {results.count(None)} skipped, {ran.count(False)} failed")
    return 1 if False in ran else 0


if __name__ == "__main__":
    sys.exit(main())
