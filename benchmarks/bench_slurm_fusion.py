"""Fused shard jobs vs one array job per stage, on a real one-node Slurm.

The same pipeline is submitted twice per size into fresh run directories:

(a) per stage (baseline, `slurm: {fuse: false}`): one array job per batch stage, chained
    with afterok; each array task is a new process that loads what its stage needs.
(b) fused (the default): consecutive batch stages of one shard run in one array task.

Pipeline: seeds -> normalize -> generate -> heuristics -> enrich -> exact_dedup -> export,
with the embedded teacher (SmolLM2-135M on llama.cpp, loaded in each process that runs a
teacher stage), one small free-form task written as local JSONL, one exemplar group and
one sample per shard. Measured per run: wall time from `submit` to `summary.json` written,
Slurm jobs and array tasks, and model loads: a plugin module of the benchmark prints one
line per `EmbeddedTeacher` construction (each teacher stage's `setup()`), counted in the
job logs under RUN/logs. Fused and per-stage runs must export the same records (ids and
rendered text); a difference is printed, not hidden.

Usage: python benchmarks/bench_slurm_fusion.py [--sizes 2 4 8] [--rows-per-shard 2]
       [--max-tokens 80] [--repeat 1] [--keep]   (needs root and the Debian Slurm packages)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from slurm_cluster import SlurmCluster, SlurmMissing, wait_for_jobs  # noqa: E402
from workspace import write_task  # noqa: E402

PROBE_MODULE = "fusionbench_probe"
PROBE_LINE = "fusionbench: model load"
PROBE = f'''"""Benchmark probe: one line per load of the embedded model."""

import os

from taskseed.generation.backends.embedded import EmbeddedTeacher

if not getattr(EmbeddedTeacher, "_fusionbench_probe", False):
    _load = EmbeddedTeacher.__init__

    def _counted(self, *args, **kwargs):
        print(f"{PROBE_LINE} pid={{os.getpid()}}", flush=True)
        _load(self, *args, **kwargs)

    EmbeddedTeacher.__init__ = _counted
    EmbeddedTeacher._fusionbench_probe = True
'''

PIPE = """name: fusionbench
run_dir: run
seeds_root: .
tasks: [capitals.yaml]
plugins: [{probe}]
executor: {{workers: 1}}
teacher: {{backend: embedded, model: smollm2, n_ctx: 1024}}
slurm:
  fuse: {fuse}
  env: {{PYTHONPATH: "{pythonpath}"}}
stages:
  - {{name: seeds, rows_per_shard: {rows}}}
  - {{name: normalize}}
  - {{name: generate, exemplars: {rows}, samples_per_group: 1, groups_per_shard: 1,
      max_tokens: {max_tokens}, temperature: 0.7, max_attempts: 1, min_coverage: 0}}
  - {{name: heuristics}}
  - {{name: enrich, max_tokens: {enrich_tokens}, max_attempts: 1, min_coverage: 0}}
  - {{name: exact_dedup, shards: 2}}
  - {{name: export}}
