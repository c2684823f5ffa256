"""The local executor: runs each stage's pending shards on a local Dask cluster."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from curation.errors import TaskseedError
from curation.rundir import RunDir, StageDir, write_json
from curation.shardrun import (
    frame_shard_tasks,
    release_all,
    run_batch_shard,
    run_source_shard,
)
from curation.stage import BatchStage, FrameStage, SourceStage, Stage
from taskseed.budget import BudgetConfig, add_spend
from taskseed.config import ExecutorConfig
from taskseed.summary import StageReport

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class LocalExecutor:
    """A `distributed.LocalCluster` of worker processes; the only code that knows the scale."""

    def __init__(
        self,
        cfg: ExecutorConfig,
        progress: Progress = stderr_progress,
        budget: BudgetConfig | None = None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self.budget = budget or BudgetConfig()
        self.spent: Counter[str] = Counter()
        self.reports: list[StageReport] = []
        self._cluster: Any = None
        self._client: Any = None

    def __enter__(self) -> LocalExecutor:
        from distributed import Client, LocalCluster

        from curation.frames import set_backend

        set_backend(self.cfg.backend)
        logging.getLogger("distributed").setLevel(logging.ERROR)
        self._cluster = self._make_cluster(LocalCluster)
        self._client = Client(self._cluster)
        return self

    def _make_cluster(self, local_cluster: Any) -> Any:
        """dask-cuda's LocalCUDACluster (one worker per GPU) for cuDF, else a LocalCluster."""
        common = {"dashboard_address": None, "silence_logs": logging.ERROR,
                  "memory_limit": self.cfg.memory_limit}
        if self.cfg.backend == "cudf":
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise TaskseedError(
                    "executor.backend: cudf needs the GPU extra: pip install 'taskseed[gpu]'"
                ) from None
            return LocalCUDACluster(threads_per_worker=self.cfg.threads_per_worker, **common)
        return local_cluster(
            n_workers=self.cfg.workers,
            threads_per_worker=self.cfg.threads_per_worker,
            processes=True,
            **common,
        )

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def run(self, stages: list[Stage], run_dir: RunDir) -> list[StageReport]:
        """Run every stage in order, skipping shards whose done marker exists."""
        reports = self.reports = []
        previous: StageDir | None = None
        for index, stage in enumerate(stages):
            out = run_dir.stage(index + 1, stage.name)
            run_dir.claim_stage(out, stage.fingerprint(), stage.name)
            for shard in out.done_shards():
                self._spend(out.read_marker(shard))
            if hasattr(stage, "teacher_cfg"):
                self.budget.check(self.spent)
            started = time.perf_counter()
            if isinstance(stage, SourceStage):
                ran = self._run_source(stage, out)
            elif isinstance(stage, BatchStage):
                assert previous is not None
                ran = self._run_batch(stage, previous, out)
            elif isinstance(stage, FrameStage):
                assert previous is not None
                ran = self._run_frame(stage, previous, out)
            else:
                raise TaskseedError(f"stage '{stage.name}' has no executable shape")
            self._client.run(release_all)
            if isinstance(stage, BatchStage):
                stage.finalize(out)
            report = StageReport.collect(stage.name, out, ran, time.perf_counter() - started)
            self.progress(report.line())
            reports.append(report)
            previous = out
        return reports

    def _gather(self, name: str, futures: dict[Any, int], total: int) -> dict[int, dict]:
        from distributed import as_completed

        done: dict[int, dict] = {}
        try:
            for future in as_completed(list(futures)):
                shard = futures[future]
                try:
                    done[shard] = future.result()
                except TaskseedError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported as one line with the shard
                    raise TaskseedError(
                        f"stage '{name}' shard {shard} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                self.progress(f"[{name}] shard {shard} done ({len(done)}/{total} this run)")
                if done[shard]["counters"].get("teacher_calls"):
                    self._spend(done[shard])
                    self.budget.check(self.spent)
        except TaskseedError:
            self._client.cancel(list(futures))
            raise
        return done

    def _spend(self, marker: dict) -> None:
        add_spend(self.spent, marker)

    def _run_source(self, stage: SourceStage, out: StageDir) -> dict[int, dict]:
        plan_path = out.plan_path()
        if plan_path.exists():
            plan = json.loads(plan_path.read_text())
        else:
            plan = stage.plan()
            write_json(plan_path, plan)
        pending = [i for i in range(len(plan)) if not out.is_done(i)]
        self.progress(f"[{stage.name}] {len(plan)} shards, {len(pending)} to run")
        futures = {
            self._client.submit(run_source_shard, stage, out, i, plan[i], pure=False): i
            for i in pending
        }
        return self._gather(stage.name, futures, len(pending))

    def _run_batch(self, stage: BatchStage, src: StageDir, out: StageDir) -> dict[int, dict]:
        shards = src.done_shards()
        pending = [i for i in shards if not out.is_done(i)]
        self.progress(f"[{stage.name}] {len(shards)} shards, {len(pending)} to run")
        futures = {
            self._client.submit(run_batch_shard, stage, src, out, i, pure=False): i
            for i in pending
        }
        return self._gather(stage.name, futures, len(pending))

    def _run_frame(self, stage: FrameStage, src: StageDir, out: StageDir) -> dict[int, dict]:
        pending, tasks = frame_shard_tasks(stage, src, out)
        self.progress(f"[{stage.name}] {stage.params.shards} shards, {len(pending)} to run")
        if not pending:
            return {}
        futures = dict(zip(self._client.compute(tasks), pending, strict=True))
        return self._gather(stage.name, futures, len(pending))
