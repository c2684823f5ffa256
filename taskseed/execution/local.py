"""The local executor: each stage's pending units on a local Dask cluster.

Batch stages between barriers stream: a stage's shard is submitted as soon as the shard it
reads is committed, so a later stage's work overlaps an earlier stage's tail, and (with
`units_per_worker` > 1 and HTTP models) several shards share each worker's one request pool
per model. Barriers: frame stages (they need the whole data set) and the edges of a
generate-until-N round. Each unit still commits atomically, so resume is unchanged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskseed.config.pipeline import ExecutorConfig
from taskseed.curation.errors import TaskseedError
from taskseed.curation.stage import DoneMarker
from taskseed.execution.engine import BatchRun, Engine, StageRun
from taskseed.execution.shard import release_all
from taskseed.views.progress import ProgressView
from taskseed.views.summary import StageReport

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class UnitFailed:
    """A one-line error of a unit, sent back as a value (a raised one is logged with its
    traceback by the worker)."""

    message: str


def visible_devices() -> list[str]:
    """This machine's GPUs as CUDA sees them: `CUDA_VISIBLE_DEVICES`, else `nvidia-smi -L`
    (none when neither says)."""
    import os
    import shutil
    import subprocess

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return [str(i) for i, line in enumerate(found.stdout.splitlines()) if line.startswith("GPU")]


def device_slices(devices: list[str], per_worker: int, workers: int) -> list[str]:
    """`CUDA_VISIBLE_DEVICES` for each worker that holds a model on `per_worker` GPUs: at
    most `workers`, never two on one device."""
    slots = len(devices) // per_worker
    if slots == 0:
        raise TaskseedError(f"a model in this run takes {per_worker} GPU(s) in its worker, and "
                            f"this machine shows {len(devices)} (CUDA_VISIBLE_DEVICES or "
                            "nvidia-smi)")
    return [",".join(devices[i * per_worker:(i + 1) * per_worker])
            for i in range(min(slots, workers))]


def execute_unit(run: StageRun, unit: int) -> dict[int, DoneMarker] | UnitFailed:
    """One unit of work on a Dask worker."""
    try:
        return run.run_tracked(unit)
    except TaskseedError as err:
        return UnitFailed(str(err))


class LocalExecutor:
    """A `distributed.LocalCluster` of worker processes; the only code that knows the scale."""

    def __init__(self, cfg: ExecutorConfig, progress: Progress = stderr_progress,
                 gpus_per_worker: int = 0, unit_threads: int = 1) -> None:
        self.cfg = cfg
        # shards a worker runs at once (threads): more than 1 only where every model is
        # asked over HTTP, whose client shares one request pool per process
        self.threads = max(cfg.threads_per_worker, unit_threads)
        self.progress = progress
        # GPUs a worker's in-process model takes: each worker gets its own devices
        self.gpus_per_worker = gpus_per_worker
        self.reports: list[StageReport] = []
        self.view: ProgressView | None = None
        self._cluster: Any = None
        self._client: Any = None
        self._dask_config: Any = None
        self._deaths: Any = None
        self._log_dir: Path | None = None

    def __enter__(self) -> LocalExecutor:
        import dask
        from distributed import Client, LocalCluster

        from taskseed.curation.io.frames import set_backend
        from taskseed.execution.worker_crash import DASK_CONFIG, DeathWatch

        set_backend(self.cfg.backend)
        logging.getLogger("distributed").setLevel(logging.ERROR)
        self._dask_config = dask.config.set(DASK_CONFIG)
        self._cluster = self._make_cluster(LocalCluster)
        self._deaths = DeathWatch()
        self._deaths.install()
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
            return LocalCUDACluster(threads_per_worker=self.threads, **common)
        if self.gpus_per_worker:
            return self._gpu_cluster(common)
        return local_cluster(
            n_workers=self.cfg.workers,
            threads_per_worker=self.threads,
            processes=True,
            **common,
        )

    def _gpu_cluster(self, common: dict[str, Any]) -> Any:
        """Workers that each hold an in-process GPU model, on devices of their own
        (`CUDA_VISIBLE_DEVICES` per worker): as many as the visible GPUs allow."""
        from distributed import Nanny, Scheduler, SpecCluster

        slices = device_slices(visible_devices(), self.gpus_per_worker, self.cfg.workers)
        if len(slices) < self.cfg.workers:
            self.progress(f"executor: {len(slices)} worker(s), not {self.cfg.workers}: each "
                          f"holds a model on {self.gpus_per_worker} GPU(s) of its own")
        options = {"nthreads": self.threads, "memory_limit": common["memory_limit"],
                   "silence_logs": common["silence_logs"]}
        workers = {f"gpu-{i}": {"cls": Nanny, "options": {
            **options, "env": {"CUDA_VISIBLE_DEVICES": ids}}} for i, ids in enumerate(slices)}
        return SpecCluster(workers=workers, scheduler={
            "cls": Scheduler, "options": {"dashboard_address": None}},
            silence_logs=common["silence_logs"])

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        if self._deaths is not None:
            self._deaths.uninstall()
        if self._dask_config is not None:
            self._dask_config.__exit__(None, None, None)

    def run(self, engine: Engine) -> list[StageReport]:
        """Run every stage in order, skipping units that are done; with `accept:`, run the
        loop's stages again for each round the engine adds."""
        from taskseed.execution.worker_crash import StderrToLog

        runs = engine.prepare()
        self._log_dir = engine.run_dir.path / "logs"
        self._client.register_plugin(StderrToLog(str(self._log_dir)), name=StderrToLog.name)
        live = None if self.progress is stderr_progress else False
        self.view = ProgressView(self.progress, len(runs), live)
        try:
            return self._run_all(engine, runs)
        finally:
            self.view.close()

    def _say(self, line: str) -> None:
        if self.view is not None:
            self.view.print(line)
        else:
            self.progress(line)

    def _run_all(self, engine: Engine, runs: list[StageRun]) -> list[StageReport]:
        by_stage: dict[int, StageReport] = {}
        ran: dict[int, dict[int, DoneMarker]] = {}  # shards run in this invocation, per stage
        i = 0
        while i < len(runs):
            started = time.perf_counter()
            last = self._segment_end(engine, runs, i)

            def stage_done(k: int, markers: dict[int, DoneMarker],
                           runs: list[StageRun] = runs, started: float = started) -> None:
                ran.setdefault(k, {}).update(markers)
                report = StageReport.collect(runs[k].stage.name, runs[k].out, ran[k],
                                             time.perf_counter() - started)
                self._say(report.line())
                by_stage[k] = report
                self.reports = [by_stage[n] for n in sorted(by_stage)]

            if last == i:
                stage_done(i, self._run_stage(engine, runs[i]))
            else:
                self._run_segment(engine, runs, i, last, stage_done)
            if engine.loop is not None and last == engine.loop[1]:
                short = engine.next_round()
                assert self.view is not None
                self.view.set_acceptance(engine.acceptance)
                if short:
                    self._say(f"[accept] another round for {len(short)} tasks below "
                              f"the target: {', '.join(short)}")
                    runs = engine.prepare()
                    i = engine.loop[0]
                    continue
            i = last + 1
        return self.reports

    def _segment_end(self, engine: Engine, runs: list[StageRun], first: int) -> int:
        """The last stage that streams with `first`: consecutive batch stages, cut where a
        generate-until-N round starts or ends (`first` itself when streaming is off)."""
        last = first
        if not self.cfg.stream or not isinstance(runs[first], BatchRun):
            return last
        while last + 1 < len(runs) and isinstance(runs[last + 1], BatchRun):
            if engine.loop is not None and (last + 1 == engine.loop[0] or
                                            last == engine.loop[1]):
                break
            last += 1
        return last

    def _run_segment(self, engine: Engine, runs: list[StageRun], first: int, last: int,
                     stage_done: Callable[[int, dict[int, DoneMarker]], None]) -> None:
        """Batch stages `first..last` streamed: a stage's shard is submitted when the shard it
        reads is committed; upstream shards go first. Each stage is finalized, in order,
        once its last shard is done."""
        from distributed import wait

        segment = runs[first:last + 1]
        pending = [set(run.units()) for run in segment]
        for run, units in zip(segment, pending, strict=True):
            if units:
                engine.before_work(run)
            self._say(f"[{run.stage.name}] {run.shards} shards, {len(units)} to run")
        done: list[dict[int, DoneMarker]] = [{} for _ in segment]

        def show(pos: int) -> None:
            """The progress meter follows the first stage not yet finished."""
            if self.view is not None and pos < len(segment):
                run = segment[pos]
                self.view.start_stage(run.stage.name, run.out.path, len(pending[pos]),
                                      run.index)
                for marker in done[pos].values():
                    self.view.unit_done(marker)

        show(0)
        futures: dict[Any, tuple[int, int]] = {}

        # under a request or token cap, model units run one per worker thread, as without
        # streaming: the gate after each unit then stops the run within a unit per thread
        limit = self._capped_units(engine)
        held: list[tuple[int, int]] = []  # model units waiting for one to finish
        waiting: set[Any] = set()

        models_running = [0]

        def submit(pos: int, unit: int) -> None:
            model = segment[pos].stage.calls_models
            if model and limit is not None and models_running[0] >= limit:
                held.append((pos, unit))
                held.sort()
                return
            models_running[0] += model
            future = self._client.submit(execute_unit, segment[pos], unit, pure=False,
                                         priority=len(segment) - pos)
            futures[future] = (pos, unit)
            waiting.add(future)

        for pos, units in enumerate(pending):
            for unit in sorted(units):
                if pos == 0 or unit not in pending[pos - 1]:
                    submit(pos, unit)
        finished = 0  # stages finalized so far
        try:
            while finished < len(segment):
                while finished < len(segment) and len(done[finished]) == len(pending[finished]):
                    if finished == len(segment) - 1:
                        self._client.run(release_all)
                    segment[finished].finalize()
                    stage_done(first + finished, done[finished])
                    finished += 1
                    show(finished)
                if finished == len(segment):
                    break
                try:
                    ready, waiting = wait(waiting, timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    ready = set()
                for future in ready:
                    pos, unit = futures.pop(future)
                    models_running[0] -= segment[pos].stage.calls_models
                    self._collect(engine, segment[pos], unit, future, done[pos],
                                  len(pending[pos]), shown=pos == finished)
                    if pos + 1 < len(segment) and unit in pending[pos + 1]:
                        submit(pos + 1, unit)
                    if held and segment[pos].stage.calls_models:
                        submit(*held.pop(0))
                if self.view is not None:
                    self.view.tick()
        except TaskseedError:
            self._client.cancel(list(futures))
            raise

    def _run_stage(self, engine: Engine, run: StageRun) -> dict[int, DoneMarker]:
        """The stage's pending units, then its finalize step; the markers of what ran."""
        units = run.units()
        if units and not run.whole_dataset:
            engine.before_work(run)
        self._say(f"[{run.stage.name}] {run.shards} shards, {len(run.pending())} to run")
        if self.view is not None:
            self.view.start_stage(run.stage.name, run.out.path, len(units), run.index)
        if run.whole_dataset:
            ran = engine.run_unit(run, units[0]) if units else {}
        else:
            ran = self._run_units(engine, run, units)
        self._client.run(release_all)
        run.finalize()
        return ran

    def _capped_units(self, engine: Engine) -> int | None:
        """How many model units may run at once under a budget cap (None: no cap)."""
        if not engine.budget.capped:
            return None
        return self.cfg.workers * self.cfg.threads_per_worker

    def _run_units(self, engine: Engine, run: StageRun, units: list[int]
                   ) -> dict[int, DoneMarker]:
        """Units on the cluster's workers; the budget gate after each one that spent, and
        the progress display refreshed while they run."""
        from distributed import wait

        limit = self._capped_units(engine) if run.stage.calls_models else None
        queue = list(units)
        futures: dict[Any, int] = {}
        waiting: set[Any] = set()

        def submit_next() -> None:
            unit = queue.pop(0)
            future = self._client.submit(execute_unit, run, unit, pure=False)
            futures[future] = unit
            waiting.add(future)

        while queue and (limit is None or len(waiting) < limit):
            submit_next()
        done: dict[int, DoneMarker] = {}
        try:
            while waiting:
                try:
                    finished, still = wait(waiting, timeout=1.0,
                                           return_when="FIRST_COMPLETED")
                    waiting.intersection_update(still)
                except TimeoutError:
                    finished = set()
                for future in finished:
                    self._collect(engine, run, futures[future], future, done, len(units))
                    if queue:
                        submit_next()
                if self.view is not None:
                    self.view.tick()
        except TaskseedError:
            self._client.cancel(list(futures))
            raise
        return done

    def _collect(self, engine: Engine, run: StageRun, unit: int, future: Any,
                 done: dict[int, DoneMarker], total: int, shown: bool = True) -> None:
        from distributed import KilledWorker

        from taskseed.execution.worker_crash import explain

        try:
            markers = future.result()
        except KilledWorker as exc:
            worker = exc.last_worker
            line, stderr = explain(run.stage.name, unit, getattr(worker, "pid", None),
                                   self._deaths, self._log_dir or Path("logs"))
            if stderr:
                self._say("the worker's last stderr lines:\n" + stderr)
            raise TaskseedError(line) from None
        except Exception as exc:  # noqa: BLE001 - reported as one line with the shard
            raise TaskseedError(
                f"stage '{run.stage.name}' shard {unit} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(markers, UnitFailed):
            raise TaskseedError(markers.message)
        done.update(markers)
        if self.view is None or not self.view.live:
            self.progress(f"[{run.stage.name}] shard {unit} done ({len(done)}/{total} this run)")
        if self.view is not None and shown:
            for marker in markers.values():
                self.view.unit_done(marker)
        engine.account(run, markers)
        engine.check_budget(run)