"""

CAPITALS = [
    ("France", "Paris"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Peru", "Lima"),
    ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Egypt", "Cairo"), ("Chile", "Santiago"),
    ("Italy", "Rome"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Cuba", "Havana"),
    ("Iran", "Tehran"), ("Nepal", "Kathmandu"), ("Poland", "Warsaw"), ("Ghana", "Accra"),
    ("Sweden", "Stockholm"), ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Mali", "Bamako"),
    ("Ireland", "Dublin"), ("Hungary", "Budapest"), ("Finland", "Helsinki"), ("Laos", "Vientiane"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Mexico", "Mexico City"), ("Qatar", "Doha"),
    ("Denmark", "Copenhagen"), ("Belgium", "Brussels"), ("Jordan", "Amman"), ("Fiji", "Suva"),
]


@dataclass
class Outcome:
    """One submission: its wall time and what its logs and export show."""

    status: str
    wall_s: float
    jobs: int
    tasks: int
    loads: int
    teacher_procs: int
    work_s: float
    ids: list[str] = field(default_factory=list)
    digest: str = ""


def seed_rows(count: int) -> list[dict]:
    """Capital-city questions; past the list, sums of two numbers."""
    rows = [{"q": f"What is the capital of {country}?", "a": city}
            for country, city in CAPITALS[:count]]
    rows += [{"q": f"What is {i} plus {2 * i + 7}?", "a": str(3 * i + 7)}
             for i in range(count - len(rows))]
    return rows


def workspace(root: Path, shards: int, args: argparse.Namespace) -> dict[bool, Path]:
    """Seeds, task spec, probe plugin and the two configs (fused, per stage) of one size."""
    root.mkdir(parents=True)
    write_task(root, "capitals", "free_form", seed_rows(shards * args.rows_per_shard),
               "{question: q, answer: a}")
    (root / f"{PROBE_MODULE}.py").write_text(PROBE)
    configs = {}
    for fuse in (True, False):
        path = root / f"pipe-{'fused' if fuse else 'per-stage'}.yaml"
        path.write_text(PIPE.format(
            probe=PROBE_MODULE, fuse=str(fuse).lower(), pythonpath=root, rows=args.rows_per_shard,
            max_tokens=args.max_tokens, enrich_tokens=args.enrich_tokens))
        configs[fuse] = path
    return configs


def submit(cluster: SlurmCluster, config: Path, run: Path, timeout: float) -> Outcome:
    """Submit, wait for summary.json (or for the jobs to end without it), read the logs."""
    env = {**cluster.env, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(config.parent), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "taskseed.slurm", "submit", str(config),
                           "--run-dir", str(run)], cwd=config.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"submit failed: {done.stderr.strip()[-2000:]}")
    job_ids = re.findall(r"^submitted \S+: job (\d+)$", done.stdout, flags=re.MULTILINE)
    summary = run / "summary.json"
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 5
    status = "timeout"
    while time.monotonic() < deadline:
        if summary.exists():
            status = "ok"
            break
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 5
            if not _queued(cluster, job_ids):
                status = "failed" if not summary.exists() else "ok"
                break
        time.sleep(0.1)
    wall = (summary.stat().st_mtime if status == "ok" else time.time()) - started
    if status == "ok":
        wait_for_jobs(cluster, job_ids, timeout=60)  # let the finish job exit (not timed)
    else:
        subprocess.run(["scancel", *job_ids], env=cluster.env, capture_output=True)
    return _outcome(run, status, wall)


def _queued(cluster: SlurmCluster, job_ids: list[str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True,
                         text=True, env=cluster.env)
    return out.returncode == 0 and bool(out.stdout.strip())


def _outcome(run: Path, status: str, wall: float) -> Outcome:
    logs = sorted((run / "logs").glob("*.out"))
    loads = [log.read_text(errors="replace").count(PROBE_LINE) for log in logs]
    recorded = json.loads((run / "logs" / "slurm-jobs.json").read_text())["jobs"]
    if status == "ok":
        summary = json.loads((run / "summary.json").read_text())
        status = "ok" if summary.get("status") == "complete" else summary.get("status", "?")
    work = sum(json.loads(done.read_text()).get("seconds", 0.0)
               for done in (run / "stages").glob("*/part-*.done"))
    ids, lines = [], []
    for part in sorted((run / "stages").glob("*-export/part-*.jsonl")):
        for line in part.read_text().splitlines():
            if line.strip():
                ids.append(json.loads(line)["id"])
                lines.append(line)
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:12]
    return Outcome(status, wall, len(recorded), len(logs), sum(loads),
                   sum(1 for n in loads if n), work, sorted(ids), digest)


def _fit(sizes: list[int], walls: list[float]) -> tuple[float, float]:
    """Least-squares wall = fixed + per_shard * shards."""
    n = len(sizes)
    mx, my = sum(sizes) / n, sum(walls) / n
    var = sum((x - mx) ** 2 for x in sizes)
    slope = sum((x - mx) * (y - my) for x, y in zip(sizes, walls, strict=True)) / var
    return my - slope * mx, slope


def _others_use_slurm(cluster: SlurmCluster) -> bool:
    """Whether a slurmctld that this cluster did not start is running (it may share munged)."""
    ours = set()
    for pidfile in cluster.started:
        with contextlib.suppress(OSError, ValueError, IndexError):
            ours.add(int(pidfile.read_text().split()[0]))
    out = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True, text=True)
    return any(int(pid) not in ours for pid in out.stdout.split())


def stop(cluster: SlurmCluster) -> None:
    """Stop our slurmctld and slurmd; keep a munged we started while others' Slurm uses it."""
    if cluster.munged_pid is not None and _others_use_slurm(cluster):
        print(f"note: munged (pid {cluster.munged_pid}) left running for another Slurm "
              "cluster on this machine")
        cluster.munged_pid = None
    cluster.stop()


def _same(outcomes: list[Outcome]) -> str:
    """`yes` when every run exported the same records, `ids` when only the ids agree."""
    if len({(tuple(o.ids), o.digest) for o in outcomes}) == 1:
        return "yes"
    return "ids" if len({tuple(o.ids) for o in outcomes}) == 1 else "NO"


