"""Task specs: where a task's data lives, which split seeds it, and how to read its rows."""

from __future__ import annotations

from math import inf
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from taskseed.curation.errors import ConfigError
from taskseed.curation.io.yamlconf import read_yaml, tag_discriminator, validate
from taskseed.curation.record import Format


def is_commercial(license_id: str) -> bool:
    """Whether a license is on the commercial allowlist of configs/licenses.yaml (unknown and
    unlisted licenses never are)."""
    from taskseed.curation.terms.dataset_licenses import load_license_policy

    return load_license_policy().commercial([license_id])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecError(ValueError):
    """A spec-level rule broken at `key` (reported as a one-line ConfigError)."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


class RowFilter(Strict):
    """Keep only rows whose `field` lies in [min, max] or equals one of `values`.

    Used where one file holds several splits (MBPP: the split is a task_id range).
    """

    field: str
    min: float | None = None
    max: float | None = None
    values: list[str | int] | None = None


class RowSteps(Strict):
    """Row-level steps every mapping may take before its fields are read.

    - `explode`: top-level fields holding parallel lists; each row becomes one row per
      item with those fields set to the item (a string field is decoded as JSON or a
      Python literal first). Row indices then count the exploded items of a file.
    - `where`: keeps only the rows of this split when one file holds several splits.
    - `process_docs`: `module.attr` of a function applied to a hub split (a `datasets`
      Dataset) before its rows are read, as lm-eval's `process_docs`.
    - `license`: the path of a row field holding that row's license, for sources whose
      rows carry different licenses (rows without one have the task's license).
    """

    explode: list[str] = Field(default_factory=list)
    where: RowFilter | None = None
    process_docs: str | None = None
    license: str | None = None


class FieldsMapping(RowSteps):
    """Record fields read from row fields by path (`parser: fields`, the default).

    Paths are dotted (`question.stem`), with `[*]` to map over a list
    (`question.choices[*].text`) and `[N]` to index. `choices` may also be a
    list of paths, one per option.

    - `choices_format`: `lettered` reads choices from one string such as
      `a ) 38 , b ) 27 , c ) 30`.
    - `strip_choice_labels`: removes a leading `A.`/`(B)`/`C )` from the N-th choice.
    - `answer_key`: a label or index resolved against the choices (`choice_labels`, or
      A, B, C...; numbers count from `answer_key_base`).
    - `answer_default`: the answer used when the answer field is missing or empty
      (e.g. `unanswerable` for SQuAD 2.0 questions without an answer).
    - `final_answer_marker`: the answer field holds a worked solution, then this marker,
      then the final answer (GSM8K's `####`).
    """

    parser: Literal["fields"] = "fields"
    question: str | None = None
    context: str | None = None
    choices: str | list[str] | None = None
    choices_format: Literal["list", "lettered"] = "list"
    strip_choice_labels: bool = False
    choice_labels: str | None = None
    answer: str | None = None
    answer_key: str | None = None
    answer_key_base: int = 0
    answer_default: str | None = None
    final_answer_marker: str | None = None
    reasoning: str | None = None
    knowledge: str | None = None
    tests: str | None = None


class AdaptersMapping(RowSteps):
    """Question and options parsed out of an LLM-Adapters `instruction` string."""

    parser: Literal["llm_adapters"]


class JinjaMapping(RowSteps):
    """lm-eval style templates rendered against the row (`doc_to_text`/`doc_to_choice`/
    `doc_to_target`). A template without `{{` that names a row field reads that field, and
    `!function module.attr` calls that Python function with the row."""

    parser: Literal["jinja"]
    text_template: str
    choices_template: str | list[str] | None = None
    target_template: str | int | None = None
    context: str | None = None


Mapping = Annotated[
    Annotated[FieldsMapping, Tag("fields")]
    | Annotated[AdaptersMapping, Tag("llm_adapters")]
    | Annotated[JinjaMapping, Tag("jinja")],
    tag_discriminator("parser", "fields", ["fields", "llm_adapters", "jinja"]),
]
"""How to read one row layout into record fields, by `parser`."""

_MAPPING: TypeAdapter[FieldsMapping | AdaptersMapping | JinjaMapping] = TypeAdapter(Mapping)


def parse_mapping(data: dict[str, Any]) -> FieldsMapping | AdaptersMapping | JinjaMapping:
    """A mapping from its YAML form (`parser` picks the kind; `fields` by default)."""
    return _MAPPING.validate_python(data)


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
