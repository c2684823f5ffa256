"""An OpenAI-compatible teacher server started, watched and stopped by the job itself.

The command per launcher follows the upstream command-line definitions:

- `trtllm-serve`: NVIDIA/TensorRT-LLM `tensorrt_llm/commands/serve.py` (positional MODEL,
  `--host`, `--port`, `--tp_size`, `--extra_llm_api_options FILE`; there is no served-name
  flag: the server reports the checkpoint directory's name and answers whatever `model` a
  request names, see `tensorrt_llm/serve/openai_server.py`). Its `guided_decoding_backend`
  defaults to None, which ignores `response_format`, so the job writes an LLM-API options
  file (`tensorrt_llm/llmapi/llm_args.py` fields: `guided_decoding_backend: xgrammar` and
  `options`) and passes it. Health: `GET /health`.
- `vllm`: vllm-project/vllm `vllm/entrypoints/openai/cli_args.py` (`--host`, `--port`) and
  `vllm/engine/arg_utils.py` (`--served-model-name`, `--tensor-parallel-size`; `options`
  become its dashed flags, e.g. `trust_remote_code: true` is `--trust-remote-code`), run as
  `vllm serve MODEL`. Health: `GET /health`.
- `llama-server`: llama.cpp's own server, `tools/server` and `common/arg.cpp` (`-m`,
  `--alias`, `--host`, `--port`, `--parallel` slots decoded together by continuous
  batching, `--ctx-size` shared by the slots). Built portably by `taskseed native
  build-server`. Health: `GET /health`. It takes `response_format: {type: json_schema}`.
- `llama-cpp`: abetlen/llama-cpp-python `llama_cpp/server/settings.py` (`--model`,
  `--model_alias`, `--host`, `--port`; `--n_ctx` and others go in `args`). It has no
  `/health`; health is `GET /v1/models`.
- Tensor parallelism across nodes: TensorRT-LLM `examples/llm-api/llm_mgmn_trtllm_serve.sh`
  and `tensorrt_llm/llmapi/trtllm-llmapi-launch` (one MPI task per GPU started by
  `srun --mpi=pmix`, rank 0 runs the HTTP server). See `tensor_parallel_launch`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io import packaged_models
from taskseed.generation.backends.native import find_llama_server

Launch = Literal["trtllm-serve", "vllm", "llama-cpp", "llama-server", "command"]

HEALTH_PATHS: dict[str, str] = {
    "trtllm-serve": "/health",
    "vllm": "/health",
    "llama-cpp": "/v1/models",
    "llama-server": "/health",
    "command": "/v1/models",
}
CPU_LAUNCHES = ("llama-cpp", "llama-server")
PACKAGED_PREFIX = "packaged:"
PLACEHOLDERS = ("{port}", "{host}", "{checkpoint}", "{model}")
KILL_WAIT_S = 5.0  # how long stop() waits for a killed group to go
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ServerConfig(BaseModel):
    """How a job serves a model on its own node (`server:` of an `openai` model).

    `checkpoint` is what to serve: a Hugging Face checkpoint directory or hub name, a GGUF
    file for `llama-cpp` and `llama-server`, or `packaged:<name>` (a packaged model:
    `packaged:qwen2.5-coder-1.5b`, `packaged:smollm2`). `parallel` is llama-server's number
    of slots, the requests it decodes together.
    `command` (for `launch: command`) may use `{port}`, `{host}`, `{checkpoint}` and `{model}`.
    `launcher` is put before the command (e.g. `srun --mpi=pmix ... trtllm-llmapi-launch`).
    `options` are the engine's own settings: for `trtllm-serve` the LLM API's (written to the
    file given with `--extra_llm_api_options`, e.g. `kv_cache_config:
    {free_gpu_memory_fraction: 0.8}`, `max_batch_size`, `trust_remote_code`); for `vllm`,
    `llama-server` and `llama-cpp` its command-line flags without the dashes (`true` is a bare
    flag, `false` leaves it out).
    """

    model_config = ConfigDict(extra="forbid")

    launch: Launch
    checkpoint: str = Field(min_length=1)
    tensor_parallel_size: int = Field(1, ge=1)
    parallel: int = Field(1, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: a free port
    args: list[str] = Field(default_factory=list)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout_s: float = Field(1800, gt=0)
    health_path: str | None = None
    launcher: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ServerConfig:
        if self.launch == "command" and not self.command:
            raise ValueError("`launch: command` needs `command` (the server's command line)")
        if self.launch != "command" and self.command is not None:
            raise ValueError(f"`command` is only for `launch: command`, not {self.launch}")
        if self.launch in CPU_LAUNCHES and self.tensor_parallel_size != 1:
            raise ValueError(f"{self.launch} has no tensor parallelism: "
                             "tensor_parallel_size is 1")
        if self.parallel != 1 and self.launch != "llama-server":
            raise ValueError(f"`parallel` (slots) is a llama-server setting, not {self.launch}'s")
        if self.options and self.launch == "command":
            raise ValueError("`options` are for a known launcher; with `launch: command` put "
                             "them in `command`")
        if self.health_path is not None and not self.health_path.startswith("/"):
            raise ValueError(f"health_path must start with '/': {self.health_path!r}")
        if self.checkpoint.startswith(PACKAGED_PREFIX):
            name = self.checkpoint.removeprefix(PACKAGED_PREFIX)
            if name not in packaged_models.MODELS:
                raise ValueError(f"unknown packaged model '{name}' "
                                 f"(known: {', '.join(sorted(packaged_models.MODELS))})")
        return self

    def health(self) -> str:
        """The path polled until the server answers 200."""
        return self.health_path or HEALTH_PATHS[self.launch]

    def gpus(self) -> int:
        """GPUs the server takes (llama-cpp and llama-server here are CPU servers: 0)."""
        return 0 if self.launch in CPU_LAUNCHES else self.tensor_parallel_size

    def resolved_checkpoint(self) -> str:
        """The checkpoint as the server takes it (`packaged:<name>` becomes a file path)."""
        if self.checkpoint.startswith(PACKAGED_PREFIX):
            return str(packaged_models.model_path(self.checkpoint.removeprefix(PACKAGED_PREFIX)))
        return self.checkpoint


GUIDED_DECODING = {"guided_decoding_backend": "xgrammar"}


def llm_api_options(cfg: ServerConfig) -> dict[str, Any]:
    """What a trtllm-serve's `--extra_llm_api_options` file holds: guided decoding by
    xgrammar (so that `response_format` is enforced) and the config's `options` over it."""
    return {**GUIDED_DECODING, **cfg.options}


