"""A stand-in `trtllm-serve` for machines without TensorRT-LLM: the same command line, the
same structured-output rules, answers from the loopback fake server.

What it refuses or mishandles as the real server does (TensorRT-LLM 1.2,
`tensorrt_llm/commands/serve.py`, `tensorrt_llm/serve/openai_protocol.py`):

- An option `trtllm-serve` does not have ends it with exit code 2, as click does.
- Without `guided_decoding_backend` in the `--extra_llm_api_options` file, `response_format`
  is ignored and the reply is free text.
- With it, `{"type": "json", "schema": S}` is followed; a `json_schema` request's whole
  `{name, schema, strict}` wrapper is taken as the schema (the 1.2-era reading), so the
  reply does not follow the schema the client meant.
- `--tp_size` above the GPUs in `TASKSEED_STANDIN_GPUS` (default 1) fails at start.

Run as ``python -m taskseed.generation.servers.trtllm_standin MODEL --port 8000 ...``; tests
put a `trtllm-serve` script that runs it on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import Any

import orjson
import yaml
from taskseed.generation.servers.fake import FakeOpenAIServer, instance_for, last_user_message

GPUS_ENV = "TASKSEED_STANDIN_GPUS"


class _ClickLikeParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # click's usage error: exit code 2
        print(f"Error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    """The options of `trtllm-serve` this project passes, plus the common engine flags."""
    p = _ClickLikeParser(prog="trtllm-serve")
    p.add_argument("model")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tp_size", type=int, default=1)
    p.add_argument("--pp_size", type=int, default=1)
    p.add_argument("--backend", default="pytorch")
    p.add_argument("--max_batch_size", type=int)
    p.add_argument("--max_num_tokens", type=int)
    p.add_argument("--kv_cache_free_gpu_memory_fraction", type=float)
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--extra_llm_api_options")
    return p


def responder(options: dict[str, Any]) -> Any:
    """The reply text for a request body under these LLM-API options."""
    guided = options.get("guided_decoding_backend")

    def reply(body: dict[str, Any]) -> str:
        fmt = body.get("response_format")
        question = last_user_message(body)
        if not guided or not isinstance(fmt, dict):
            return f"Sure! Here is an answer to: {question[:60]}"
        if fmt.get("type") == "json" and isinstance(fmt.get("schema"), dict):
            return orjson.dumps(instance_for(fmt["schema"], question)).decode()
        if fmt.get("type") == "json_schema":
            wrapper = fmt.get("json_schema") or {}
            return orjson.dumps(instance_for({"type": "object", "properties": {
                key: {"type": "string"} for key in wrapper}, "required": list(wrapper)},
                question)).decode()
        return f"Sure! Here is an answer to: {question[:60]}"

    return reply


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    options: dict[str, Any] = {}
    if args.extra_llm_api_options:
        with open(args.extra_llm_api_options) as handle:
            options = yaml.safe_load(handle) or {}
    gpus = int(os.environ.get(GPUS_ENV, "1"))
    if args.tp_size > gpus:
        print(f"RuntimeError: tp_size {args.tp_size} needs {args.tp_size} GPUs, "
              f"{gpus} visible", file=sys.stderr)
        raise SystemExit(1)
    server = FakeOpenAIServer(host=args.host, port=args.port, record=False,
                              responder=responder(options))
    print(f"[TensorRT-LLM stand-in] options: {options}", flush=True)

    async def serve() -> None:
        await server.start()
        print(f"Started server at {server.base_url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
