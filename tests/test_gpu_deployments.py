"""GPU deployments as the README documents them, checked on a CPU machine.

- A managed trtllm-serve gets an LLM-API options file with guided decoding and is asked in
  TensorRT-LLM's own structured-output form; the stand-in server (same command line, same
  rules as TensorRT-LLM 1.2) ignores `response_format` without guided decoding and misreads
  the OpenAI `json_schema` wrapper, as the real one does.
- Engine and server options pass through: LLM-API settings, vLLM flags.
- The stand-in TensorRT-LLM (tests/fixtures/standin_trtllm) refuses a second model whose
  weights no longer fit one GPU's memory; a fused shard task with an in-process teacher and
  judge loads them in turn, and local workers each get a GPU of their own.
- The dry run of each scale overlay shows the launcher, per-step CPUs, guided-decoding
  options, containers per job kind and GPU counts.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.tensorrt_llm import TensorRTLLMConfig, seed_honoured
from taskseed.generation.servers.managed import ManagedServer, ServerConfig, server_command
from workspace import write_task

from taskseed.cli.main import main
from taskseed.config.pipeline import ExecutorConfig, load_config
from taskseed.execution.local import LocalExecutor, device_slices
from taskseed.execution.pipeline import build_engine
from taskseed.execution.slurm.scripts import Invocation
from taskseed.execution.slurm.tasks import run_shard

STANDIN = Path(__file__).parent / "fixtures" / "standin_trtllm"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "minLength": 1}},
          "required": ["answer"], "additionalProperties": False}


@pytest.fixture
def trtllm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `trtllm-serve` on PATH that runs the stand-in server."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "trtllm-serve"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m "
                      "taskseed.generation.servers.trtllm_standin \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def ask(cfg: OpenAIConfig, base_url: str) -> tuple[str | None, str]:
    teacher = cfg.served_at(base_url).build()
    try:
        [reply] = teacher.generate([TeacherRequest(
            [{"role": "user", "content": "Name a colour."}], Sampling(max_tokens=16), SCHEMA)])
    finally:
        teacher.close()
    return reply.error, reply.text


def served(tmp_path: Path, server: ServerConfig, **cfg: object) -> tuple[OpenAIConfig, Path]:
    return OpenAIConfig(model="ckpt", server=server, **cfg), tmp_path / "logs" / "server.log"


def test_a_managed_trtllm_serve_enforces_the_schema(tmp_path: Path, trtllm_on_path: Path) -> None:
    server = ServerConfig(launch="trtllm-serve", checkpoint="/models/ckpt", startup_timeout_s=60,
                          options={"kv_cache_config": {"free_gpu_memory_fraction": 0.5}})
    cfg, log = served(tmp_path, server)
    assert cfg.structured_output == "json"  # TensorRT-LLM's own form, read by every 1.x
    with ManagedServer(server, cfg.model, log) as running:
        assert running.command[running.command.index("--extra_llm_api_options") + 1] == str(
            log.with_name("server.llm-api.yaml"))
        written = yaml.safe_load(log.with_name("server.llm-api.yaml").read_text())
        assert written == {"guided_decoding_backend": "xgrammar",
                           "kv_cache_config": {"free_gpu_memory_fraction": 0.5}}
        error, text = ask(cfg, running.base_url)
    assert error is None and text.startswith('{"answer"')


def test_without_guided_decoding_trtllm_serve_ignores_the_schema(
        tmp_path: Path, trtllm_on_path: Path) -> None:
    server = ServerConfig(launch="trtllm-serve", checkpoint="ckpt", startup_timeout_s=60,
                          options={"guided_decoding_backend": None})
    cfg, log = served(tmp_path, server)
    with ManagedServer(server, cfg.model, log) as running:
        error, text = ask(cfg, running.base_url)
    assert error == "invalid_json" and text.startswith("Sure! Here is an answer")


def test_the_openai_json_schema_wrapper_is_misread_by_a_1_2_server(
        tmp_path: Path, trtllm_on_path: Path) -> None:
    server = ServerConfig(launch="trtllm-serve", checkpoint="ckpt", startup_timeout_s=60)
    cfg, log = served(tmp_path, server, structured_output="json_schema")
    with ManagedServer(server, cfg.model, log) as running:
        error, _ = ask(cfg, running.base_url)
    assert error == "schema_mismatch"


def test_trtllm_serve_refuses_an_option_it_does_not_have(tmp_path: Path,
                                                         trtllm_on_path: Path) -> None:
    server = ServerConfig(launch="trtllm-serve", checkpoint="ckpt", args=["--served-model-name",
                                                                          "x"])
    with pytest.raises(TaskseedError, match=r"exited with code 2 before it was healthy.*"
                                            r"last log line: Error: unrecognized arguments"):
        ManagedServer(server, "x", tmp_path / "server.log").start()


def test_server_options_become_each_servers_own_flags() -> None:
    vllm = ServerConfig(launch="vllm", checkpoint="m", tensor_parallel_size=4,
                        options={"trust_remote_code": True, "max_num_seqs": 256,
                                 "enforce_eager": False})
    assert server_command(vllm, "m", 9000)[-3:] == ["--trust-remote-code", "--max-num-seqs",
                                                    "256"]
    llama_cpp = ServerConfig(launch="llama-cpp", checkpoint="/m.gguf", options={"n_ctx": 4096})
    assert server_command(llama_cpp, "m", 9000)[-2:] == ["--n_ctx", "4096"]
    trt = ServerConfig(launch="trtllm-serve", checkpoint="m", options={"max_batch_size": 8})
    assert "--max_batch_size" not in server_command(trt, "m", 9000)  # in the options file
    with pytest.raises(ValueError, match="`options` are for a known launcher"):
        ServerConfig(launch="command", checkpoint="m", command=["serve"], options={"a": 1})


def test_engine_args_reach_the_llm_and_stay_out_of_the_fingerprint() -> None:
    plain = TensorRTLLMConfig(model="m")
    tuned = TensorRTLLMConfig(model="m", engine_args={
        "kv_cache_config": {"free_gpu_memory_fraction": 0.4}, "trust_remote_code": True})
    assert plain.identity() == tuned.identity()
    assert "free_gpu_memory_fraction" in tuned.describe()


@pytest.mark.parametrize(("version", "honoured"), [
    ("1.2.0", False), ("1.2.1", False), ("1.2.2", True), ("1.3.0rc1", True), ("0.21.0", False)])
def test_the_per_request_seed_is_honoured_after_1_2_1(version: str, honoured: bool) -> None:
    assert seed_honoured(version) is honoured


# --- GPU memory: one model per GPU at a time -------------------------------------------------


@pytest.fixture
def standin_trtllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in `tensorrt_llm` importable here and in worker processes, with a fresh
    GPU-memory ledger."""
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(STANDIN), *filter(None, [os.environ.get("PYTHONPATH")])]))
    ledger = tmp_path / "gpu-ledger"
    monkeypatch.setenv("TASKSEED_STANDIN_GPU_DIR", str(ledger))
    for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        monkeypatch.delitem(sys.modules, name)
    return ledger


