"""Pipeline wiring: the stage entries of a config become a list of stage objects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskseed.config.pipeline import LoadedConfig
from taskseed.curation.errors import ConfigError, TaskseedError
from taskseed.curation.io.yamlconf import validate
from taskseed.curation.stage import BuildContext, Stage
from taskseed.generation.model_stage import ModelStage
from taskseed.registry import load_plugins, stage_class, stage_names
from taskseed.rundir.seed_lookup import RunSeeds

if TYPE_CHECKING:
    from taskseed.execution.engine import Engine


def build_context(loaded: LoadedConfig) -> BuildContext:
    """What stages are built from; each model's request cache lives in the run directory
    (`cache/` for the teacher, `cache/<name>/` for other models) unless set."""
    def cached(cfg: Any, folder: Path) -> Any:
        if hasattr(cfg, "cache_dir") and not cfg.cache_dir:
            return cfg.model_copy(update={"cache_dir": str(folder.resolve())})
        return cfg

    cache = loaded.run_dir / "cache"
    teacher = cached(loaded.config.teacher, cache)
    models = {name: cached(cfg, cache / name) for name, cfg in loaded.config.models.items()}
    return BuildContext(loaded.specs, loaded.seeds_root, loaded.run_dir, teacher, models,
                        RunSeeds(loaded.run_dir), loaded.path.parent)


def build_engine(loaded: LoadedConfig, run_dir: Path | None = None) -> Engine:
    """The one way to get an engine from a config: its stages over its run directory (or
    `run_dir`), with its budget and generate-until-N loop."""
    from taskseed.execution.engine import Engine

    return Engine.at(build_stages(loaded), run_dir or loaded.run_dir, loaded.config.budget,
                     loaded.config.accept)


def build_stages(loaded: LoadedConfig) -> list[Stage]:
    """Validate each stage entry's parameters and build the stages in order."""
    load_plugins(loaded.config.plugins)
    if "teacher" in loaded.config.models:
        raise ConfigError(str(loaded.path), "models.teacher",
                          "the generator is configured under `teacher:`")
    known = {"teacher", *loaded.config.models}
    for name in loaded.config.budget.models:
        if name not in known:
            raise ConfigError(str(loaded.path), f"budget.models.{name}",
                              f"no model named '{name}' (known: {', '.join(sorted(known))})")
    context = build_context(loaded)
    stages: list[Stage] = []
    for i, entry in enumerate(loaded.config.stages):
        cls = stage_class(entry.name)
        if cls is None:
            known = ", ".join(stage_names())
            raise ConfigError(
                str(loaded.path), f"stages[{i}].name", f"unknown stage '{entry.name}' ({known})"
            )
        try:
            params = validate(cls.params_model, entry.model_extra or {}, loaded.path)
        except ConfigError as err:
            key = f"stages[{i}].{err.key}"
            raise ConfigError(loaded.source_of(key), key, err.message) from None
        try:
            stages.append(cls.build(params, context))
        except KeyError as err:
            raise ConfigError(str(loaded.path), f"stages[{i}].model", str(err.args[0])) from None
        except ConfigError:
            raise
        except TaskseedError as err:
            raise ConfigError(str(loaded.path), f"stages[{i}]", str(err)) from None
    _check_order(stages, loaded)
    return stages


def _check_order(stages: list[Stage], loaded: LoadedConfig) -> None:
    if stages[0].input_kind is not None:
        raise ConfigError(str(loaded.path), "stages[0]", "the first stage must read seeds")
    for i in range(1, len(stages)):
        want, have = stages[i].input_kind, stages[i - 1].output_kind
        if want is not have:
            raise ConfigError(
                str(loaded.path),
                f"stages[{i}]",
                f"'{stages[i].name}' takes {want.__name__ if want else 'nothing'} "
                f"but '{stages[i - 1].name}' makes {have.__name__}",
            )


def terms_warnings(stages: list[Stage]) -> list[str]:
    """For each model whose text goes into records: a license that differs from the table's,
    and terms under which its records cannot be commercial."""
    from taskseed.curation.terms.model_licenses import load_model_licenses

    policy, out, seen = load_model_licenses(), [], set()
    for stage in stages:
        if not isinstance(stage, ModelStage) or not stage.writes_text:
            continue
        cfg = stage.model_cfg
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        role, name = stage.params.model, cfg.terms_name()
        differs = policy.disagreement(name, cfg.license)
        out += [f"{role}: {differs}"] if differs else []
        terms = cfg.terms()
        if not terms.allows_training:
            why = ("its terms are unknown (set `license:` to an id of "
                   "configs/model_licenses.yaml)" if terms.outputs == "unknown"
                   else f"its terms ({terms.license}) do not allow training on its outputs")
            out.append(f"{role} model {name}: {why}; records with its text are not commercial")
    return out
