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