def test_the_stand_in_refuses_two_models_on_one_gpu(standin_trtllm: Path) -> None:
    import tensorrt_llm

    first = tensorrt_llm.LLM(model="teacher")
    with pytest.raises(RuntimeError, match="CUDA out of memory: judge needs 20 GB"):
        tensorrt_llm.LLM(model="judge")
    first.shutdown()
    tensorrt_llm.LLM(model="judge").shutdown()
    # with explicit fractions both fit
    a = tensorrt_llm.LLM(model="a", kv_cache_config={"free_gpu_memory_fraction": 0.3})
    b = tensorrt_llm.LLM(model="b", kv_cache_config={"free_gpu_memory_fraction": 0.3})
    a.shutdown()
    b.shutdown()


PIPE = """name: gpu
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: {workers}}}
teacher: {{backend: tensorrt_llm, model: teacher-9b}}
models:
  judge: {{backend: tensorrt_llm, model: judge-49b}}
stages:
  - {{name: seeds, rows_per_shard: 4}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, min_coverage: 0}}
  - {{name: llm_judge, model: judge, thresholds: {{correctness: 1, answerability: 1,
      alignment: 1, clarity: 1, safety: 1}}}}
  - {{name: enrich, min_coverage: 0}}
"""
ROWS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(8)]


