"""Running a pipeline config end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from taskseed.config.pipeline import LoadedConfig, load_config
from taskseed.curation.errors import TaskseedError
from taskseed.execution.engine import Engine, model_of
from taskseed.execution.local import LocalExecutor, Progress, stderr_progress
from taskseed.execution.pipeline import build_engine, terms_warnings
from taskseed.execution.serving import serving
from taskseed.views.summary import write_summary


def run_pipeline(
    config_path: Path,
    overlays: list[Path] | None = None,
    run_dir: Path | None = None,
    progress: Progress = stderr_progress,
    sets: list[str] | None = None,
) -> dict[str, Any]:
    """Run every stage; rerunning on the same run directory only finishes what is missing."""
    start = time.perf_counter()
    loaded = load_config(config_path, overlays, run_dir, sets=sets)
    engine = build_engine(loaded)
    engine.run_dir.write_config(loaded.resolved, loaded.hash)
    with serving(loaded, models_with_work(engine), loaded.run_dir / "logs") as served:
        if served is not loaded:  # the stages call the servers this run started
            engine = build_engine(served)
        return _execute(engine, served, progress, start)


def in_process_gpus(engine: Engine) -> int:
    """The most GPUs a stage's model takes inside a worker (0: no in-process GPU model)."""
    from taskseed.generation.model_stage import ModelStage

    return max((s.model_cfg.in_process_gpus() for s in engine.stages
                if isinstance(s, ModelStage)), default=0)


def unit_threads(engine: Engine, units_per_worker: int) -> int:
    """Shards a worker runs at once: `units_per_worker` when every model of the run is
    asked over HTTP (one request pool per process, shared), else 1."""
    from taskseed.generation.model_stage import ModelStage

    shared = all(s.model_cfg.concurrent_callers for s in engine.stages
                 if isinstance(s, ModelStage))
    return units_per_worker if shared else 1


def models_with_work(engine: Engine) -> set[str]:
    """The named models of model stages, when any stage has work left (a generate-until-N
    loop may add a round)."""
    runs = engine.prepare()
    if engine.loop is None and not any(run.units() for run in runs):
        return set()
    return {model_of(run.stage) for run in runs if run.stage.calls_models}


def _execute(engine: Engine, loaded: LoadedConfig, progress: Progress,
             start: float) -> dict[str, Any]:
    stages = engine.stages
    progress(f"run {engine.run_dir.path}: {len(stages)} stages, {len(loaded.specs)} tasks")
    for warning in terms_warnings(stages):
        progress(f"warning: {warning}")
    cfg = loaded.config.executor
    executor = LocalExecutor(cfg, progress, in_process_gpus(engine),
                             unit_threads(engine, cfg.units_per_worker) if cfg.stream else 1)
    try:
        with executor:
            executor.run(engine)
    except TaskseedError as err:
        write_summary(engine.run_dir, loaded.hash, executor.reports,
                      time.perf_counter() - start, str(err), engine.acceptance,
                      loaded.config.budget)
        raise
    summary = write_summary(engine.run_dir, loaded.hash, executor.reports,
                            time.perf_counter() - start, None, engine.acceptance,
                            loaded.config.budget)
    return {**summary, **_write_views(engine.run_dir.path, progress)}


def _write_views(run_dir: Path, progress: Progress) -> dict[str, str]:
    """The dataset card beside the final data and the run report; their paths."""
    from taskseed.views.card.card import write_card
    from taskseed.views.report.render import write_report

    views: dict[str, str] = {}
    card = write_card(run_dir)
    if card is not None:
        views["card"] = str(card)
    try:
        views["report"] = str(write_report(run_dir))
    except TaskseedError as err:
        progress(f"the run report was not written: {err}")
    return views
