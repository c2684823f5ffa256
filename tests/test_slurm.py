"""The Slurm executor on a real one-node Slurm cluster, against the local executor: a fused
shard job, a frame stage on the Dask cluster its own sbatch job starts, then a finish job."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_cluster import SlurmCluster, wait_for_jobs

from taskseed.execution.run import run_pipeline
from taskseed.execution.slurm.tasks import array_spec, main

STAGES = ["01-seeds", "02-normalize", "03-validity", "04-exact_dedup", "05-export"]

PIPE = """name: slurmtest
run_dir: {run}
seeds_root: seeds
tasks: [caps.yaml, sums.yaml]
executor: {{workers: 1}}
stages:
  - {{name: seeds, rows_per_shard: 4}}
  - {{name: normalize}}
  - {{name: validity}}
  - {{name: exact_dedup, shards: 2}}
  - {{name: export, include_seeds: true}}
"""

SPEC = """name: {name}
family: {name}
format: free_form
license: MIT
source: {{dataset: demo/{name}}}
scored_split: test
train: {{split: train, files: [{name}.jsonl], mapping: {{question: q, answer: a}}}}
"""

CAPS = [
    ("What is the capital of France?", "Paris"),
    ("what is the capital of France", "paris."),
    ("What is the capital of Spain?", "Madrid"),
    ("What is the capital of France? ", "Paris"),  # the same record, not the same seed row
    ("Capital?", "Rome"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Peru?", ""),
]
SUMS = [(f"What is {i} plus {i + 1}?", str(2 * i + 1)) for i in range(6)] + [
    ("What is 0 plus 1? ", "1"),
    ("Sum?", "3"),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slurm-config")
    (root / "seeds").mkdir()
    for name, rows in (("caps", CAPS), ("sums", SUMS)):
        lines = "".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in rows)
        (root / "seeds" / f"{name}.jsonl").write_text(lines)
        (root / f"{name}.yaml").write_text(SPEC.format(name=name))
    path = root / "pipe.yaml"
    path.write_text(PIPE.format(run=root / "default-run"))
    return path


def submit_cli(config: Path, run_dir: Path, *extra: str) -> list[tuple[str, str]]:
    """`python -m taskseed.slurm submit`; returns (label, job id) per submitted job."""
    done = subprocess.run(
        [sys.executable, "-m", "taskseed.slurm", "submit", str(config), "--run-dir", str(run_dir),
         *extra],
        capture_output=True, text=True, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    return re.findall(r"^submitted (\S+): job (\d+)$", done.stdout, flags=re.MULTILINE)


def shard_rows(run: Path) -> dict[str, dict[int, list[dict]]]:
    """Every stage's committed shards: rows of each part file, sorted by id or by content."""
    out: dict[str, dict[int, list[dict]]] = {}
    for stage in STAGES:
        folder = run / "stages" / stage
        shards: dict[int, list[dict]] = {}
        for done in sorted(folder.glob("part-*.done")):
            rows = pq.read_table(done.with_suffix(".parquet")).to_pylist()
            shards[int(done.stem.split("-")[1])] = sorted(rows, key=lambda r: json.dumps(
                r, sort_keys=True, default=str))
        out[stage] = shards
    return out


def marker_digests(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run / "stages").rglob("*"))
        if p.is_file() and p.suffix in {".parquet", ".jsonl", ".done", ".json"}
    }


@pytest.fixture(scope="module")
def runs(cluster: SlurmCluster, config: Path) -> tuple[Path, Path, list[tuple[str, str]]]:
    local = config.parent / "local-run"
    run_pipeline(config, run_dir=local, progress=lambda line: None)
    slurm = config.parent / "slurm-run"
    jobs = submit_cli(config, slurm, "--max-parallel", "2")
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=100)
    return local, slurm, jobs


JOBS = ["01-seeds..03", "04-exact_dedup", "05-export", "finish"]


def test_submit_fuses_batch_stages_and_runs_the_frame_stage_on_its_dask_cluster(runs):
    _, slurm, jobs = runs
    assert [label for label, _ in jobs] == JOBS
    recorded = json.loads((slurm / "logs" / "slurm-jobs.json").read_text())["jobs"]
    assert [(j["label"], j["job_id"]) for j in recorded] == jobs
    logs = sorted(p.name for p in (slurm / "logs").glob("*.out"))
    assert f"finish-{jobs[-1][1]}.out" in logs
    # one array task per shard runs seeds, normalize and validity in turn
    fused = sorted((slurm / "logs").glob("01-seeds..03-*.out"))
    assert len(fused) == 4
    for log in fused:
        text = log.read_text()
        assert all(f"{stage} shard" in text for stage in STAGES[:3]), text
    # the frame job started a scheduler and two workers and ran the stage on them
    frame = (slurm / "logs" / f"04-exact_dedup-{jobs[1][1]}.out").read_text()
    assert "Dask cluster: 2 workers on 1 node(s)" in frame, frame
    assert "04-exact_dedup: 2 shards" in frame
    assert "scheduler tcp://" in frame and "Scheduler closing" in frame
    assert sorted(p.name for p in (slurm / "slurm").glob("*.sbatch")) == [
        f"{label}.sbatch" for label in sorted(JOBS)]


