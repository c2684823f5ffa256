"""Slurm job graphs on a real one-node Slurm: a failed array task, `taskseed status`, a
resubmission that reruns only that task; and the dry run's resources per stage."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, wait_for_jobs

from taskseed.execution.slurm.tasks import main

FLAKY = '''"""Fails on one shard while a flag file exists."""

from pathlib import Path

from taskseed.curation.stage import BatchStage, StageParams, StageResult
from taskseed.registry import register_stage


class FlakyParams(StageParams):
    flag: str
    shard: int


class Flaky(BatchStage[FlakyParams]):
    name = "flaky"
    params_model = FlakyParams

    def process(self, batch, shard):
        if shard == self.params.shard and Path(self.params.flag).exists():
            print("flaky: about to fail", flush=True)
            raise RuntimeError(f"planted failure on shard {shard}")
        return StageResult(items=list(batch))


register_stage(Flaky)
'''

PIPE = """name: flakytest
run_dir: {run}
seeds_root: .
tasks: [capitals.yaml]
plugins: [flaky]
executor: {{workers: 1}}
slurm:
  env: {{PYTHONPATH: "{plugins}"}}
  resources:
    default: {{time: "00:10:00"}}
stages:
  - {{name: seeds, rows_per_shard: 3}}
  - {{name: normalize}}
  - {{name: flaky, flag: "{flag}", shard: 1}}
  - {{name: export, include_seeds: true}}
