"""Task specs: where a task's data lives, which split seeds it, and how to read its rows."""

from __future__ import annotations

from math import inf
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)
from taskseed.curation.errors import ConfigError
from taskseed.curation.io.yamlconf import read_yaml, validate
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers import Mapping
from taskseed.curation.seeds.parsers.base import RowFilter, Strict
from taskseed.curation.seeds.parsers.fields import FieldsMapping


def is_commercial(license_id: str) -> bool:
    """Whether a license is on the commercial allowlist of configs/licenses.yaml (unknown and
    unlisted licenses never are)."""
    from taskseed.curation.terms.dataset_licenses import load_license_policy

    return load_license_policy().commercial([license_id])


class SpecError(ValueError):
    """A spec-level rule broken at `key` (reported as a one-line ConfigError)."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


class HubSource(Strict):
    """A split as published on the Hugging Face hub.

    `mapping` is the hub row layout when it differs from the local files' layout
    (None: the same mapping as the files). `revision` is a commit of the dataset repo
    (None: not pinned).
    """

    path: str
    name: str | None = None
    split: str
    revision: str | None = None
    mapping: Mapping | None = None


class SplitSpec(Strict):
    """One split of a task: local files under the seeds root, and/or a hub source.

    `files` are relative to the seeds root and may be glob patterns (`mmlu/test/*.csv`).
    `label_files`, when given, are line-aligned label files (`*.lst`), one per file:
    line N of a label file becomes the field `label_field` of row N of its file.
    `reader` picks the file format (`auto`: by suffix: .jsonl/.ndjson, .json, .csv, .tsv,
    .parquet, each also as .gz or .zst); `delimiter` sets a csv file's separator (e.g. `|`);
    `blocks` reads blank-line separated text blocks whose lines are named by `block_lines`
    (a name given several times collects those lines into a list).
    """

    split: str
    files: list[str] = Field(default_factory=list)
    label_files: list[str] = Field(default_factory=list)
    label_field: str = "label"
    reader: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "blocks"] = "auto"
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    block_lines: list[str] = Field(default_factory=list)
    hub: HubSource | None = None
    mapping: Mapping = Field(default_factory=FieldsMapping)

    @model_validator(mode="after")
    def _has_data(self) -> SplitSpec:
        if not self.files and self.hub is None:
            raise ValueError("a split needs `files` or `hub`")
        if self.label_files and len(self.label_files) != len(self.files):
            raise ValueError("`label_files` needs one label file per entry of `files`")
        if self.reader == "blocks" and not self.block_lines:
            raise ValueError("`reader: blocks` needs `block_lines`")
        if not self.files and self.hub is not None and self.hub.mapping is not None:
            if "mapping" in self.model_fields_set and self.mapping != self.hub.mapping:
                raise ValueError("a hub-only split gives its row layout once: `mapping` "
                                 "or `hub.mapping`")
            self.mapping = self.hub.mapping
        return self

    def hub_variant(self) -> SplitSpec | None:
        """This split read from the hub with the hub row layout, or None without a hub."""
        if self.hub is None:
            return None
        return SplitSpec(
            split=self.split,
            hub=self.hub,
            mapping=self.hub.mapping or self.mapping,
        )


class DatasetRef(Strict):
    dataset: str
    config: str | None = None


class TaskSpec(Strict):
    """A task: its identity, license, training split and held-out eval splits."""

    name: str
    family: str
    format: Format
    license: str
    commercial: bool | None = None
    source: DatasetRef
    scored_split: str
    train: SplitSpec | None = None
    eval: list[SplitSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_leaks(self) -> TaskSpec:
        # `commercial: false` may narrow the allowlist, never widen it
        self.commercial = is_commercial(self.license) and self.commercial is not False
        if self.train is None:
            return self
        split = self.train.split
        if split == self.scored_split:
            raise SpecError(
                "train.split",
                f"split '{split}' is the scored split of task '{self.name}' and can never "
                "be a seed (a task whose only training split is scored has no seeds)",
            )
        if split in {s.split for s in self.eval}:
            raise SpecError(
                "train.split",
                f"split '{split}' is a held-out eval split of task '{self.name}' "
                "and can never be a seed",
            )
        if split.lower() in HELD_OUT_SPLIT_NAMES:
            raise SpecError("train.split", f"split '{split}' is held out by name and cannot seed")
        for held in self.eval:
            for i, name in enumerate(self.train.files):
                if name in held.files and not _disjoint(self.train.mapping, held.mapping):
                    raise SpecError(
                        f"train.files[{i}]",
                        f"'{name}' is also a file of held-out split '{held.split}' and no "
                        "disjoint `where` filters keep their rows apart",
                    )
        if (
            self.train.hub is not None
            and self.train.hub.split.lower() in HELD_OUT_SPLIT_NAMES
        ):
            raise SpecError(
                "train.hub.split",
                f"hub split '{self.train.hub.split}' is held out by name and cannot seed",
            )
        return self

    def hub_variant(self) -> TaskSpec:
        """This task read from the hub: every split with a `hub` source, in its hub layout.

        A training split without a hub source becomes None; eval splits without one
        are dropped.
        """
        data = self.model_dump()
        train = self.train.hub_variant() if self.train is not None else None
        data["train"] = train.model_dump() if train is not None else None
        data["eval"] = [
            v.model_dump() for v in (s.hub_variant() for s in self.eval) if v is not None
        ]
        return TaskSpec.model_validate(data)


def _disjoint(a: Mapping, b: Mapping) -> bool:
    """Whether two mappings' `where` filters on the same field can never keep the same row:
    disjoint value lists, disjoint ranges, or values that all lie outside the other's range."""
    fa, fb = a.where, b.where
    if fa is None or fb is None or fa.field != fb.field:
        return False
    if fa.values is not None and fb.values is not None:
        return not {str(v) for v in fa.values} & {str(v) for v in fb.values}
    if fa.values is not None or fb.values is not None:
        listed, ranged = (fa, fb) if fa.values is not None else (fb, fa)
        return not any(_in_range(v, ranged) for v in listed.values or [])
    return _bounds(fa)[1] < _bounds(fb)[0] or _bounds(fb)[1] < _bounds(fa)[0]


def _bounds(where: RowFilter) -> tuple[float, float]:
    return (where.min if where.min is not None else -inf,
            where.max if where.max is not None else inf)


def _in_range(value: str | int, where: RowFilter) -> bool:
    """Whether a listed value could pass a range filter (non-numbers never do)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    lo, hi = _bounds(where)
    return lo <= number <= hi


HELD_OUT_SPLIT_NAMES = frozenset({"test", "validation", "valid", "val", "dev", "eval"})


def parse_task_spec(data: dict, path: Path | str) -> TaskSpec:
    """Validate spec data; every problem is a one-line ConfigError naming file and key."""
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):
            raise ConfigError(str(path), cause.key, cause.message) from None
    return validate(TaskSpec, data, path)


def load_task_spec(path: Path, *, hub: bool = False) -> TaskSpec:
    """Load one spec; with `hub=True`, its hub variant (see `TaskSpec.hub_variant`)."""
    spec = parse_task_spec(read_yaml(path), path)
    return spec.hub_variant() if hub else spec


def load_task_specs(paths: list[Path], *, hub: bool = False) -> dict[str, TaskSpec]:
    """Load specs and index them by task name; names must be unique."""
    specs: dict[str, TaskSpec] = {}
    for path in paths:
        spec = load_task_spec(path, hub=hub)
        if spec.name in specs:
            raise ConfigError(str(path), "name", f"task '{spec.name}' is defined twice")
        specs[spec.name] = spec
    return specs
