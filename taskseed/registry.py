"""The stages a pipeline config can name: the built-in ones, and those plugins register.

Adding a stage is one module (a `Stage` subclass with a `name` and a `params_model`) and
one line: its class in `BUILTIN` below, or `register_stage(MyStage)` in a plugin module
that a pipeline config lists under `plugins:`.
"""

from __future__ import annotations

import importlib

from taskseed.curation.decontam.semantic import SemanticDecontamStage
from taskseed.curation.decontam.stage import DecontaminateStage
from taskseed.curation.dedup.exact import ExactDedupStage
from taskseed.curation.dedup.fuzzy import FuzzyDedupStage
from taskseed.curation.errors import TaskseedError
from taskseed.curation.mix.export import ExportStage
from taskseed.curation.mix.stage import MixStage
from taskseed.curation.seeds.stage import NormalizeStage, SeedStage
from taskseed.curation.stage import Stage
from taskseed.generation.stages.enrich import EnrichStage
from taskseed.generation.stages.generate import GenerateStage
from taskseed.judges.filters.heuristics import HeuristicsStage
from taskseed.judges.filters.llm_judge import LLMJudgeStage
from taskseed.judges.filters.reward import RewardStage
from taskseed.judges.filters.self_consistency import SelfConsistencyStage
from taskseed.judges.filters.validity import ValidityStage
from taskseed.judges.filters.verify import VerifyStage

BUILTIN: tuple[type[Stage], ...] = (
    SeedStage,
    NormalizeStage,
    GenerateStage,
    ValidityStage,
    HeuristicsStage,
    DecontaminateStage,
    SemanticDecontamStage,
    VerifyStage,
    SelfConsistencyStage,
    LLMJudgeStage,
    RewardStage,
    EnrichStage,
    ExactDedupStage,
    FuzzyDedupStage,
    ExportStage,
    MixStage,
)

_REGISTRY: dict[str, type[Stage]] = {cls.name: cls for cls in BUILTIN}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Make a stage class available to pipeline configs under its `name`."""
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise TaskseedError(f"stage name '{cls.name}' is taken by {known.__module__}."
                            f"{known.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def stage_class(name: str) -> type[Stage] | None:
    return _REGISTRY.get(name)


def stage_names() -> list[str]:
    return list(_REGISTRY)


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules (they call `register_stage`)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise TaskseedError(f"plugin '{name}' cannot be imported: {exc}") from None