"""

SPEC = """name: capitals
family: capitals
format: free_form
license: MIT
source: {dataset: demo/capitals}
scored_split: test
train: {split: train, files: [capitals.jsonl], mapping: {question: q, answer: a}}
"""

CAPITALS = [("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
            ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Egypt", "Cairo"), ("Chile", "Santiago")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flaky")
    (root / "plugins").mkdir()
    (root / "plugins" / "flaky.py").write_text(FLAKY)
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    (root / "capitals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "capitals.yaml").write_text(SPEC)
    (root / "pipe.yaml").write_text(PIPE.format(run=root / "run", plugins=root / "plugins",
                                                flag=root / "fail.flag"))
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(root / "plugins"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "taskseed.cli.main", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def submitted(proc: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    assert proc.returncode == 0, proc.stderr
    return re.findall(r"^submitted (\S+): job (\d+)$", proc.stdout, flags=re.MULTILINE)


def digests(folder: Path, shards: list[int]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for i in shards for p in folder.glob(f"part-{i:05d}.*")
            if p.suffix in {".parquet", ".done"}}


@pytest.fixture(scope="module")
def failed_once(cluster: SlurmCluster, workspace: Path) -> tuple[Path, list[tuple[str, str]]]:
    (workspace / "fail.flag").write_text("fail")
    jobs = submitted(cli(workspace, "submit", "pipe.yaml"))
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=120)
    return workspace / "run", jobs


def test_a_failed_array_task_leaves_the_others_committed(failed_once):
    run, jobs = failed_once
    assert [label for label, _ in jobs] == ["01-seeds..04", "finish"]
    flaky = run / "stages" / "03-flaky"
    assert flaky.joinpath("part-00000.done").exists() and flaky.joinpath("part-00002.done").exists()
    assert not flaky.joinpath("part-00001.done").exists()
    failure = json.loads(flaky.joinpath("part-00001.failed").read_text())
    assert failure["reason"] == "RuntimeError: planted failure on shard 1"
    assert failure["slurm_id"] == f"{jobs[0][1]}_1"
    assert not (run / "summary.json").exists()  # the finish job never ran


def test_status_names_the_failed_shard_its_reason_and_log(failed_once, workspace):
    run, jobs = failed_once
    proc = cli(workspace, "status", str(run))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert re.search(r"^03-flaky\s+3\s+2\s+0\s+0\s+1$", out, flags=re.MULTILINE), out
    assert re.search(r"^04-export\s+3\s+2\s+0\s+1\s+0$", out, flags=re.MULTILINE), out
    assert (f"failed: 03-flaky shard 1 ({jobs[0][1]}_1): RuntimeError: planted failure "
            "on shard 1") in out
    assert f"logs/01-seeds..04-{jobs[0][1]}_1.out, last lines:" in out
    assert out.count("RuntimeError: planted failure on shard 1") == 2  # reason, last log line
    data = json.loads(cli(workspace, "status", str(run), "--json").stdout)
    assert [s["failed"] for s in data["stages"]] == ["", "", "1", ""]
    assert [s["done"] for s in data["stages"]] == ["0-2", "0-2", "0,2", "0,2"]


def test_resubmission_reruns_only_the_failed_task(failed_once, cluster, workspace):
    run, _ = failed_once
    (workspace / "fail.flag").unlink()
    kept = {stage: digests(run / "stages" / stage, [0, 2])
            for stage in ("01-seeds", "02-normalize", "03-flaky", "04-export")}
    dry = cli(workspace, "submit", "pipe.yaml", "--dry-run")
    assert dry.returncode == 0 and "--array=1 " in dry.stdout, dry.stdout
    jobs = submitted(cli(workspace, "submit", "pipe.yaml"))
    assert [label for label, _ in jobs] == ["01-seeds..04", "finish"]
    again = cli(workspace, "submit", "pipe.yaml")  # while those jobs are queued
    assert again.returncode == 2 and "still queued or running" in again.stderr, again.stderr
    assert jobs[-1][1] in again.stderr
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=120)
    logs = sorted(p.name for p in (run / "logs").glob(f"01-seeds..04-{jobs[0][1]}_*.out"))
    assert logs == [f"01-seeds..04-{jobs[0][1]}_1.out"]
    text = (run / "logs" / logs[0]).read_text()
    assert "01-seeds shard 1: already done, skipped" in text
    assert "03-flaky shard 1: 3 in -> 3 out in " in text
    for stage, before in kept.items():
        assert digests(run / "stages" / stage, [0, 2]) == before, stage
    assert not (run / "stages" / "03-flaky" / "part-00001.failed").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert cli(workspace, "run", "pipe.yaml", "--run-dir", "local").returncode == 0
    local = json.loads((workspace / "local" / "summary.json").read_text())
    for ours, theirs in zip(summary["stages"], local["stages"], strict=True):
        assert (ours["inputs"], ours["outputs"]) == (theirs["inputs"], theirs["outputs"])
    for name in ("part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"):
        assert ((run / "stages" / "04-export" / name).read_text()
                == (workspace / "local" / "stages" / "04-export" / name).read_text())
    status = cli(workspace, "status", str(run))
    assert status.returncode == 0 and status.stdout.rstrip().endswith("complete")


GPU_PIPE = """name: scaled
run_dir: {run}
seeds_root: seeds
tasks: [caps.yaml]
teacher: {{backend: tensorrt_llm, model: /models/teacher, tensor_parallel_size: 2}}
accept: {{target: 10, max_candidates: 40}}
slurm:
  resources:
    default: {{partition: batch, account: proj, time: "01:00:00"}}
    model: {{cpus: 16, mem: 200G, time: "06:00:00"}}
    frame: {{nodes: 2, cpus: 8, mem: 64G}}
    normalize: {{cpus: 4}}
  dask: {{workers_per_node: 2}}
  container: {{image: "nvcr.io/nvidia/pytorch:25.01-py3", mounts: ["/lustre:/lustre"]}}
  setup: ["module load cuda/12.8"]
stages:
  - {{name: seeds, rows_per_shard: 2}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2}}
  - {{name: heuristics}}
  - {{name: exact_dedup, shards: 2}}
  - {{name: fuzzy_dedup, shards: 2}}
  - {{name: export}}