def test_slurm_run_equals_local_run(runs):
    local, slurm, _ = runs
    summary = json.loads((slurm / "summary.json").read_text())
    assert summary["status"] == "complete", (slurm / "logs").iterdir()
    local_rows, slurm_rows = shard_rows(local), shard_rows(slurm)
    assert list(local_rows["01-seeds"]) == [0, 1, 2, 3]
    assert list(local_rows["04-exact_dedup"]) == [0, 1]
    for stage in STAGES:
        assert slurm_rows[stage] == local_rows[stage], stage
    ids = {s: sorted(r["id"] for rows in slurm_rows[s].values() for r in rows)
           for s in STAGES[1:]}
    assert len(ids["02-normalize"]) == 14
    assert len(ids["03-validity"]) == 12
    assert len(ids["04-exact_dedup"]) == 9 and ids["05-export"] == ids["04-exact_dedup"]
    local_summary = json.loads((local / "summary.json").read_text())
    for ours, theirs in zip(summary["stages"], local_summary["stages"], strict=True):
        for key in ("name", "shards", "inputs", "outputs", "rejects", "counters"):
            assert ours[key] == theirs[key], (ours["name"], key)
    assert summary["config_hash"] == local_summary["config_hash"]


def test_finish_job_writes_export_manifest_and_jsonl(runs):
    local, slurm, _ = runs
    export = slurm / "stages" / "05-export"
    manifest = json.loads((export / "manifest.json").read_text())
    local_manifest = json.loads((local / "stages" / "05-export" / "manifest.json").read_text())
    assert manifest["totals"] == local_manifest["totals"] == {
        "records": 9, "generative": 9, "commercial": manifest["totals"]["commercial"]}
    for name in ("part-00000.jsonl", "part-00001.jsonl"):
        assert (export / name).read_text() == (local / "stages" / "05-export" / name).read_text()
    assert (slurm / "summary.txt").exists() and (slurm / "config.yaml").exists()


def test_resubmitting_a_finished_run_runs_no_shard(runs, cluster, config):
    _, slurm, _ = runs
    before = marker_digests(slurm)
    jobs = submit_cli(config, slurm)
    assert [label for label, _ in jobs] == ["finish"]
    wait_for_jobs(cluster, [job for _, job in jobs], timeout=60)
    summary = json.loads((slurm / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert [s["shards_run"] for s in summary["stages"]] == [0, 0, 0, 0, 0]
    assert marker_digests(slurm) == before


def test_shard_command_skips_a_done_shard(runs, config, capsys):
    _, slurm, _ = runs
    before = marker_digests(slurm)
    for stage, shard in (("1", 0), ("1-3", 3), ("5", 1)):
        assert main(["shard", str(config), "--stage", stage, "--shard", str(shard),
                     "--run-dir", str(slurm)]) == 0
    out = capsys.readouterr().out
    assert out.count("already done, skipped") == 5
    assert marker_digests(slurm) == before


def test_dry_run_prints_the_job_graph_and_writes_nothing(config, tmp_path, capsys):
    run = tmp_path / "never-made"
    assert main(["submit", str(config), "--run-dir", str(run), "--dry-run",
                 "--max-parallel", "2", "--partition", "cpu"]) == 0
    script = capsys.readouterr().out
    assert not run.exists()
    jobs = re.findall(r"^(JOB\d+)=\$\(sbatch (.*) <<'SBATCH'$", script, flags=re.MULTILINE)
    assert [var for var, _ in jobs] == [f"JOB{i}" for i in range(1, 5)]
    arrays = [re.search(r"--array=(\S+)", argv) for _, argv in jobs]
    assert [m.group(1) if m else None for m in arrays] == ["0-3%2", None, "0-1%2", None]
    for i, (_, argv) in enumerate(jobs):
        assert "--parsable" in argv and "--partition=cpu" in argv
        dep = re.search(r"--dependency=afterok:\$\{(JOB\d+)%%;\*\}", argv)
        assert (dep.group(1) if dep else None) == (f"JOB{i}" if i else None)
    assert "--stage 1-3 --label 01-seeds..03" in script
    assert "frame job, exact_dedup on a Dask cluster of 1 node(s), 2 workers" in script
    assert "-m dask worker --nworkers 2" in script and "--stage 4 --label 04-exact_dedup" in script
    assert f"--output={run.resolve()}/logs/01-seeds..03-%A_%a.out" in jobs[0][1]
    # the printed script is valid shell
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_dry_run_after_a_lost_shard_submits_only_that_shard(runs, config, capsys):
    _, slurm, _ = runs
    (slurm / "stages" / "02-normalize" / "part-00003.done").unlink()
    assert main(["submit", str(config), "--run-dir", str(slurm), "--dry-run"]) == 0
    script = capsys.readouterr().out
    jobs = re.findall(r"^# (\S+)\nJOB\d+=\$\(sbatch (.*) <<'SBATCH'$", script,
                      flags=re.MULTILINE)
    assert [label for label, _ in jobs] == ["01-seeds..03", "finish"]
    assert "--array=3 " in jobs[0][1]
    assert main(["shard", str(config), "--stage", "1-3", "--shard", "3",
                 "--run-dir", str(slurm)]) == 0
    assert (slurm / "stages" / "02-normalize" / "part-00003.done").exists()


def test_source_shard_needs_the_plan(config, tmp_path, capsys):
    code = main(["shard", str(config), "--stage", "1-3", "--shard", "0",
                 "--run-dir", str(tmp_path / "unplanned")])
    assert code == 2
    assert "plan.json is missing" in capsys.readouterr().err


def test_a_group_cannot_mix_frame_and_batch_stages(config, tmp_path, capsys):
    code = main(["shard", str(config), "--stage", "3-5", "--shard", "0",
                 "--run-dir", str(tmp_path / "frame")])
    assert code == 2
    assert "mixes frame stages with batch stages" in capsys.readouterr().err


def test_array_spec_compresses_indices():
    assert array_spec([0, 1, 2, 3]) == "0-3"
    assert array_spec([5, 0, 3, 6, 7]) == "0,3,5-7"
    assert array_spec([4], 8) == "4%8"