def write_llm_api_options(cfg: ServerConfig, path: Path) -> Path:
    """Write `llm_api_options(cfg)` as YAML to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(llm_api_options(cfg), sort_keys=True))
    return path


def option_flags(options: dict[str, Any], dashed: bool) -> list[str]:
    """`{trust_remote_code: true, max_num_seqs: 64}` as `--trust-remote-code --max-num-seqs
    64` (`dashed`) or with the underscores kept; `false` and None leave a flag out."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + (key.replace("_", "-") if dashed else key)
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


def server_command(cfg: ServerConfig, served_name: str, port: int | str,
                   options_file: Path | str | None = None) -> list[str]:
    """The exact command line that serves `cfg.checkpoint` as model `served_name` on `port`;
    a trtllm-serve takes its LLM-API options from `options_file` (see `llm_api_options`).
    A job script passes shell variables (`$port_teacher`) for both."""
    checkpoint = cfg.resolved_checkpoint()
    host, tp = cfg.host, str(cfg.tensor_parallel_size)
    if cfg.launch == "trtllm-serve":
        body = ["trtllm-serve", checkpoint, "--host", host, "--port", str(port), "--tp_size", tp]
        if options_file is not None:
            body += ["--extra_llm_api_options", str(options_file)]
    elif cfg.launch == "vllm":
        body = ["vllm", "serve", checkpoint, "--served-model-name", served_name,
                "--host", host, "--port", str(port), "--tensor-parallel-size", tp]
    elif cfg.launch == "llama-server":
        body = [str(find_llama_server()), "-m", checkpoint, "--alias", served_name,
                "--host", host, "--port", str(port), "--parallel", str(cfg.parallel),
                "--no-webui"]
    elif cfg.launch == "llama-cpp":
        body = [sys.executable, "-m", "llama_cpp.server", "--model", checkpoint,
                "--model_alias", served_name, "--host", host, "--port", str(port)]
    else:
        values = dict(zip(PLACEHOLDERS, (str(port), host, checkpoint, served_name), strict=True))
        body = [_fill(part, values) for part in cfg.command or []]
    if cfg.launch != "trtllm-serve":
        body += option_flags(cfg.options, dashed=cfg.launch != "llama-cpp")
    return [*cfg.launcher, *body, *cfg.args]