"""


def test_dry_run_shows_resources_per_stage_fused_jobs_and_the_dask_job(tmp_path, capsys):
    (tmp_path / "seeds").mkdir()
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    (tmp_path / "seeds" / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "caps.yaml").write_text(SPEC.replace("capitals", "caps"))
    config = tmp_path / "pipe.yaml"
    config.write_text(GPU_PIPE.format(run=tmp_path / "run"))
    assert main(["submit", str(config), "--dry-run"]) == 0
    script = capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    graph = re.findall(r"^#   \d\. (.*)$", script, flags=re.MULTILINE)
    assert graph == [
        "01-seeds..02: shard job, 4 array tasks, each runs seeds -> normalize; "
        "0 GPU, 4 CPU, 01:00:00, partition batch, account proj",
        "03-generate..04: shard job, 4 array tasks, each runs generate -> heuristics; "
        "2 GPU, 2 tasks x 8 CPU, 200G, 06:00:00, partition batch, account proj; "
        "models: teacher",
        "finish: 0 GPU, 1 CPU, 01:00:00, partition batch, account proj",
    ]
    jobs = re.findall(r"^JOB\d+=\$\(sbatch (.*) <<'SBATCH'$", script, flags=re.MULTILINE)
    assert "--gres" not in jobs[0] and "--cpus-per-task=4" in jobs[0]
    assert "--gres=gpu:2" in jobs[1] and "--mem=200G" in jobs[1]
    assert "srun --ntasks=1 --nodes=1 --cpus-per-task=4 --overlap " \
           "--container-image=nvcr.io/nvidia/pytorch:25.01-py3 " \
           "--container-mounts=/lustre:/lustre python3 -m taskseed.slurm shard" in script
    # tensor parallelism 2 on one node: one task per GPU under TensorRT-LLM's launcher
    assert "--ntasks-per-node=2" in jobs[1] and "--cpus-per-task=8" in jobs[1]
    assert "srun --overlap --mpi=pmix --nodes=1 --ntasks=2 --ntasks-per-node=2 " \
           "--cpus-per-task=8 --container-image=nvcr.io/nvidia/pytorch:25.01-py3 " \
           "--container-mounts=/lustre:/lustre trtllm-llmapi-launch python3 -m taskseed.slurm " \
           "shard" in script
    assert script.count("module load cuda/12.8") == 3
    # once the loop is done, the frame stages run as one job on a two-node Dask cluster
    loop_done = tmp_path / "loop-done.yaml"
    loop_done.write_text(GPU_PIPE.format(run=tmp_path / "run").replace(
        "accept: {target: 10, max_candidates: 40}\n", ""))
    assert main(["submit", str(loop_done), "--dry-run"]) == 0
    script = capsys.readouterr().out
    graph = re.findall(r"^#   \d\. (.*)$", script, flags=re.MULTILINE)
    assert graph[1] == ("05-exact_dedup..06: frame job, exact_dedup -> fuzzy_dedup on a Dask "
                        "cluster of 2 node(s), 4 workers; 2 nodes, 0 GPU, 8 CPU, 64G, 01:00:00, "
                        "partition batch, account proj")
    assert graph[0].startswith("01-seeds..04: shard job, 4 array tasks, each runs seeds -> "
                               "normalize -> generate -> heuristics; 2 GPU, 2 tasks x 8 CPU, "
                               "200G")
    frame = re.findall(r"^JOB2=\$\(sbatch (.*) <<'SBATCH'$", script, flags=re.MULTILINE)[0]
    assert "--nodes=2" in frame and "--ntasks-per-node=1" in frame
    assert "-m dask scheduler --scheduler-file" in script
    assert "-m dask worker --nworkers 2 --nthreads 1" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_tensor_parallelism_beyond_a_node_spans_nodes_under_the_trtllm_launcher(tmp_path,
                                                                                 capsys):
    (tmp_path / "seeds").mkdir()
    rows = [{"q": f"What is the capital of {c}?", "a": a} for c, a in CAPITALS]
    (tmp_path / "seeds" / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "caps.yaml").write_text(SPEC.replace("capitals", "caps"))
    config = tmp_path / "pipe.yaml"
    config.write_text(GPU_PIPE.format(run=tmp_path / "run").replace(
        "tensor_parallel_size: 2", "tensor_parallel_size: 8").replace(
        "  setup:", "  gpus_per_node: 4\n  setup:"))
    assert main(["submit", str(config), "--dry-run"]) == 0
    script = capsys.readouterr().out
    graph = re.findall(r"^#   \d\. (.*)$", script, flags=re.MULTILINE)
    assert graph[1].startswith("03-generate..04: shard job, 4 array tasks, each runs generate "
                               "-> heuristics; 2 nodes, 4 GPU, 4 tasks x 4 CPU")
    assert ("srun --overlap --mpi=pmix --nodes=2 --ntasks=8 --ntasks-per-node=4 "
            "--cpus-per-task=4 --container-image=nvcr.io/nvidia/pytorch:25.01-py3 "
            "--container-mounts=/lustre:/lustre trtllm-llmapi-launch python3 -m taskseed.slurm "
            "shard") in script
    job = re.findall(r"^JOB2=\$\(sbatch (.*) <<'SBATCH'$", script, flags=re.MULTILINE)[0]
    assert "--nodes=2" in job and "--gres=gpu:4" in job
