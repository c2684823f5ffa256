"""Pipeline wiring: the stage entries of a config become a list of stage objects."""

from __future__ import annotations

from taskseed.config import LoadedConfig
from taskseed.curation.errors import ConfigError
from taskseed.curation.stage import BuildContext, Stage
from taskseed.curation.yamlconf import validate
from taskseed.stages import load_plugins, stage_class, stage_names


def build_context(loaded: LoadedConfig) -> BuildContext:
    """What stages are built from; the request cache lives in the run directory unless set."""
    teacher = loaded.config.teacher
    if not teacher.cache_dir:
        cache = str((loaded.run_dir / "cache").resolve())
        teacher = teacher.model_copy(update={"cache_dir": cache})
    return BuildContext(loaded.specs, loaded.seeds_root, loaded.run_dir, teacher)


def build_stages(loaded: LoadedConfig) -> list[Stage]:
    """Validate each stage entry's parameters and build the stages in order."""
    load_plugins(loaded.config.plugins)
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
            raise ConfigError(str(loaded.path), f"stages[{i}].{err.key}", err.message) from None
        stages.append(cls.build(params, context))
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
