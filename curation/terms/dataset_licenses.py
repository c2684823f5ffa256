"""Dataset licenses and the commercial-use policy, read from configs/licenses.yaml.

The file maps each Hugging Face dataset path to the license found on its card or upstream
repository, and lists the licenses whose data may go into a commercial training mix. A path
that is not listed, or is listed as "unknown", is never commercial.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from taskseed.curation.io.yamlconf import read_yaml, validate

UNKNOWN = "unknown"
OTHER = "other"
_LICENSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
_NO_DERIVATIVES = re.compile(r"(-ND\b|ND-|no[- ]?deriv)", re.IGNORECASE)
_NON_COMMERCIAL = re.compile(r"(-NC\b|NC-|non[- ]?commercial|research[- ]only)", re.IGNORECASE)


def _check_id(value: str) -> str:
    if not _LICENSE_ID.match(value):
        raise ValueError(f"'{value}' is not an SPDX-style license id (letters, digits, . + -)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LicenseEntry(_Strict):
    """The license of one dataset (or one of its configs) and where it was read."""

    license: str
    source: str | None
    note: str | None = None
    bundled: bool = False

    @field_validator("license")
    @classmethod
    def _license_id(cls, value: str) -> str:
        return _check_id(value)

    @field_validator("source")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or any(c.isspace() for c in value):
            raise ValueError("source must be an https URL (or null for an unknown license)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LicenseEntry:
        if self.license == UNKNOWN:
            if self.source is not None:
                raise ValueError("an unknown license has `source: null`")
            if not self.note:
                raise ValueError("an unknown license needs a `note` saying what was checked")
            if self.bundled:
                raise ValueError("bundled data has a known license")
        elif self.source is None and not self.bundled:
            raise ValueError(f"license '{self.license}' needs the https `source` it was read from")
        if self.bundled and not self.note:
            raise ValueError("bundled data needs a `note` saying where it comes from")
        return self


class DatasetLicense(LicenseEntry):
    """A dataset's license, with optional per-config overrides."""

    configs: dict[str, LicenseEntry] = Field(default_factory=dict)


class LicensesFile(_Strict):
    """The whole of configs/licenses.yaml."""

    commercial_allowlist: list[str]
    datasets: dict[str, DatasetLicense]

    @field_validator("commercial_allowlist")
    @classmethod
    def _admissible(cls, values: list[str]) -> list[str]:
        for value in values:
            _check_id(value)
            lowered = value.lower()
            if (lowered in {UNKNOWN, OTHER} or lowered.startswith("licenseref-")
                    or _NON_COMMERCIAL.search(value) or _NO_DERIVATIVES.search(value)):
                raise ValueError(f"'{value}' cannot be on the commercial allowlist (it is "
                                 "NC, ND, research-only, custom, other or unknown)")
        return values


@dataclass(frozen=True)
class LicensePolicy:
    """Licenses by dataset path and the allowlist that decides commercial use."""

    path: Path
    allowlist: frozenset[str]
    datasets: Mapping[str, DatasetLicense]

    @classmethod
    def from_file(cls, data: LicensesFile, path: Path) -> LicensePolicy:
        allow = frozenset(a.casefold() for a in data.commercial_allowlist)
        return cls(path=path, allowlist=allow, datasets=dict(data.datasets))

    def is_listed(self, dataset_path: str) -> bool:
        return dataset_path in self.datasets

    def entry(self, dataset_path: str, config: str | None = None) -> LicenseEntry | None:
        """The entry for a dataset path (a config's override when there is one), or None."""
        found = self.datasets.get(dataset_path)
        if found is None or config is None:
            return found
        return found.configs.get(config, found)

    def license_of(self, dataset_path: str, config: str | None = None) -> str:
        """The recorded license id, or "unknown" for a path that is not listed."""
        found = self.entry(dataset_path, config)
        return found.license if found else UNKNOWN

    def allows(self, license_id: str) -> bool:
        """Whether one license is on the allowlist (SPDX ids compare case-insensitively)."""
        return license_id.strip().casefold() in self.allowlist

    def commercial(self, licenses: Iterable[str]) -> bool:
        """True only when there is at least one license and every one is on the allowlist."""
        ids = list(licenses)
        return bool(ids) and all(self.allows(i) for i in ids)


def default_licenses_path() -> Path:
    """The repository's configs/licenses.yaml."""
    return Path(__file__).resolve().parents[2] / "configs" / "licenses.yaml"


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> LicensePolicy:
    return LicensePolicy.from_file(validate(LicensesFile, read_yaml(path), path), path)


def load_license_policy(path: Path | str | None = None) -> LicensePolicy:
    """Load and validate a licenses file (the repository's by default).

    A missing or invalid file raises a one-line ConfigError naming the file and key.
    """
    target = Path(path) if path is not None else default_licenses_path()
    try:
        mtime = target.stat().st_mtime_ns
    except OSError:
        read_yaml(target)  # raises the one-line "file not found" / "cannot read" error
        raise
    return _load(target, mtime)
