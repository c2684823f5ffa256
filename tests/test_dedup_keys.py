"""Exact-dedup keys: field boundaries survive normalization; one 64-bit hash on both backends."""

from __future__ import annotations

import pandas as pd
import pytest
import xxhash
from taskseed.curation.dedup.exact import dedup_keys
from taskseed.curation.io.frames import hash_strings

ROWS = pd.DataFrame({
    "context": ["a b", "a", None, None, "Ünïcode  passage"],
    "question": ["c", "b c", "What is 2+2?", "what is 2 + 2", "Où est-il?"],
    "answer": ["x", "x", "4", "4.", "là"],
})


def test_moving_words_between_fields_changes_the_key() -> None:
    keys = dedup_keys(ROWS).tolist()
    assert keys[0] != keys[1]  # "a b" + "c" is not "a" + "b c"
    assert keys[2] == keys[3]  # case, punctuation and spacing are normalized away
    assert len(set(keys)) == 4


def test_pandas_keys_are_xxhash64_of_utf8() -> None:
    texts = pd.Series(["", "a\x1fb", "Ünïcode", "x" * 1000])
    hashes = hash_strings(texts)
    assert str(hashes.dtype) == "uint64"
    assert hashes.tolist() == [xxhash.xxh64_intdigest(t.encode("utf-8")) for t in texts]


def test_cudf_keys_agree_with_pandas_keys() -> None:
    cudf = pytest.importorskip("cudf", reason="cuDF runs on GPU nodes only")
    on_gpu = dedup_keys(cudf.from_pandas(ROWS)).to_pandas().tolist()
    assert on_gpu == dedup_keys(ROWS).tolist()


def libcudf_normalized(text: str) -> str:
    """`normalized_text` by libcudf's documented rules: lowercasing and the `\\w`/`\\s` classes
    cover code points up to U+FFFF only, so a character above it stays as it is when
    lowercased and is never a word character."""
    import re

    low = "".join(ch.lower() if ord(ch) <= 0xFFFF else ch for ch in text)
    spaced = "".join(" " if ord(ch) > 0xFFFF or re.match(r"[^\w\s]", ch) else ch for ch in low)
    return " ".join(spaced.split())


def test_characters_above_u_ffff_normalize_as_on_cudf() -> None:
    from taskseed.curation.io.frames import normalized_text

    texts = ["Let 𝑥 be the 𝐀nswer 😀!", "𐐀bc Déjà vu", "plain text", "𝟐𝟎 apples"]
    got = normalized_text(pd.Series(texts)).tolist()
    assert got == [libcudf_normalized(t) for t in texts]
    assert got[0] == "let be the nswer"
