"""Pipeline configuration: YAML files, per-scale overlays, validation and the config hash."""

from __future__ import annotations

import copy
import datetime
import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from taskseed.config.budget import BudgetConfig
from taskseed.config.slurm import SlurmConfig
from taskseed.curation.errors import ConfigError
from taskseed.curation.io.yamlconf import read_yaml, validate
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs
from taskseed.execution.rounds import AcceptConfig
from taskseed.generation.backends.catalog import ModelConfig, TeacherConfig
from taskseed.generation.backends.embedded import EmbeddedConfig

SEEDS_ROOT_ENV = "TASKSEED_SEEDS_ROOT"


class ExecutorConfig(BaseModel):
    """Where stages run: a local Dask cluster (pandas or cuDF backend) or Slurm arrays."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local"] = "local"
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    backend: Literal["pandas", "cudf"] = "pandas"
    memory_limit: str = "auto"
    # Batch stages between barriers (frame stages, the edges of a generate-until-N round)
    # stream: a shard moves to the next stage as soon as it is committed.
    stream: bool = True
    # Shards a worker runs at once while streaming, sharing its one request pool per model
    # (1 where a model runs inside the worker: it answers one caller at a time).
    units_per_worker: int = Field(4, ge=1)


class StageEntry(BaseModel):
    """A stage by name; its other keys are that stage's parameters."""

    model_config = ConfigDict(extra="allow")

    name: str


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    run_dir: str
    seeds_root: str = "../shared/seeds"
    seeds_from: Literal["local", "hub"] = "local"
    tasks: list[str] = Field(min_length=1)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    plugins: list[str] = Field(default_factory=list)  # modules that register stages
    teacher: TeacherConfig = Field(default_factory=EmbeddedConfig)  # the generator
    models: dict[str, ModelConfig] = Field(default_factory=dict)  # judge, reward model...
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    accept: AcceptConfig | None = None  # generate until N accepted per task
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)  # `taskseed submit` only
    stages: list[StageEntry] = Field(min_length=1)


# `teacher` and each `models:` entry are tagged unions: `backend` picks the config class.
TAG = "backend"
DEFAULT_TAG = "embedded"


def _tagged(path: tuple[str, ...]) -> bool:
    return path == ("teacher",) or (len(path) == 2 and path[0] == "models")


def _switches_tag(base: Any, patch: dict[str, Any]) -> bool:
    return isinstance(base, dict) and TAG in patch and patch[TAG] != base.get(TAG, DEFAULT_TAG)