def _fill(part: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        part = part.replace(key, value)
    return part


@dataclass(frozen=True, slots=True)
class TPLaunch:
    """How a Slurm job starts one tensor-parallel TensorRT-LLM model: one MPI task per GPU
    under `srun --mpi=pmix ... trtllm-llmapi-launch` (rank 0 runs the program or the HTTP
    server, the others serve it), on one node or several.

    TensorRT-LLM's own Slurm examples (`examples/llm-api/llm_mgmn_*.sh`) start every
    multi-GPU model this way, on one node too; without the launcher the LLM spawns its
    ranks through mpi4py inside the job, which Slurm's MPI set-up does not allow.
    """

    tensor_parallel_size: int
    nodes: int
    ntasks_per_node: int

    @property
    def ntasks(self) -> int:
        return self.nodes * self.ntasks_per_node

    def launcher(self, cpus_per_task: int | None = None,
                 srun_options: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The launcher prefix. `--cpus-per-task` is always explicit: since Slurm 23.11 srun
        inherits the job's `--cpus-per-task` (SRUN_CPUS_PER_TASK), which a step of one
        task per GPU multiplies past what the node has."""
        words = ["srun", "--overlap", "--mpi=pmix", f"--nodes={self.nodes}",
                 f"--ntasks={self.ntasks}", f"--ntasks-per-node={self.ntasks_per_node}"]
        if cpus_per_task:
            words.append(f"--cpus-per-task={cpus_per_task}")
        return [*words, *srun_options, "trtllm-llmapi-launch"]


def tensor_parallel_launch(tp: int, gpus_per_node: int | None) -> TPLaunch:
    """Nodes and tasks per node for tensor parallelism `tp` (`gpus_per_node` None: one node).

    The MPI world size must equal `tp` (TensorRT-LLM's multi-node `trtllm-serve` example):
    the fewest nodes that hold `tp` GPUs with the same number of tasks on each node.
    """
    if tp < 1 or (gpus_per_node is not None and gpus_per_node < 1):
        raise TaskseedError(f"tensor parallelism needs tp >= 1 and gpus_per_node >= 1 "
                            f"(got tp={tp}, gpus_per_node={gpus_per_node})")
    if gpus_per_node is None or tp <= gpus_per_node:
        return TPLaunch(tp, 1, tp)
    nodes = math.ceil(tp / gpus_per_node)
    while tp % nodes:
        nodes += 1
    return TPLaunch(tp, nodes, tp // nodes)


def free_port(host: str) -> int:
    """A TCP port free on `host` now."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.bind(address)
        return int(sock.getsockname()[1])


def connect_host(host: str) -> str:
    """Where this node reaches a server bound to `host` (wildcards mean loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when `GET url` returns HTTP 200 (proxies are bypassed)."""
    try:
        with _NO_PROXY.open(url, timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` runs (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _wait_group(pgid: int, deadline: float) -> bool:
    """Wait until group `pgid` has no running process or `deadline`; True when it is gone."""
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class ManagedServer:
    """One server subprocess: `start()` launches it and waits until it is healthy,
    `stop()` ends its whole process group (SIGTERM, then SIGKILL after `stop_timeout_s`).

    Use it as a context manager; a failed start stops what it launched before raising a
    one-line `TaskseedError`. Output goes to `log_path` (appended).
    """

    def __init__(self, cfg: ServerConfig, served_name: str, log_path: Path,
                 stop_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.served_name = served_name
        self.log_path = Path(log_path)
        self.stop_timeout_s = stop_timeout_s
        self.port = cfg.port
        self.command: list[str] = []
        self.healthy_after_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._started = 0.0

    @property
    def base_url(self) -> str:
        """The OpenAI API root, `http://host:port/v1`."""
        return f"http://{_url_host(connect_host(self.cfg.host))}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{_url_host(connect_host(self.cfg.host))}:{self.port}{self.cfg.health()}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> ManagedServer:
        """Launch the server and wait until it is healthy."""
        self.launch()
        self.wait_healthy()
        return self

    def launch(self) -> None:
        """Start the subprocess in its own process group (no waiting)."""
        if self._proc is not None:
            raise RuntimeError("this server was already started")
        self.port = self.cfg.port or free_port(self.cfg.host)
        options_file = None
        if self.cfg.launch == "trtllm-serve":
            options_file = write_llm_api_options(
                self.cfg, self.log_path.with_name(f"{self.log_path.stem}.llm-api.yaml"))
        self.command = server_command(self.cfg, self.served_name, self.port, options_file)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"[serve] $ {shlex.join(self.command)}\n".encode())
        self._log.flush()
        self._log_start = self._log.tell()
        self._started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT, env={**os.environ, **self.cfg.env},
                start_new_session=True)
        except OSError as exc:
            self._close_log()
            raise TaskseedError(f"{self.cfg.launch} server `{shlex.join(self.command)}` "
                                f"could not start: {exc.strerror or exc}") from None

    def wait_healthy(self) -> float:
        """Poll the health URL until HTTP 200; return the seconds since launch.

        A server that exits first, or is not healthy within `startup_timeout_s`, is stopped
        and reported as a one-line TaskseedError.
        """
        proc = self._proc
        if proc is None:
            raise RuntimeError("launch() the server first")
        try:
            deadline = self._started + self.cfg.startup_timeout_s
            delay = 0.1
            while True:
                code = proc.poll()
                if code is not None:
                    raise TaskseedError(self._failure(_exit_text(code)))
                if answers(self.health_url):
                    self.healthy_after_s = time.monotonic() - self._started
                    return self.healthy_after_s
                if time.monotonic() >= deadline:
                    message = self._failure(f"was not healthy at {self.health_url} within "
                                            f"{self.cfg.startup_timeout_s:g} s (stopped)")
                    raise TaskseedError(message)
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 1.5, 1.0)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the server's process group; a no-op when it is not running."""
        proc = self._proc
        if proc is None:
            return
        try:
            deadline = time.monotonic() + self.stop_timeout_s
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout_s)
            if proc.poll() is None or not _wait_group(proc.pid, deadline):
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
                _wait_group(proc.pid, time.monotonic() + KILL_WAIT_S)
        finally:
            self._proc = None
            self._close_log()

    def last_log_line(self) -> str:
        """The last non-empty line this server wrote (ANSI colours removed)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(self._log_start, os.fstat(log.fileno()).st_size - 65536))
                tail = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [_ANSI.sub("", line).strip() for line in tail.splitlines()]
        lines = [line for line in lines if line]
        return lines[-1][:300] if lines else ""

    def _failure(self, what: str) -> str:
        last = self.last_log_line()
        said = f"last log line: {last}" if last else "no output"
        return (f"{self.cfg.launch} server `{shlex.join(self.command)}` {what}; {said} "
                f"(log: {self.log_path})")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name} before it was healthy"
    return f"exited with code {code} before it was healthy"
