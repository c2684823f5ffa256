"""Model licenses and what their terms say about training on a model's outputs.

configs/model_licenses.yaml lists terms by license id (`outputs`: `allowed`, `conditional`
with the obligations that come with it, or `forbidden`) and the model families that carry
them, matched by name. A model whose name matches no family has `unknown` terms, and text
written by a model with `forbidden` or `unknown` terms is never commercial.

The file is the repository's: a run config may name a model's license, but only one of
the ids listed here, and where the table knows the model the stricter of the two counts.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from taskseed.curation.io.yamlconf import read_yaml, validate

UNKNOWN = "unknown"
Use = Literal["allowed", "conditional", "forbidden"]
# How strict each kind of terms is, for picking between a declared and a listed license.
STRICTNESS = {"allowed": 0, "conditional": 1, UNKNOWN: 2, "forbidden": 3}


def _https(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an https URL")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermsEntry(_Strict):
    """One license or terms of use: its name, what it allows for outputs, and where read."""

    name: str
    outputs: Use
    obligations: list[str] = []
    source: HttpsUrl
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TermsEntry:
        if self.outputs == "conditional" and not self.obligations:
            raise ValueError("conditional terms list their `obligations`")
        if self.outputs != "conditional" and self.obligations:
            raise ValueError("only conditional terms have `obligations`")
        if self.outputs == "forbidden" and not self.note:
            raise ValueError("forbidden terms need a `note` quoting what they forbid")
        return self


class FamilyEntry(_Strict):
    """Model names (shell-style patterns, case-insensitive) and the license they carry."""

    match: list[str]
    license: str
    source: HttpsUrl


class ModelLicensesFile(_Strict):
    """The whole of configs/model_licenses.yaml."""

    terms: dict[str, TermsEntry]
    models: list[FamilyEntry]

    @model_validator(mode="after")
    def _known_ids(self) -> ModelLicensesFile:
        if UNKNOWN in self.terms:
            raise ValueError(f"'{UNKNOWN}' is reserved for models the table does not know")
        for entry in self.models:
            if entry.license not in self.terms:
                raise ValueError(f"models: {entry.match[0]!r} names license "
                                 f"'{entry.license}', which `terms` does not list")
        return self


@dataclass(frozen=True, slots=True)
class ModelTerms:
    """The terms that apply to one model's outputs."""

    license: str
    outputs: str  # allowed, conditional, forbidden or unknown
    obligations: tuple[str, ...] = ()
    source: str | None = None
    note: str | None = None

    @property
    def allows_training(self) -> bool:
        """Whether text the model wrote may train other models (obligations aside)."""
        return self.outputs in ("allowed", "conditional")

    def identity(self) -> list[object]:
        """What decides a record's commercial flag and lineage (for stage fingerprints)."""
        return [self.license, self.outputs, list(self.obligations)]


UNKNOWN_TERMS = ModelTerms(UNKNOWN, UNKNOWN, note="no license was named for this model and "
                           "configs/model_licenses.yaml lists no family that matches it")


@dataclass(frozen=True)
class ModelLicensePolicy:
    """The terms by license id and the model families that carry them."""

    path: Path
    terms: dict[str, TermsEntry]
    families: list[FamilyEntry] = field(default_factory=list)

    def knows(self, license_id: str) -> bool:
        return license_id == UNKNOWN or license_id in self.terms

    def terms_of(self, license_id: str) -> ModelTerms:
        """The terms of a license id ("unknown" for an id the table does not list)."""
        entry = self.terms.get(license_id)
        if entry is None:
            return UNKNOWN_TERMS
        return ModelTerms(license_id, entry.outputs, tuple(entry.obligations), entry.source,
                          entry.note)

    def listed(self, model: str | None) -> FamilyEntry | None:
        """The family a model name belongs to: its last path part, matched case-insensitively
        (`meta-llama/Llama-3.1-8B-Instruct` and `llama-3.1-8b-instruct.gguf` alike)."""
        if not model:
            return None
        name = model.rstrip("/").rsplit("/", 1)[-1].lower()
        for family in self.families:
            if any(fnmatch.fnmatchcase(name, p.lower()) for p in family.match):
                return family
        return None

    def resolve(self, model: str | None, declared: str | None = None) -> ModelTerms:
        """The terms of a model: the declared license, the listed one, or the stricter of
        the two when both are known and differ; unknown when neither is."""
        family = self.listed(model)
        listed = self.terms_of(family.license) if family else None
        if declared is None:
            return listed or UNKNOWN_TERMS
        named = self.terms_of(declared)
        if listed is None or STRICTNESS[listed.outputs] >= STRICTNESS[named.outputs]:
            return listed or named
        return named

    def disagreement(self, model: str | None, declared: str | None) -> str | None:
        """A warning when a declared license differs from the one listed for the model."""
        family = self.listed(model)
        if declared is None or family is None or family.license == declared:
            return None
        used = self.resolve(model, declared).license
        return (f"model '{model}' is listed as {family.license} ({family.source}) but the "
                f"config names {declared}; the stricter, {used}, applies")


def default_model_licenses_path() -> Path:
    """The repository's configs/model_licenses.yaml."""
    return Path(__file__).resolve().parents[2] / "configs" / "model_licenses.yaml"


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> ModelLicensePolicy:
    data = validate(ModelLicensesFile, read_yaml(path), path)
    return ModelLicensePolicy(path, dict(data.terms), list(data.models))


def load_model_licenses(path: Path | str | None = None) -> ModelLicensePolicy:
    """Load and validate the model licenses table (the repository's by default); a bad file
    is a one-line ConfigError naming the file and key."""
    target = Path(path) if path is not None else default_model_licenses_path()
    try:
        mtime = target.stat().st_mtime_ns
    except OSError:
        read_yaml(target)
        raise
    return _load(target, mtime)