def report(sizes: list[int], results: dict[int, dict[bool, list[Outcome]]]) -> None:
    """The table (fastest good run of each side), record equality over all runs, cost growth."""
    best = {n: {fuse: min(runs, key=lambda o: (o.status != "ok", o.wall_s))
                for fuse, runs in by.items()} for n, by in results.items()}
    print()
    print(f"{'shards':>6} {'fused s':>8} {'per-stage s':>11} {'ratio':>6} "
          f"{'loads f/p':>10} {'teacher procs f/p':>18} {'jobs f/p':>9} {'tasks f/p':>10} "
          f"{'work s f/p':>12} {'exported':>9} same")
    for n in sizes:
        f, p = best[n][True], best[n][False]
        every = results[n][True] + results[n][False]
        bad = sorted({o.status for o in every} - {"ok"})
        print(f"{n:>6} {f.wall_s:>8.1f} {p.wall_s:>11.1f} {p.wall_s / f.wall_s:>6.2f} "
              f"{f'{f.loads}/{p.loads}':>10} {f'{f.teacher_procs}/{p.teacher_procs}':>18} "
              f"{f'{f.jobs}/{p.jobs}':>9} {f'{f.tasks}/{p.tasks}':>10} "
              f"{f'{f.work_s:.0f}/{p.work_s:.0f}':>12} {f'{len(f.ids)}/{len(p.ids)}':>9} "
              f"{_same(every)}{f'  (runs not ok: {bad})' if bad else ''}")
        if len(every) > 2:
            for fuse, name in ((True, "fused"), (False, "per-stage")):
                walls = sorted(o.wall_s for o in results[n][fuse])
                print(f"{'':>6} {name} runs: {', '.join(f'{w:.1f}' for w in walls)} s")
        if f.ids != p.ids:
            print(f"       ids only fused: {sorted(set(f.ids) - set(p.ids))}; "
                  f"only per-stage: {sorted(set(p.ids) - set(f.ids))}")
    print("fastest run of each side; ratio = per-stage s / fused s; loads = EmbeddedTeacher "
          "constructions in the job logs; tasks = array tasks + frame + finish jobs (log "
          "files); work s = seconds the stages spent on their shards (done markers); same = "
          "every run exported the same records (ids and text)")
    if len(sizes) >= 2:
        print("\ncost growth (least squares, wall = fixed + per_shard * shards):")
        for fuse, name in ((True, "fused"), (False, "per-stage")):
            walls = [best[n][fuse].wall_s for n in sizes]
            fixed, slope = _fit(sizes, walls)
            steps = ", ".join(f"{a}->{b}: x{best[b][fuse].wall_s / best[a][fuse].wall_s:.2f}"
                              for a, b in zip(sizes, sizes[1:], strict=False))
            print(f"  {name:>9}: {fixed:6.1f} s fixed + {slope:5.2f} s per shard ({steps})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8],
                        help="shard counts to run (default: 2 4 8)")
    parser.add_argument("--rows-per-shard", type=int, default=2,
                        help="seed rows per shard (also the exemplars per request)")
    parser.add_argument("--max-tokens", type=int, default=80, help="generate's max_tokens")
    parser.add_argument("--enrich-tokens", type=int, default=64, help="enrich's max_tokens")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one submission may take")
    parser.add_argument("--repeat", type=int, default=1,
                        help="submissions per side and size (the table shows the fastest)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="bench-slurm-fusion-"))
    print(f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"sizes {args.sizes}, {args.rows_per_shard} rows per shard, generate max_tokens "
          f"{args.max_tokens}, enrich max_tokens {args.enrich_tokens}; work dir {root}")
    cluster = SlurmCluster()
    results: dict[int, dict[bool, list[Outcome]]] = {}
    completed = False
    try:
        cluster.start()
        print(f"Slurm cluster under {cluster.root}")
        for i, shards in enumerate(args.sizes):
            configs = workspace(root / f"shards-{shards}", shards, args)
            results[shards] = {True: [], False: []}
            for rep in range(args.repeat):
                first_fused = (i + rep) % 2 == 1  # alternate which side goes first
                for fuse in (first_fused, not first_fused):
                    name = "fused" if fuse else "per-stage"
                    run = root / f"shards-{shards}" / f"run-{name}-{rep}"
                    out = submit(cluster, configs[fuse], run, args.timeout)
                    results[shards][fuse].append(out)
                    print(f"  {shards} shards, {name:>9}: {out.status}, {out.wall_s:.1f} s, "
                          f"{out.jobs} jobs, {out.loads} model loads, {len(out.ids)} "
                          f"exported; load average {os.getloadavg()[0]:.1f}", flush=True)
        report(args.sizes, results)
        completed = all(o.status == "ok" for by in results.values() for runs in by.values()
                        for o in runs)
    except SlurmMissing as err:
        sys.exit(f"needs a real Slurm: {err}")
    finally:
        stop(cluster)
        print("Slurm cluster stopped")
        if args.keep or not completed:
            print(f"run directories kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