def gpu_pipe(tmp_path: Path, workers: int = 1) -> Path:
    write_task(tmp_path, "qa", "free_form", ROWS, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", workers=workers))
    return config


def test_a_fused_shard_task_loads_its_in_process_models_in_turn(
        tmp_path: Path, standin_trtllm: Path) -> None:
    config = gpu_pipe(tmp_path)
    invocation = Invocation(config, tmp_path / "run")
    loaded = load_config(config)
    engine = build_engine(loaded)
    engine.run_dir.write_config(loaded.resolved, loaded.hash)
    engine.prepare(write=True)  # what `taskseed submit` plans
    run_shard(invocation, "1-5", 0)  # teacher, then the judge, then the teacher again
    done = yaml.safe_load((tmp_path / "run" / "stages" / "05-enrich" / "part-00000.done")
                          .read_text())
    assert done["inputs"] >= 1
    assert (standin_trtllm / "gpu-0.json").read_text() == "{}"  # all released


def test_local_workers_each_get_their_own_gpu(tmp_path: Path, standin_trtllm: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert device_slices(["0", "1", "2", "3"], 2, 4) == ["0,1", "2,3"]
    assert device_slices(["4", "5"], 1, 1) == ["4"]
    with pytest.raises(TaskseedError, match="takes 2 GPU"):
        device_slices(["0"], 2, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    config = gpu_pipe(tmp_path, workers=2)  # two workers asked for, one GPU
    assert main(["run", str(config)]) == 0
    err = capsys.readouterr().err
    assert "executor: 1 worker(s), not 2: each holds a model on 1 GPU(s) of its own" in err
    with LocalExecutor(load_executor(config), lambda _: None, gpus_per_worker=1) as executor:
        envs = executor._client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert list(envs.values()) == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with LocalExecutor(load_executor(config), lambda _: None, gpus_per_worker=1) as executor:
        envs = executor._client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert sorted(envs.values()) == ["2", "3"]


def load_executor(config: Path) -> ExecutorConfig:
    return load_config(config).config.executor


# --- the scale overlays' Slurm scripts ---------------------------------------------------


def dry_run(repo: Path, scale: str, tmp_path: Path, *sets: str) -> str:
    words = [sys.executable, "-m", "taskseed.cli.main", "submit", "configs/real-small.yaml",
             "--overlay", f"configs/scales/{scale}.yaml", "--run-dir", str(tmp_path / scale),
             "--dry-run"]
    for item in sets:
        words += ["--set", item]
    done = subprocess.run(words, capture_output=True, text=True, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert subprocess.run(["bash", "-n"], input=done.stdout, text=True).returncode == 0
    return done.stdout


def test_ultra_serves_trtllm_under_its_launcher_with_guided_decoding(repo: Path,
                                                                    tmp_path: Path) -> None:
    script = dry_run(repo, "ultra", tmp_path)
    assert "8 GPU, 8 tasks x 2 CPU, 64G, 48:00:00; models: teacher, judge" in script
    model_job = re.search(r"JOB2=\$\(sbatch (.*) <<'SBATCH'", script).group(1)
    assert "--gres=gpu:8" in model_job and "--ntasks-per-node=8" in model_job
    assert "--cpus-per-task=2" in model_job and "--nodes=1" in model_job
    server = next(line for line in script.splitlines() if "trtllm-serve /models" in line)
    assert server.startswith(
        "srun --overlap --mpi=pmix --nodes=1 --ntasks=8 --ntasks-per-node=8 --cpus-per-task=2 "
        "--container-image=registry.example.com/taskseed-trtllm:1.2.1 "
        "--container-mounts=/models:/models trtllm-llmapi-launch trtllm-serve ")
    assert '--tp_size 8 --extra_llm_api_options "$options_teacher"' in server
    options = script.split("<<'LLMAPI'\n")[1].split("\nLLMAPI")[0]
    assert yaml.safe_load(options)["guided_decoding_backend"] == "xgrammar"
    assert 'export TASKSEED_SERVER_TEACHER_URL="http://127.0.0.1:$port_teacher/v1"' in script
    # containers per job kind: the model job in TensorRT-LLM's image, the rest in RAPIDS'
    steps = [line for line in script.splitlines() if "-m taskseed.slurm shard" in line]
    assert "taskseed-rapids:26.10" in steps[0] and "taskseed-trtllm:1.2.1" in steps[1]
    assert "--overlap" in steps[1]


def test_ultra_spans_two_nodes_at_tensor_parallelism_16(repo: Path, tmp_path: Path) -> None:
    script = dry_run(repo, "ultra", tmp_path, "teacher.server.tensor_parallel_size=16")
    assert "--nodes=2" in re.search(r"JOB2=\$\(sbatch (.*) <<'SBATCH'", script).group(1)
    assert "srun --overlap --mpi=pmix --nodes=2 --ntasks=16 --ntasks-per-node=8 " \
           "--cpus-per-task=2" in script


def test_nano_loads_one_in_process_model_per_gpu(repo: Path, tmp_path: Path) -> None:
    script = dry_run(repo, "nano", tmp_path)
    assert "1 GPU, 16 CPU, 128G, 24:00:00; models: teacher, judge" in script
    assert "# teacher: TensorRT-LLM in process (nvidia/NVIDIA-Nemotron-Nano-9B-v2, tensor " \
           "parallelism 1, LLM settings" in script
    assert "trtllm-llmapi-launch" not in script
    tp2 = dry_run(repo, "nano", tmp_path, "teacher.tensor_parallel_size=2")
    step = next(line for line in tp2.splitlines() if "-m taskseed.slurm shard" in line
                and "--stage 3-" in line)
    assert step.startswith("srun --overlap --mpi=pmix --nodes=1 --ntasks=2 --ntasks-per-node=2 "
                           "--cpus-per-task=8 trtllm-llmapi-launch ")


def test_super_starts_vllm_with_the_flags_its_checkpoint_needs(repo: Path,
                                                               tmp_path: Path) -> None:
    script = dry_run(repo, "super", tmp_path)
    assert "4 GPU, 8 CPU, 32G, 24:00:00; models: teacher, judge" in script
    assert "# teacher: the task starts `vllm serve nvidia/Llama-3_3-Nemotron-Super-49B-v1_5 " \
           "--served-model-name" in script
    assert "--tensor-parallel-size 4 --trust-remote-code --gpu-memory-utilization 0.9" in script


def test_containers_per_job_kind_are_checked() -> None:
    from taskseed.config.slurm import SlurmConfig

    cfg = SlurmConfig(container={"model": {"image": "trt"}, "default": {"image": "rapids"}})
    assert cfg.container_for("model").image == "trt"
    assert cfg.container_for("frame").image == "rapids"
    assert SlurmConfig(container={"image": "one"}).container_for("finish").image == "one"
    with pytest.raises(ValueError, match="unknown job kind"):
        SlurmConfig(container={"gpu": {"image": "x"}})


def test_the_gpu_smoke_script_says_what_it_checked_and_skipped(
        repo: Path, tmp_path: Path, trtllm_on_path: Path, standin_trtllm: Path) -> None:
    smoke = [sys.executable, str(repo / "benchmarks" / "gpu_smoke.py")]
    bare = subprocess.run(smoke, capture_output=True, text=True, cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.splitlines()[-1] == "0 checked, 3 skipped, 0 failed"
    assert "skipped cuDF dedup vs pandas" in bare.stdout
    stand_ins = subprocess.run([*smoke, "--server", "trtllm-serve", "--checkpoint", "/m/ckpt",
                                "--in-process-checkpoint", "/m/ckpt"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert stand_ins.returncode == 0, stand_ins.stdout + stand_ins.stderr
    assert re.search(r"^ok +trtllm-serve healthy after", stand_ins.stdout, re.MULTILINE)
    assert re.search(r"^ok +trtllm-serve: one request in json form", stand_ins.stdout,
                     re.MULTILINE)
    assert re.search(r"^ok +TensorRT-LLM in process answered", stand_ins.stdout, re.MULTILINE)
    assert stand_ins.stdout.splitlines()[-1].startswith("2 checked, 1 skipped, 0 failed")