def merge_config(
    base: dict[str, Any], patch: dict[str, Any], where: str, path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`patch` over `base`: mappings merge key by key, lists and scalars are replaced.

    A teacher or named model whose `backend` changes is replaced, not merged; one that gets
    `base_url` loses the base's `server`, and the other way round; a `server` whose `launch`
    changes is replaced. `stages:` given
    as a mapping patches every stage of the list with that name (`{generate: {...}}`); given
    as a list it replaces the list. `where` names the patch in errors.
    """
    out = copy.deepcopy(base)
    for key, value in patch.items():
        here = (*path, key)
        current = out.get(key)
        if here == ("stages",) and isinstance(value, dict):
            out[key] = _patch_stages(current, value, where)
        elif isinstance(value, dict) and isinstance(current, dict) and not (
            _tagged(here) and _switches_tag(current, value)
        ) and not (_tagged(path) and key == "server" and "launch" in value
                   and value["launch"] != current.get("launch")):
            out[key] = merge_config(current, value, where, here)
            if _tagged(here):  # a running server (base_url) or one the job starts (server)
                for given, other in (("base_url", "server"), ("server", "base_url")):
                    if given in value and other not in value:
                        out[key].pop(other, None)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _patch_stages(stages: Any, patches: dict[str, Any], where: str) -> list[Any]:
    if not isinstance(stages, list):
        raise ConfigError(where, "stages", "no stage list to patch; give `stages:` as a list")
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    out = copy.deepcopy(stages)
    for name, params in patches.items():
        key = f"stages.{name}"
        if name not in names:
            raise ConfigError(where, key, f"no stage '{name}' in the stage list "
                                          f"({', '.join(dict.fromkeys(map(str, names)))})")
        if not isinstance(params, dict):
            raise ConfigError(where, key, "a stage patch is a mapping of its parameters")
        if "name" in params:
            raise ConfigError(where, f"{key}.name", "a stage patch cannot rename a stage")
        for i, entry in enumerate(out):
            if isinstance(entry, dict) and entry.get("name") == name:
                out[i] = merge_config(entry, params, where, ("stages", name))
    return out


def _value(text: str) -> Any:
    """A `--set` value as YAML; a time or date (`4:00:00`, `2025-01-31`) stays a string."""
    value = yaml.safe_load(text)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return text.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and ":" in text:
        return text.strip()
    return value


def parse_set(item: str, where: str = "--set") -> dict[str, Any]:
    """`a.b.c=value` as the nested mapping `{a: {b: {c: value}}}`."""
    key, sep, text = item.partition("=")
    label = f"{where} {key.strip() or item}"
    parts = [p.strip() for p in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(label, "", "expected KEY=VALUE with a dotted KEY (a.b.c=value)")
    try:
        value = _value(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(label, "", f"invalid YAML value: {problem}") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def _located(where: str, key: str, message: str) -> ConfigError:
    """A ConfigError that names `key` only where `where` (`--set a.b`) does not already."""
    return ConfigError(where, "" if where.endswith(f" {key}") else key, message)


def apply_sets(data: dict[str, Any], sets: list[str], where: str = "--set") -> dict[str, Any]:
    """Apply `KEY=VALUE` settings in order, with the same rules as an overlay file."""
    for item in sets:
        patch = parse_set(item, where)
        label = f"{where} {item.partition('=')[0].strip()}"
        try:
            data = merge_config(data, patch, label)
        except ConfigError as err:
            raise _located(err.path, err.key, err.message) from None
    return data


def _key_parts(key: str) -> list[str | int]:
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", key)]


def _stage_name(merged: dict[str, Any], index: int) -> Any:
    stages = merged.get("stages")
    if isinstance(stages, list) and 0 <= index < len(stages) and isinstance(stages[index], dict):
        return stages[index].get("name")
    return None


def _reach(layer: dict[str, Any], parts: list[str | int], merged: dict[str, Any]) -> int:
    """How many leading parts of an error key `layer` sets."""
    node: Any = layer
    for depth, part in enumerate(parts):
        if isinstance(part, int) and isinstance(node, dict):  # a stage patch, keyed by name
            part = _stage_name(merged, part)
        if not isinstance(node, (dict, list)):
            return depth
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return depth
    return len(parts)


def blame(layers: list[tuple[str, dict[str, Any]]], key: str, merged: dict[str, Any]) -> str:
    """The layer (config, overlay or `--set`) that set the most of `key`; the latest on a tie."""
    parts = _key_parts(key)
    best, reach = layers[0][0], -1
    for where, layer in layers:
        depth = _reach(layer, parts, merged)
        if depth >= reach and depth > 0:
            best, reach = where, depth
    return best


@dataclass
class LoadedConfig:
    """A validated config with its resolved paths, task specs and hash.

    `resolved["provenance"]` names the config file, overlays and `--set` items it came from;
    the hash leaves it out, so the same settings hash alike however they were given.
    """

    path: Path
    config: PipelineConfig
    resolved: dict[str, Any]
    hash: str
    run_dir: Path
    seeds_root: Path
    specs: dict[str, TaskSpec]
    layers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def source_of(self, key: str) -> str:
        """Which file or `--set` item set `key` (`stages[2].temperature`), for errors."""
        if not self.layers:
            return str(self.path)
        return blame(self.layers, key, self.config.model_dump(mode="json"))


def _task_files(patterns: list[str], base: Path, where: str) -> list[Path]:
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        matches = sorted(glob.glob(str(base / pattern)))
        if not matches:
            raise ConfigError(where, f"tasks[{i}]", f"no task spec matches '{pattern}'")
        files.extend(Path(m) for m in matches)
    return files


def load_config(
    path: Path | str,
    overlays: list[Path] | None = None,
    run_dir: Path | None = None,
    sets: list[str] | None = None,
) -> LoadedConfig:
    """Read a pipeline config, merge its overlays and then `sets` (`KEY=VALUE` items) over
    it, validate the result, and load the task specs.

    Paths in the config (`tasks`, `seeds_root`) are relative to the config file's folder,
    also where an overlay or `--set` gives them.
    """
    path = Path(path)
    layers = [(str(p), read_yaml(Path(p))) for p in [path, *(overlays or [])]]
    data = layers[0][1]
    for where, layer in layers[1:]:
        data = merge_config(data, layer, where)
    if sets:
        data = apply_sets(data, sets)
        layers += [(f"--set {item.partition('=')[0].strip()}", parse_set(item))
                   for item in sets]
    try:
        config = validate(PipelineConfig, data, path)
    except ConfigError as err:
        raise _located(blame(layers, err.key, data), err.key, err.message) from None
    base = path.parent
    seeds_root = Path(os.environ.get(SEEDS_ROOT_ENV) or base / config.seeds_root)
    task_files = _task_files(config.tasks, base, blame(layers, "tasks", data))
    specs = load_task_specs(task_files, hub=config.seeds_from == "hub")
    resolved = config.model_dump(mode="json")
    resolved["tasks"] = [os.path.relpath(p, Path.cwd()) for p in task_files]
    resolved["specs"] = {name: spec.model_dump(mode="json") for name, spec in specs.items()}
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
    resolved["provenance"] = {"config": str(Path(path).resolve()),
                              "overlays": [str(Path(p).resolve()) for p in overlays or []],
                              "sets": list(sets or [])}
    target = run_dir or Path(config.run_dir)
    return LoadedConfig(path, config, resolved, digest, target, seeds_root, specs, layers)
