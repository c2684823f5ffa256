"""The stages a pipeline config can name: those in the stage folders, and those plugins
register.

Every `Stage` subclass with its own `name` defined in a module of a stage folder
(`STAGE_FOLDERS`) is a built-in stage, so adding a stage is adding its module there. Code
outside the repository calls `register_stage(MyStage)` in a module that a pipeline config
lists under `plugins:`.
"""

from __future__ import annotations

import importlib
from typing import Any

from taskseed.curation.catalog import members
from taskseed.curation.errors import TaskseedError
from taskseed.curation.stage import Stage

# The folders that hold stages, one concern each.
STAGE_FOLDERS = (
    "taskseed.curation.seeds",
    "taskseed.curation.decontam",
    "taskseed.curation.dedup",
    "taskseed.curation.mix",
    "taskseed.generation.stages",
    "taskseed.judges.filters",
)


def _is_stage(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Stage) and "name" in vars(value)


BUILTIN: tuple[type[Stage], ...] = tuple(
    cls for folder in STAGE_FOLDERS for cls in members(folder, _is_stage))

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
