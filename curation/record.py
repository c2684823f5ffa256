"""The one record schema shared by seed and generated examples."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any

import xxhash
from taskseed.curation.formats import Format

__all__ = ["Format", "Lineage", "ModelText", "Origin", "RawRow", "Record", "Reject", "Sampling",
           "Source"]


class Origin(enum.StrEnum):
    SEED = "seed"
    GENERATED = "generated"


@dataclass(slots=True)
class Source:
    """Where a seed came from: dataset, config, split and row."""

    dataset: str
    config: str | None = None
    split: str = "train"
    row: int = 0
    path: str | None = None


@dataclass(slots=True)
class Sampling:
    """Sampling parameters of a teacher request."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None


@dataclass(slots=True)
class ModelText:
    """A model whose text a record contains: the stage that asked it, its name and license."""

    stage: str
    model: str
    license: str


@dataclass(slots=True)
class Lineage:
    """How a record was made: its seeds, teacher, prompt template and sampling, and every
    model whose text it contains (`models`: the generator, an enricher; not a judge)."""

    seed_ids: list[str] = field(default_factory=list)
    teacher_model: str | None = None
    prompt_template: str | None = None
    prompt_hash: str | None = None
    sampling: Sampling | None = None
    stage: str | None = None
    models: list[ModelText] = field(default_factory=list)


@dataclass(slots=True)
class Record:
    """One task example, seed or generated. Answers are semantic text."""

    task: str
    family: str
    format: Format
    question: str
    answer: str
    license: str
    source: Source
    origin: Origin = Origin.SEED
    context: str | None = None
    choices: list[str] = field(default_factory=list)
    answer_label: str | None = None
    reasoning: str | None = None
    knowledge: str | None = None
    tests: list[str] = field(default_factory=list)
    commercial: bool = True
    lineage: Lineage = field(default_factory=Lineage)
    scores: dict[str, float] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.format, Format):
            self.format = Format(self.format)
        if not isinstance(self.origin, Origin):
            self.origin = Origin(self.origin)
        if not self.id:
            self.id = self.content_hash()

    def content_hash(self) -> str:
        """Stable id over the content that makes an example what it is."""
        payload = json.dumps(
            [self.task, self.format.value, self.context or "", self.question,
             self.choices, self.answer],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return xxhash.xxh3_128_hexdigest(payload.encode("utf-8"))

    def to_dict(self) -> dict[str, Any]:
        """The record as plain dicts and lists (what `dataclasses.asdict` gives, without its
        deep copies: the mix and every shard commit convert each record once)."""
        out = _flat(self)
        out["format"] = self.format.value
        out["origin"] = self.origin.value
        out["source"] = _flat(self.source)
        out["choices"] = list(self.choices)
        out["tests"] = list(self.tests)
        out["scores"] = dict(self.scores)
        lineage = _flat(self.lineage)
        lineage["seed_ids"] = list(self.lineage.seed_ids)
        if self.lineage.sampling is not None:
            lineage["sampling"] = _flat(self.lineage.sampling)
        lineage["models"] = [_flat(m) for m in self.lineage.models]
        out["lineage"] = lineage
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        data["source"] = Source(**data["source"])
        lineage = dict(data.get("lineage") or {})
        if lineage.get("sampling"):
            lineage["sampling"] = Sampling(**lineage["sampling"])
        lineage["seed_ids"] = list(lineage.get("seed_ids") or [])
        lineage["models"] = [ModelText(**m) for m in lineage.get("models") or []]
        data["lineage"] = Lineage(**lineage)
        data["choices"] = list(data.get("choices") or [])
        data["tests"] = list(data.get("tests") or [])
        data["scores"] = dict(data.get("scores") or {})
        return cls(**data)


_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(kind))
           for kind in (Record, Source, Sampling, ModelText, Lineage)}


def _flat(item: Record | Source | Sampling | ModelText | Lineage) -> dict[str, Any]:
    """A dataclass's fields as a dict, in field order, values as they are."""
    return {name: getattr(item, name) for name in _FIELDS[type(item)]}


@dataclass(slots=True)
class RawRow:
    """A row of a seed file before normalization, with its provenance."""

    task: str
    source: Source
    payload: str  # the row as JSON text

    @property
    def id(self) -> str:
        """Where the row came from, as `path:row` (rows have no content id yet)."""
        return f"{self.source.path}:{self.source.row}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RawRow:
        return cls(task=data["task"], source=Source(**data["source"]), payload=data["payload"])


@dataclass(slots=True)
class Reject:
    """A dropped item and the reason it was dropped."""

    stage: str
    reason: str
    detail: str
    item_id: str
    item: str  # the dropped item as JSON text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reject:
        return cls(**data)

    @classmethod
    def of(cls, stage: str, reason: str, detail: str, item: Any) -> Reject:
        """The reject of any item with an `id` and a `to_dict()` (a record, a raw row...)."""
        data = json.dumps(item.to_dict(), ensure_ascii=False)
        return cls(stage, reason, detail, item.id, data)
