"""Managed teacher servers: commands per launcher, lifecycle, fingerprints and `serving()`.

Lifecycle tests run real subprocesses: Python's own `http.server` (a server that gets
healthy at once), commands that exit or hang, and llama-cpp-python's OpenAI server with the
packaged SmolLM2 model (slow).
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest
from taskseed.curation.errors import ConfigError, TaskseedError
from taskseed.curation.io.yamlconf import validate
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.embedded import EmbeddedConfig, packaged_model_path
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.reward import NIMRewardConfig, TensorRTLLMRewardConfig
from taskseed.generation.backends.tensorrt_llm import TensorRTLLMConfig
from taskseed.generation.servers.managed import (
    ManagedServer,
    ServerConfig,
    server_command,
    tensor_parallel_launch,
)
from taskseed.generation.stages.generate import GenerateParams, GenerateStage
from workspace import write_task

from taskseed.config.pipeline import load_config
from taskseed.execution.serving import managed_models, model_gpus, place_on_gpus, serving

PY = sys.executable
HTTP_SERVER = [PY, "-m", "http.server", "{port}", "--bind", "{host}"]


def gone(pgid: int) -> bool:
    """True when no live process (zombies aside) is left in process group `pgid`."""
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        state, _, group = stat[stat.rfind(")") + 2:].split()[:3]
        if proc.name.isdigit() and group == str(pgid) and state not in "ZX":
            return False
    return True


def running_with(*args: str) -> list[int]:
    """Pids of live processes whose command line holds `args` in a row."""
    needle = "\0".join(args).encode() + b"\0"
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and needle in cmdline:
            pids.append(int(proc.name))
    return pids


def logged_port(log: Path) -> int:
    return int(re.search(r"(?:http\.server|--port) (\d+)", log.read_text()).group(1))


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def command_server(command: list[str], **over) -> ServerConfig:
    return ServerConfig(launch="command", checkpoint="ckpt", command=command, **over)


# --- commands per launcher ---------------------------------------------------------------


def test_trtllm_serve_command_uses_its_flags_and_the_launcher_prefix() -> None:
    cfg = ServerConfig(launch="trtllm-serve", checkpoint="/ckpt/Llama-3.1-8B",
                       tensor_parallel_size=2, host="0.0.0.0", args=["--max_batch_size", "512"],
                       launcher=["trtllm-llmapi-launch"])
    assert server_command(cfg, "teacher-model", 8123) == [
        "trtllm-llmapi-launch", "trtllm-serve", "/ckpt/Llama-3.1-8B", "--host", "0.0.0.0",
        "--port", "8123", "--tp_size", "2", "--max_batch_size", "512"]
    assert cfg.health() == "/health" and cfg.gpus() == 2


def test_vllm_command_serves_the_requested_model_name() -> None:
    cfg = ServerConfig(launch="vllm", checkpoint="Qwen/Qwen2.5-7B-Instruct",
                       tensor_parallel_size=2, args=["--max-model-len", "8192"])
    assert server_command(cfg, "qwen", 9000) == [
        "vllm", "serve", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen",
        "--host", "127.0.0.1", "--port", "9000", "--tensor-parallel-size", "2",
        "--max-model-len", "8192"]
    assert cfg.health() == "/health"


def test_llama_cpp_command_resolves_the_packaged_model() -> None:
    cfg = ServerConfig(launch="llama-cpp", checkpoint="packaged:smollm2", args=["--n_ctx", "2048"])
    assert server_command(cfg, "smol", 7000) == [
        PY, "-m", "llama_cpp.server", "--model", str(packaged_model_path()),
        "--model_alias", "smol", "--host", "127.0.0.1", "--port", "7000", "--n_ctx", "2048"]
    assert cfg.health() == "/v1/models" and cfg.gpus() == 0


def test_a_custom_command_fills_its_placeholders() -> None:
    cfg = command_server(["serve", "{checkpoint}", "--name={model}", "{host}:{port}", "{x}"],
                         health_path="/ready")
    assert server_command(cfg, "m", 5) == ["serve", "ckpt", "--name=m", "127.0.0.1:5", "{x}"]
    assert cfg.health() == "/ready"


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"launch": "command", "checkpoint": "c"}, "`launch: command` needs `command`"),
        ({"launch": "vllm", "checkpoint": "c", "command": ["x"]}, "`command` is only for"),
        ({"launch": "llama-cpp", "checkpoint": "c", "tensor_parallel_size": 2},
         "llama-cpp has no tensor parallelism"),
        ({"launch": "vllm", "checkpoint": "packaged:nope"}, "unknown packaged model 'nope'"),
        ({"launch": "sglang", "checkpoint": "c"}, "server.launch: Input should be"),
        ({"launch": "vllm", "checkpoint": "c", "gpus": 2}, "server.gpus: unknown key"),
    ],
)
def test_server_settings_are_checked(server: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(OpenAIConfig, {"model": "m", "server": server}, "pipe.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_openai_model_has_exactly_one_of_base_url_and_server() -> None:
    server = {"launch": "vllm", "checkpoint": "c"}
    with pytest.raises(ConfigError, match="base_url: Field required$"):
        validate(OpenAIConfig, {"model": "m"}, "pipe.yaml")
    with pytest.raises(ConfigError, match="not both$"):
        validate(OpenAIConfig, {"model": "m", "base_url": "http://x/v1", "server": server},
                 "pipe.yaml")
    cfg = validate(OpenAIConfig, {"model": "m", "server": server}, "pipe.yaml")
    assert cfg.base_url is None and "managed vllm server for c" in cfg.describe()
    with pytest.raises(TaskseedError, match="is not running"):
        cfg.build()


# --- fingerprints --------------------------------------------------------------------------


def test_the_fingerprint_is_the_same_whatever_port_or_node_serves_it() -> None:
    def fingerprint(cfg: OpenAIConfig) -> str:
        return GenerateStage(GenerateParams(), cfg).fingerprint()

    a = OpenAIConfig(model="m", server=ServerConfig(launch="vllm", checkpoint="ck", port=8000))
    b = OpenAIConfig(model="m", server=ServerConfig(launch="vllm", checkpoint="ck", port=9000,
                                                    host="0.0.0.0", tensor_parallel_size=4))
    served_a, served_b = a.served_at("http://node1:8000/v1"), b.served_at("http://node7:9000/v1")
    assert served_a.identity() == served_b.identity() == a.identity()
    assert "base_url" not in a.identity()
    assert a.identity()["server"] == {"launch": "vllm", "checkpoint": "ck"}
    assert len({fingerprint(c) for c in (a, b, served_a, served_b)}) == 1
    other = OpenAIConfig(model="m", server=ServerConfig(launch="vllm", checkpoint="other"))
    trtllm = OpenAIConfig(model="m", server=ServerConfig(launch="trtllm-serve", checkpoint="ck"))
    assert len({fingerprint(a), fingerprint(other), fingerprint(trtllm)}) == 3
    remote = OpenAIConfig(model="m", base_url="http://node1:8000/v1")
    assert "base_url" in remote.identity() and "server" not in remote.identity()


# --- tensor parallelism across nodes and GPUs per node ---------------------------------------


def test_tensor_parallel_launch_spans_nodes_as_trtllm_documents() -> None:
    one = tensor_parallel_launch(4, 8)  # one node: still under the launcher, as documented
    assert (one.nodes, one.ntasks_per_node) == (1, 4)
    assert one.launcher(4) == ["srun", "--overlap", "--mpi=pmix", "--nodes=1", "--ntasks=4",
                               "--ntasks-per-node=4", "--cpus-per-task=4",
                               "trtllm-llmapi-launch"]
    two = tensor_parallel_launch(16, 8)
    assert (two.nodes, two.ntasks_per_node, two.ntasks) == (2, 8, 16)
    assert two.launcher(srun_options=["--container-image=x"]) == [
        "srun", "--overlap", "--mpi=pmix", "--nodes=2", "--ntasks=16", "--ntasks-per-node=8",
        "--container-image=x", "trtllm-llmapi-launch"]
    assert tensor_parallel_launch(16, None).nodes == 1
    uneven = tensor_parallel_launch(12, 8)
    assert (uneven.nodes, uneven.ntasks_per_node) == (2, 6)
    odd = tensor_parallel_launch(9, 8)
    assert (odd.nodes, odd.ntasks_per_node) == (3, 3)
    with pytest.raises(TaskseedError, match="tp >= 1"):
        tensor_parallel_launch(0, 8)


def test_model_gpus_per_backend() -> None:
    def served(launch: str, tp: int = 1) -> OpenAIConfig:
        return OpenAIConfig(model="m", server=ServerConfig(
            launch=launch, checkpoint="c", tensor_parallel_size=tp))

    assert model_gpus(TensorRTLLMConfig(model="c", tensor_parallel_size=4)) == 4
    assert model_gpus(TensorRTLLMRewardConfig(model="c", tensor_parallel_size=2)) == 2
    assert model_gpus(served("vllm", 2)) == 2
    assert model_gpus(served("trtllm-serve", 16)) == 16
    assert model_gpus(served("trtllm-serve", 16), gpus_per_node=8) == 8
    assert model_gpus(served("llama-cpp")) == 0
    assert model_gpus(OpenAIConfig(model="m", base_url="http://x/v1")) == 0
    assert model_gpus(EmbeddedConfig(model="smollm2")) == 0
    assert model_gpus(NIMRewardConfig(base_url="http://x/v1", model="r")) == 0


def test_servers_sharing_a_node_get_their_own_gpus() -> None:
    servers = {"teacher": ServerConfig(launch="vllm", checkpoint="a", tensor_parallel_size=2),
               "judge": ServerConfig(launch="vllm", checkpoint="b", tensor_parallel_size=1),
               "cpu": ServerConfig(launch="llama-cpp", checkpoint="c")}
    placed = place_on_gpus(servers, "4,5,6,7")
    assert placed["teacher"].env == {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert placed["judge"].env == {"CUDA_VISIBLE_DEVICES": "6"}
    assert placed["cpu"].env == {}
    assert place_on_gpus({"teacher": servers["teacher"]}, "4,5") == {"teacher": servers["teacher"]}
    with pytest.raises(TaskseedError, match="need 3 GPUs on this node .* lists 2$"):
        place_on_gpus(servers, "0,1")
    big = {"teacher": ServerConfig(launch="trtllm-serve", checkpoint="a", tensor_parallel_size=16)}
    assert place_on_gpus(big, None, gpus_per_node=8)["teacher"].launcher[:3] == [
        "srun", "--overlap", "--mpi=pmix"]
    with pytest.raises(TaskseedError, match="only trtllm-serve spans nodes"):
        place_on_gpus({"judge": ServerConfig(launch="vllm", checkpoint="b",
                                             tensor_parallel_size=16)}, None, gpus_per_node=8)


# --- lifecycle -----------------------------------------------------------------------------


def test_a_server_that_exits_at_once_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = command_server([PY, "-c", "print('loading weights'); import sys; sys.exit(3)"])
    server = ManagedServer(cfg, "m", tmp_path / "server.log")
    with pytest.raises(TaskseedError) as info:
        server.start()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"command server `{PY} -c ")
    assert "sys.exit(3)" in message and "exited with code 3 before it was healthy" in message
    assert "last log line: loading weights" in message and str(tmp_path) in message
    assert server.pid is None


def test_a_server_that_never_gets_healthy_is_killed_with_its_children(tmp_path: Path) -> None:
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              " subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              " print('still loading', flush=True); time.sleep(60)")
    cfg = command_server([PY, "-c", script], startup_timeout_s=1.0)
    server = ManagedServer(cfg, "m", tmp_path / "server.log", stop_timeout_s=0.5)
    server.launch()
    pid = server.pid
    assert pid is not None and not gone(pid)
    with pytest.raises(TaskseedError) as info:
        server.wait_healthy()
    message = str(info.value)
    assert "\n" not in message and "was not healthy at http://127.0.0.1:" in message
    assert "within 1 s (stopped); last log line: still loading" in message
    assert pid is not None and gone(pid)


def test_a_healthy_server_stops_at_the_end_of_its_block(tmp_path: Path) -> None:
    cfg = command_server(HTTP_SERVER, health_path="/")
    with ManagedServer(cfg, "m", tmp_path / "server.log") as server:
        pid, port = server.pid, server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert not port_closed(port)
    assert pid is not None and gone(pid) and port_closed(port)
    assert logged_port(tmp_path / "server.log") == port
    assert (tmp_path / "server.log").read_text().startswith("[serve] $ ")


# --- serving() ------------------------------------------------------------------------------

PIPE = """name: serve
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
teacher: {teacher}
models:
  judge: {judge}
  remote: {{backend: openai, base_url: 'http://127.0.0.1:9/v1', model: r}}
