"""Managed model servers for a job: which models have one, how many GPUs they need, and the
`serving()` block that starts them on this node and stops them at its end."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from taskseed.config.pipeline import LoadedConfig
from taskseed.curation.errors import TaskseedError
from taskseed.generation.backends.base import BackendConfig
from taskseed.generation.servers.managed import (
    ManagedServer,
    ServerConfig,
    TPLaunch,
    tensor_parallel_launch,
)

TEACHER = "teacher"


def model_config(loaded: LoadedConfig, name: str) -> BackendConfig | None:
    """The config of a named model: `teacher` or a key of `models:` (None: unknown)."""
    return loaded.config.teacher if name == TEACHER else loaded.config.models.get(name)


def slurm_launch(cfg: BackendConfig | None, gpus_per_node: int | None) -> TPLaunch | None:
    """How a Slurm job starts a TensorRT-LLM model with tensor parallelism above 1 (an
    in-process one or a managed trtllm-serve): under `trtllm-llmapi-launch`, on as many
    nodes of `gpus_per_node` GPUs as it needs (None: one node). None for everything else."""
    if cfg is None:
        return None
    server = cfg.managed_server()
    if server is not None:
        tp = server.gpus() if server.launch == "trtllm-serve" else 0
    else:
        tp = cfg.in_process_gpus()
    return tensor_parallel_launch(tp, gpus_per_node) if tp > 1 else None


def script_served(cfg: BackendConfig | None) -> ServerConfig | None:
    """A managed server the Slurm job script starts itself, as its own step under the
    launcher (a trtllm-serve with tensor parallelism above 1): the task's own process,
    maybe inside a container, cannot start an `srun` step."""
    server = cfg.managed_server() if cfg is not None else None
    if server is not None and server.launch == "trtllm-serve" and server.gpus() > 1:
        return server
    return None


def model_gpus(cfg: BackendConfig | None, gpus_per_node: int | None = None) -> int:
    """GPUs one node needs for a model config.

    `tensor_parallel_size` of an in-process TensorRT-LLM model or of a managed server
    (llama-cpp: 0); 0 for remote endpoints and the embedded CPU model. With `gpus_per_node`,
    a model larger than a node counts its share per node.
    """
    spanning = slurm_launch(cfg, gpus_per_node)
    if spanning is not None:
        return spanning.ntasks_per_node
    if cfg is None:
        return 0
    server = cfg.managed_server()
    return server.gpus() if server is not None else cfg.in_process_gpus()


def managed_models(loaded: LoadedConfig) -> dict[str, ServerConfig]:
    """`teacher` and the `models:` keys whose config has a `server`, teacher first."""
    names = [TEACHER, *loaded.config.models]
    configs = {name: model_config(loaded, name) for name in names}
    return {name: cfg.managed_server() for name, cfg in configs.items()
            if cfg is not None and cfg.managed_server() is not None}


def with_base_urls(loaded: LoadedConfig, urls: dict[str, str]) -> LoadedConfig:
    """A copy of `loaded` whose named models point at `urls` (hash and resolved unchanged)."""
    config = loaded.config
    update: dict[str, Any] = {}
    if TEACHER in urls:
        update["teacher"] = config.teacher.served_at(urls[TEACHER])
    if urls.keys() & config.models.keys():
        update["models"] = {name: cfg.served_at(urls[name]) if name in urls else cfg
                            for name, cfg in config.models.items()}
    return dataclasses.replace(loaded, config=config.model_copy(update=update))


def place_on_gpus(servers: dict[str, ServerConfig], visible: str | None,
                  gpus_per_node: int | None = None) -> dict[str, ServerConfig]:
    """The servers ready for this node.

    With `gpus_per_node`, a trtllm-serve larger than one node gets TensorRT-LLM's
    multi-node launcher (unless it has one; a Slurm job script normally starts such a server
    itself, see `script_served`). When two or more single-node servers use
    GPUs, each gets its own `CUDA_VISIBLE_DEVICES` slice of `visible` (the job's list;
    None: devices 0..n-1); a server whose `env` sets CUDA_VISIBLE_DEVICES is left alone.
    """
    out = dict(servers)
    if gpus_per_node:
        for name, server in servers.items():
            if server.gpus() <= gpus_per_node:
                continue
            if server.launch != "trtllm-serve":
                raise TaskseedError(f"{name}: a {server.launch} server with tensor_parallel_size "
                                    f"{server.gpus()} does not fit one node of {gpus_per_node} "
                                    "GPUs; only trtllm-serve spans nodes here")
            if not server.launcher:
                plan = tensor_parallel_launch(server.gpus(), gpus_per_node)
                out[name] = server.model_copy(update={"launcher": plan.launcher()})
    shared = [name for name, server in out.items() if server.gpus() > 0
              and not server.launcher and "CUDA_VISIBLE_DEVICES" not in server.env]
    if len(shared) < 2:
        return out
    needed = sum(out[name].gpus() for name in shared)
    devices = ([d.strip() for d in visible.split(",") if d.strip()] if visible
               else [str(i) for i in range(needed)])
    if len(devices) < needed:
        wants = ", ".join(f"{name} {out[name].gpus()}" for name in shared)
        raise TaskseedError(f"managed servers need {needed} GPUs on this node ({wants}) but "
                            f"CUDA_VISIBLE_DEVICES lists {len(devices)}")
    start = 0
    for name in shared:
        server = out[name]
        ids = ",".join(devices[start:start + server.gpus()])
        start += server.gpus()
        out[name] = server.model_copy(update={"env": {**server.env, "CUDA_VISIBLE_DEVICES": ids}})
    return out


@contextmanager
def serving(loaded: LoadedConfig, names: set[str], log_dir: Path, *,
            gpus_per_node: int | None = None) -> Iterator[LoadedConfig]:
    """Start the managed servers of `names` on this node and yield `loaded` pointing at them.

    Each server logs to `log_dir/server-<name>-<host>.log`. All are launched first, then
    awaited; every one is stopped when the block ends, also on errors and Ctrl-C. With no
    managed model among `names`, `loaded` itself is yielded and nothing starts.
    """
    wanted = {name: server for name, server in managed_models(loaded).items() if name in names}
    if not wanted:
        yield loaded
        return
    started = {name: url for name in wanted if (url := os.environ.get(server_env(name)))}
    for name, url in started.items():
        wait_for_script_server(name, wanted.pop(name), url, Path(log_dir))
    if not wanted:
        yield with_base_urls(loaded, started)
        return
    shared = shared_servers(loaded, wanted)
    placed = place_on_gpus({name: wanted[name] for name in shared},
                           os.environ.get("CUDA_VISIBLE_DEVICES"), gpus_per_node)
    host = socket.gethostname()
    with ExitStack() as stack:
        running: dict[str, ManagedServer] = {}
        for name, server in placed.items():
            managed = ManagedServer(server, model_config(loaded, name).model,
                                    Path(log_dir) / f"server-{name}-{host}.log")
            stack.callback(_stop, name, managed)
            running[name] = managed
            managed.launch()
        for name, managed in running.items():
            seconds = managed.wait_healthy()
            users = ", ".join(shared[name])
            print(f"[serve] {users}: {managed.cfg.launch} on {managed.base_url} "
                  f"healthy after {seconds:.1f} s", flush=True)
        urls = {user: running[name].base_url for name, users in shared.items() for user in users}
        yield with_base_urls(loaded, {**started, **urls})


SERVER_ENV = "TASKSEED_SERVER_{}_URL"


def server_env(name: str) -> str:
    """The variable through which a job script hands its task the URL of the server it
    started for model `name` (`TASKSEED_SERVER_TEACHER_URL`)."""
    return SERVER_ENV.format(name.upper().replace("-", "_"))


def wait_for_script_server(name: str, server: ServerConfig, base_url: str, log_dir: Path,
                           poll_s: float = 1.0) -> None:
    """Wait until the server a job script started answers its health check, at most its
    `startup_timeout_s`; else one line naming the server's log."""
    from taskseed.generation.servers.managed import answers

    health = base_url.removesuffix("/v1") + server.health()
    deadline = time.monotonic() + server.startup_timeout_s
    while not answers(health):
        if time.monotonic() >= deadline:
            job = os.environ.get("SLURM_JOB_ID", "")
            raise TaskseedError(
                f"{name}: the {server.launch} server this job started was not healthy at "
                f"{health} within {server.startup_timeout_s:g} s (log: "
                f"{log_dir / f'server-{name}-{job}.log'})")
        time.sleep(poll_s)
    print(f"[serve] {name}: {server.launch} started by the job script, healthy at {base_url}",
          flush=True)


def shared_servers(loaded: LoadedConfig, wanted: dict[str, ServerConfig]) -> dict[str, list[str]]:
    """Models with the same server config and served name share one server: the first such
    model's name -> every model it serves (a teacher and a judge on one llama-server)."""
    owners: dict[tuple[str, str], str] = {}
    shared: dict[str, list[str]] = {}
    for name, server in wanted.items():
        key = (server.model_dump_json(), model_config(loaded, name).model)
        owner = owners.setdefault(key, name)
        shared.setdefault(owner, []).append(name)
    return shared


def _stop(name: str, managed: ManagedServer) -> None:
    was_running = managed.pid is not None
    managed.stop()
    if was_running:
        print(f"[serve] {name}: stopped {managed.cfg.launch} on {managed.base_url}", flush=True)
