"""A worker that dies mid-stage ends the run with one line: stage, shard, signal, likely cause.

The crashes are real: a segmentation fault inside llama.cpp's decode (the tiny model with
a context pointer that points nowhere, the same path the AMX kernel crashed on) and a
SIGKILL such as the OOM killer sends. The scheduler must not hand the shard to another
worker: one crash, one dead worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from taskseed.generation.backends.crash import describe_exit, exit_signal, likely_cause
from taskseed.generation.backends.native import REBUILD
from workspace import write_task

PLUGIN = '''"""Kills its worker on the record whose answer is "{victim}"."""

import json
import os
import signal

from taskseed.curation.record import Record
from taskseed.curation.stage import KEEP, FilterStage, StageParams, Verdict
from taskseed.registry import register_stage


def crash_inside_llama_cpp() -> None:
    import llama_cpp
    from taskseed.curation.io.packaged_models import model_path

    llm = llama_cpp.Llama(model_path=str(model_path("smollm2")), n_ctx=256, verbose=False)
    llm._ctx.ctx = llama_cpp.llama_context_p(8)  # a context that points nowhere
    llm.create_completion("The sky is", max_tokens=1)


class CrashParams(StageParams):
    how: str = "llama"


class Crash(FilterStage[CrashParams]):
    name = "crash"
    params_model = CrashParams

    def check(self, record: Record) -> Verdict:
        if record.answer == "{victim}":
            if self.params.how == "llama":
                crash_inside_llama_cpp()
            os.kill(os.getpid(), signal.SIGKILL)
        return KEEP


register_stage(Crash)
'''

PIPE = """name: crash
run_dir: run
seeds_root: .
tasks: [capitals.yaml]
plugins: [crash_stage]
executor: {{workers: 2}}
stages:
  - {{name: seeds, rows_per_shard: 2}}
  - {{name: normalize}}
  - {{name: crash, how: {how}}}
"""

ROWS = [{"q": f"What is the capital of {c}?", "a": a}
        for c, a in [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
                     ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Egypt", "Cairo")]]


def crash_run(root: Path, how: str) -> subprocess.CompletedProcess:
    (root / "crash_stage.py").write_text(PLUGIN.replace("{victim}", "Tokyo"))
    write_task(root, "capitals", "free_form", ROWS, "{question: q, answer: a}")
    (root / "pipe.yaml").write_text(PIPE.format(how=how))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", "run", "pipe.yaml"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def crashed_logs(root: Path, text: str) -> list[Path]:
    return [p for p in (root / "run" / "logs").glob("worker-*.log") if text in p.read_text()]


@pytest.mark.slow
def test_a_segfault_inside_llama_cpp_names_the_native_build(tmp_path: Path) -> None:
    proc = crash_run(tmp_path, "llama")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("taskseed: error: stage 'crash' shard 1: its Dask worker (pid ")
    assert "was killed by SIGSEGV (segmentation fault): a crash inside llama.cpp" in last
    assert f"rebuild it portably: {REBUILD}" in last
    # the worker's last stderr lines come before it: Python's fault handler, in llama.cpp
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert "llama_cpp/_internals.py" in proc.stderr
    assert "KilledWorker" not in proc.stderr and "Traceback" not in proc.stderr
    # one crash, no retries on other workers
    logs = crashed_logs(tmp_path, "Segmentation fault")
    assert len(logs) == 1
    assert f"its stderr: {logs[0].resolve()}" in last or f"its stderr: {logs[0]}" in last


@pytest.mark.slow
def test_a_killed_worker_says_sigkill_and_memory(tmp_path: Path) -> None:
    proc = crash_run(tmp_path, "kill")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("taskseed: error: stage 'crash' shard 1: its Dask worker (pid ")
    assert "was killed by SIGKILL (killed): killed from outside, most often for memory" in last
    assert "KilledWorker" not in proc.stderr


def test_exit_codes_and_causes() -> None:
    assert exit_signal(-11) == "SIGSEGV" and exit_signal(139) == "SIGSEGV"
    assert exit_signal(137) == "SIGKILL" and exit_signal(1) is None
    assert describe_exit(-4) == "was killed by SIGILL (illegal instruction)"
    assert describe_exit(3) == "exited with code 3"
    frames = 'File "/x/site-packages/llama_cpp/llama.py", line 680 in eval'
    assert likely_cause("SIGSEGV", frames).startswith("a crash inside llama.cpp")
    assert likely_cause("SIGSEGV", "File \"/x/numpy/core.py\"").startswith("a crash in native")
    assert REBUILD in likely_cause("SIGILL", "")
    assert "memory limit" in likely_cause("SIGKILL", "", memory_limit_hit=True)


SLURM_PIPE = """name: crash
run_dir: run
seeds_root: .
tasks: [capitals.yaml]
plugins: [crash_stage]
executor: {{workers: 1}}
slurm:
  env: {{PYTHONPATH: "{root}"}}
  resources:
    default: {{time: "00:10:00"}}
stages:
  - {{name: seeds, rows_per_shard: 2}}
  - {{name: normalize}}
  - {{name: crash, how: llama}}
"""


@pytest.mark.slow
def test_an_array_task_killed_by_a_native_crash_is_a_failed_unit_that_names_it(
    cluster, tmp_path: Path
) -> None:
    from slurm_cluster import wait_for_jobs

    (tmp_path / "crash_stage.py").write_text(PLUGIN.replace("{victim}", "Tokyo"))
    write_task(tmp_path, "capitals", "free_form", ROWS, "{question: q, answer: a}")
    (tmp_path / "pipe.yaml").write_text(SLURM_PIPE.format(root=tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "taskseed.cli.main", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    submitted = cli("submit", "pipe.yaml")
    assert submitted.returncode == 0, submitted.stderr
    jobs = [line.split()[-1] for line in submitted.stdout.splitlines()
            if line.startswith("submitted ")]
    wait_for_jobs(cluster, jobs[:1], timeout=180)
    failed = json.loads((tmp_path / "run" / "stages" / "03-crash" / "part-00001.failed")
                        .read_text())
    assert failed["reason"].startswith("stage 'crash' shard 1: its process (pid ")
    assert "was killed by SIGSEGV (segmentation fault): a crash inside llama.cpp" in failed[
        "reason"]
    assert any("llama_cpp/_internals.py" in line for line in failed["traceback"])
    assert not (tmp_path / "run" / "stages" / "03-crash" / "part-00001.running").exists()
    status = cli("status", "run")
    assert status.returncode == 1
    assert "was killed by SIGSEGV (segmentation fault): a crash inside llama.cpp" in status.stdout
    for shard in (0, 2):  # the other array tasks committed their shards
        assert (tmp_path / "run" / "stages" / "03-crash" / f"part-{shard:05d}.done").exists()
    subprocess.run(["scancel", *jobs], capture_output=True)
