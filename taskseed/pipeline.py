"""Pipeline wiring: stage names in a config become a list of stage objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from curation.dedup import ExactDedupParams, ExactDedupStage
from curation.errors import ConfigError
from curation.export import ExportParams, ExportStage
from curation.seeds import NormalizeStage, SeedParams, SeedStage
from curation.stage import Stage
from curation.yamlconf import validate
from generation.backends import TeacherConfig
from generation.enrich import EnrichParams, EnrichStage
from generation.generate import GenerateParams, GenerateStage
from judges.validity import ValidityParams, ValidityStage
from taskseed.config import LoadedConfig


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


Builder = Callable[[Any, LoadedConfig], Stage]

STAGES: dict[str, tuple[type[BaseModel], Builder]] = {
    "seeds": (SeedParams, lambda p, c: SeedStage(p, c.specs, c.seeds_root)),
    "normalize": (NoParams, lambda p, c: NormalizeStage(p, c.specs)),
    "generate": (GenerateParams, lambda p, c: GenerateStage(p, teacher_config(c))),
    "enrich": (EnrichParams, lambda p, c: EnrichStage(p, teacher_config(c))),
    "validity": (ValidityParams, lambda p, c: ValidityStage(p)),
    "exact_dedup": (ExactDedupParams, lambda p, c: ExactDedupStage(p)),
    "export": (ExportParams, lambda p, c: ExportStage(p)),
}


def teacher_config(loaded: LoadedConfig) -> TeacherConfig:
    """The teacher config, with the request cache in the run directory unless set."""
    cfg = loaded.config.teacher
    if cfg.cache_dir:
        return cfg
    return cfg.model_copy(update={"cache_dir": str((loaded.run_dir / "cache").resolve())})


def build_stages(loaded: LoadedConfig) -> list[Stage]:
    """Validate each stage entry's parameters and build the stages in order."""
    stages: list[Stage] = []
    for i, entry in enumerate(loaded.config.stages):
        if entry.name not in STAGES:
            known = ", ".join(STAGES)
            raise ConfigError(
                str(loaded.path), f"stages[{i}].name", f"unknown stage '{entry.name}' ({known})"
            )
        model, build = STAGES[entry.name]
        try:
            params = validate(model, entry.model_extra or {}, loaded.path)
        except ConfigError as err:
            raise ConfigError(str(loaded.path), f"stages[{i}].{err.key}", err.message) from None
        stages.append(build(params, loaded))
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