stages:
  - {{name: seeds}}
"""


def pipeline(tmp_path: Path, teacher: str, judge: str):
    write_task(tmp_path, "qa", "free_form", [{"q": "Why?", "a": "Because."}],
               "{question: q, answer: a}")
    path = tmp_path / "pipe.yaml"
    path.write_text(PIPE.format(run=tmp_path / "run", teacher=teacher, judge=judge))
    return load_config(path)


def http_server(health: str = "/", model: str = "m") -> str:
    command = ", ".join(f"'{part}'" for part in HTTP_SERVER)
    return (f"{{backend: openai, model: {model}, server: {{launch: command, checkpoint: ck, "
            f"health_path: '{health}', command: [{command}]}}}}")


def test_managed_models_are_those_with_a_server(tmp_path: Path) -> None:
    loaded = pipeline(tmp_path, "{backend: embedded, model: smollm2}", http_server())
    assert list(managed_models(loaded)) == ["judge"]
    with serving(loaded, {"teacher", "remote"}, tmp_path / "logs") as same:
        assert same is loaded
    assert not (tmp_path / "logs").exists()


def test_serving_points_models_at_their_servers_and_stops_them(tmp_path: Path, capsys) -> None:
    loaded = pipeline(tmp_path, http_server(), http_server(model="m2"))
    with pytest.raises(KeyboardInterrupt), \
            serving(loaded, {"teacher", "judge", "remote"}, tmp_path / "logs") as served:
        teacher, judge = served.config.teacher, served.config.models["judge"]
        urls = {teacher.base_url, judge.base_url}
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        assert served.config.models["remote"] == loaded.config.models["remote"]
        assert loaded.config.teacher.base_url is None and served.hash == loaded.hash
        ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in urls]
        assert not any(port_closed(p) for p in ports)
        raise KeyboardInterrupt
    assert all(port_closed(p) and not running_with("http.server", str(p)) for p in ports)
    host = socket.gethostname()
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {
        f"server-teacher-{host}.log", f"server-judge-{host}.log"}
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[serve] teacher: command on http://127.0.0.1:")
               and " healthy after " in line for line in out)
    assert sum(" stopped command on " in line for line in out) == 2


def test_one_server_failing_stops_the_others(tmp_path: Path) -> None:
    failing = ("{backend: openai, model: m, server: {launch: command, checkpoint: ck, "
               f"command: ['{PY}', '-c', 'raise SystemExit(5)']}}}}")
    loaded = pipeline(tmp_path, http_server(), failing)
    with pytest.raises(TaskseedError, match="exited with code 5"), \
            serving(loaded, {"teacher", "judge"}, tmp_path / "logs"):
        pytest.fail("the block must not run")
    port = logged_port(next((tmp_path / "logs").glob("server-teacher-*.log")))
    assert port_closed(port) and not running_with("http.server", str(port))


@pytest.mark.slow
def test_llama_cpp_serves_the_embedded_model_to_the_openai_teacher(tmp_path: Path) -> None:
    teacher = ("{backend: openai, model: smollm2, structured_output: json_object, max_retries: 1,"
               " server: {launch: llama-cpp, checkpoint: 'packaged:smollm2', "
               "args: ['--n_ctx', '1024'], startup_timeout_s: 60}}")
    loaded = pipeline(tmp_path, teacher, "{backend: embedded, model: smollm2}")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}},
              "required": ["answer"]}
    request = TeacherRequest([{"role": "user", "content": "What is the capital of France?"}],
                             Sampling(temperature=0.0, max_tokens=32, seed=1), schema)
    with serving(loaded, {"teacher", "judge"}, tmp_path / "logs") as served:
        cfg = served.config.teacher
        port = int(cfg.base_url.rsplit(":", 1)[1].split("/")[0])
        with cfg.build() as client:
            [reply] = client.generate([request])
        assert reply.ok, reply
        assert set(json.loads(reply.text)) == {"answer"}
        assert running_with("--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port))
    assert port_closed(port)
    assert not running_with("--port", str(port))
    log = next((tmp_path / "logs").glob("server-teacher-*.log")).read_text()
    assert "POST /v1/chat/completions" in log
