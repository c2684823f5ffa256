"""MinHash signatures and LSH band keys that agree bit for bit between NumPy and cuDF.

The values are those of libcudf's nvtext minhash kernels (`Series.str.minhash`, `minhash64`
and their list-of-tokens variants), which the cuDF path calls directly:

- every character n-gram of a string (UTF-8 characters, not bytes) is hashed with
  MurmurHash3 x86_32 (`bits=32`) or the first 64 bits of MurmurHash3 x64_128 (`bits=64`),
  seeded with `seed`; a hash of 0 becomes 1;
- a string shorter than n characters is one n-gram (the whole string); an empty string
  has none and its signature is all zeros;
- permutation i maps a hash h to `((h * a[i] + b[i]) mod 2^bits) mod (2^61 - 1)`; the
  product and sum wrap at the hash width before the Mersenne-prime reduction, so for
  32 bits the reduction is a no-op;
- the word variant hashes the bytes of `ngrams + 1` consecutive tokens concatenated, one
  window per start; a shorter row is one window. Tokens here keep their trailing space,
  so a word n-gram is the byte span from its first word to the start of the next word,
  and the kernel is called with `ngrams = n - 1`.

The CPU path reproduces this with vectorized NumPy over the UTF-8 bytes of a whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from taskseed.curation.text import word_ngrams

MERSENNE_PRIME = (1 << 61) - 1
_M61 = np.uint64(MERSENNE_PRIME)
_MASK32 = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF], dtype=np.uint32)
_MASK64 = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_BATCH_BYTES = 1 << 20  # UTF-8 bytes hashed per batch: bounds the temporary arrays
_CHUNK_WINDOWS = 4096  # n-gram hashes per permutation block: keeps the block in cache
_FNV64 = 0x100000001B3


@dataclass(frozen=True)
class MinHashSpec:
    """How signatures are made: `ngram` characters (or words with `words`), `num_perm`
    permutations, 32- or 64-bit MurmurHash3, and the seed of the hash and permutations."""

    num_perm: int = 128
    ngram: int = 5
    words: bool = False
    bits: Literal[32, 64] = 32
    seed: int = 0
    a: tuple[int, ...] | None = None  # explicit permutation parameters (else from `seed`)
    b: tuple[int, ...] | None = None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint32 if self.bits == 32 else np.uint64)

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """The `a` and `b` parameters: `a` odd (a bijection mod 2^bits), both below the prime."""
        if self.a is not None and self.b is not None:
            return np.array(self.a, dtype=self.dtype), np.array(self.b, dtype=self.dtype)
        stream = _splitmix64(self.seed, 2 * self.num_perm)
        top = (1 << 32) if self.bits == 32 else MERSENNE_PRIME
        a = [(v % (top - 1)) | 1 for v in stream[0::2]]
        b = [v % top for v in stream[1::2]]
        return np.array(a, dtype=self.dtype), np.array(b, dtype=self.dtype)


def _splitmix64(seed: int, count: int) -> list[int]:
    """A fixed integer stream (SplitMix64), independent of NumPy's generators."""
    mask, state, out = (1 << 64) - 1, seed & ((1 << 64) - 1), []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def is_cudf(obj: Any) -> bool:
    """Whether a series or frame is a cuDF object."""
    return type(obj).__module__.split(".")[0] == "cudf"


def signatures(texts: Any, spec: MinHashSpec) -> Any:
    """MinHash signatures (rows x `num_perm`) of a pandas/cuDF series or a list of strings:
    a NumPy array on CPU, a CuPy array from cuDF."""
    if is_cudf(texts):
        return cudf_signatures(texts, spec)
    return cpu_signatures(texts, spec)


def cudf_signatures(series: Any, spec: MinHashSpec) -> Any:
    """Signatures from libcudf's own kernels (strings, or tokens for `words`)."""
    import cudf

    a, b = (cudf.Series(p) for p in spec.permutations())
    text = series.fillna("")
    if spec.words:
        tokens = text.where(text == "", text + " ").str.findall("[^ ]+ ")
        out = tokens.str.minhash(spec.seed, a=a, b=b, width=spec.ngram - 1)
    else:
        out = text.str.minhash(spec.seed, a=a, b=b, width=spec.ngram)
    return out.list.leaves.values.reshape(len(series), spec.num_perm)


def cpu_signatures(texts: Any, spec: MinHashSpec) -> np.ndarray:
    """Signatures computed with NumPy, equal to `cudf_signatures` value for value."""
    if spec.words and spec.ngram < 3:
        raise ValueError("word n-grams need ngram >= 3 (libcudf hashes ngrams + 1 tokens)")
    strings = _as_strings(texts, spec.words)
    out = np.zeros((len(strings), spec.num_perm), dtype=spec.dtype)
    a, b = spec.permutations()
    offsets = _offsets(strings)
    start = 0
    while start < len(strings):
        stop = int(np.searchsorted(offsets, offsets[start] + _BATCH_BYTES, side="right")) - 1
        stop = min(max(stop, start + 1), len(strings))
        data, row_offsets = _utf8(strings.slice(start, stop - start))
        _minhash_batch(data, row_offsets, spec, a, b, out[start:stop])
        start = stop
    return out


def _as_strings(texts: Any, words: bool) -> pa.LargeStringArray:
    if hasattr(texts, "fillna"):
        texts = texts.fillna("")
    arr = pa.array(texts, type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.fill_null("")
    if words:  # a trailing space ends every token, as in the cuDF token list
        import pyarrow.compute as pc

        space = pa.scalar(" ", pa.large_string())
        joined = pc.binary_join_element_wise(arr, space, pa.scalar("", pa.large_string()))
        arr = pc.if_else(pc.equal(arr, ""), arr, joined)
    return arr


def _offsets(strings: pa.LargeStringArray) -> np.ndarray:
    raw = np.frombuffer(strings.buffers()[1], dtype=np.int64)
    return raw[strings.offset: strings.offset + len(strings) + 1]


def _utf8(strings: pa.LargeStringArray) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of a batch (zero-padded for unaligned 8-byte reads) and row offsets."""
    offsets = _offsets(strings)
    base, end = int(offsets[0]), int(offsets[-1])
    buffer = strings.buffers()[2]
    data = np.zeros(end - base + 16, dtype=np.uint8)
    if buffer is not None and end > base:
        data[: end - base] = np.frombuffer(buffer, dtype=np.uint8)[base:end]
    return data, offsets - base


def _minhash_batch(data: np.ndarray, offsets: np.ndarray, spec: MinHashSpec, a: np.ndarray,
                   b: np.ndarray, out: np.ndarray) -> None:
    _minhash_spans(data, ngram_spans(data, offsets, spec.ngram, spec.words), spec, a, b, out)


def _minhash_spans(data: np.ndarray, spans: tuple[np.ndarray, np.ndarray, np.ndarray],
                   spec: MinHashSpec, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    starts, lengths, counts = spans
    if len(starts) == 0:
        return
    hasher = murmur3_32 if spec.bits == 32 else murmur3_64
    hashes = np.maximum(hasher(data, starts, lengths, spec.seed), 1)
    _permuted_minima(hashes, counts, a, b, spec.bits, out)


def ngram_spans(data: np.ndarray, offsets: np.ndarray, n: int,
                words: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte start and length of every n-gram window, and the window count of each row.

    A window starts at a character (or word) start and ends where the n-th next one
    starts (or at the row end); a row with fewer than n units is one window.
    """
    size = int(offsets[-1])
    body = data[:size]
    if words:
        unit = body != 0x20
        unit[1:] &= ~unit[:-1]
    else:
        unit = (body & 0xC0) != 0x80
    marks = np.flatnonzero(unit) if not unit.all() else np.arange(size)
    first = np.searchsorted(marks, offsets[:-1])
    count = np.searchsorted(marks, offsets[1:]) - first
    return _windows(np.append(marks, size), first, count, n)


def _windows(bounds: np.ndarray, first: np.ndarray, count: np.ndarray,
             n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of n units: `bounds` are the units' start bytes plus one final end, a row's
    units are `first` .. `first + count`."""
    windows = np.where(count >= n, count - n + 1, (count > 0).astype(np.int64))
    starts_of = np.cumsum(windows) - windows
    k = np.arange(int(windows.sum())) - np.repeat(starts_of - first, windows)
    span = np.repeat(np.minimum(count, n), windows)
    begin = bounds[k]
    return begin, bounds[k + span] - begin, windows


def token_signatures(rows: Any, ngrams: int, spec: MinHashSpec) -> np.ndarray:
    """libcudf's `minhash_ngrams` on lists of tokens, on CPU: each window is `ngrams + 1`
    consecutive tokens concatenated as they are (a shorter row is one window)."""
    lists = pa.array(rows, type=pa.large_list(pa.large_string()))
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    list_offsets = np.frombuffer(lists.buffers()[1], dtype=np.int64)
    list_offsets = list_offsets[lists.offset: lists.offset + len(lists) + 1]
    tokens = lists.values.slice(int(list_offsets[0]), int(list_offsets[-1] - list_offsets[0]))
    data, token_offsets = _utf8(tokens)
    list_offsets = list_offsets - list_offsets[0]
    out = np.zeros((len(lists), spec.num_perm), dtype=spec.dtype)
    spans = _windows(token_offsets, list_offsets[:-1], np.diff(list_offsets), ngrams + 1)
    a, b = spec.permutations()
    _minhash_spans(data, spans, spec, a, b, out)
    return out


def _unaligned(data: np.ndarray, dtype: str) -> np.ndarray:
    """Every little-endian word of `data` at every byte offset (a strided view, no copy)."""
    width = np.dtype(dtype).itemsize
    return np.ndarray((len(data) - width + 1,), dtype=dtype, buffer=data, strides=(1,))


def _rotl32(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _rotl64(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _fmix64(k: np.ndarray) -> np.ndarray:
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xFF51AFD7ED558CCD)
    k ^= k >> np.uint64(33)
    k *= np.uint64(0xC4CEB9FE1A85EC53)
    k ^= k >> np.uint64(33)
    return k


def _active(nblocks: np.ndarray, j: int) -> np.ndarray | slice:
    live = nblocks > j
    return slice(None) if live.all() else np.flatnonzero(live)


def murmur3_32(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               seed: int = 0) -> np.ndarray:
    """MurmurHash3 x86_32 of the byte spans `data[start:start+length]` (data zero-padded
    by at least 3 bytes)."""
    words = _unaligned(data, "<u4")
    c1, c2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
    h = np.full(len(starts), seed, dtype=np.uint32)
    nblocks = lengths >> 2
    for j in range(int(nblocks.max(initial=0))):
        live = _active(nblocks, j)
        k = words[starts[live] + 4 * j] * c1
        k = _rotl32(k, 15) * c2
        hj = _rotl32(h[live] ^ k, 13)
        h[live] = hj * np.uint32(5) + np.uint32(0xE6546B64)
    tail = words[starts + 4 * nblocks] & _MASK32[lengths & 3]
    h ^= _rotl32(tail * c1, 15) * c2
    h ^= lengths.astype(np.uint32)
    return _fmix32(h)


def murmur3_64(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               seed: int = 0) -> np.ndarray:
    """The first 64 bits of MurmurHash3 x64_128 of each byte span (data zero-padded by at
    least 15 bytes)."""
    words = _unaligned(data, "<u8")
    c1, c2 = np.uint64(0x87C37B91114253D5), np.uint64(0x4CF5AD432745937F)
    five = np.uint64(5)
    h1 = np.full(len(starts), seed, dtype=np.uint64)
    h2 = h1.copy()
    nblocks = lengths >> 4
    for j in range(int(nblocks.max(initial=0))):
        live = _active(nblocks, j)
        at = starts[live] + 16 * j
        k1 = _rotl64(words[at] * c1, 31) * c2
        k2 = _rotl64(words[at + 8] * c2, 33) * c1
        a1 = _rotl64(h1[live] ^ k1, 27) + h2[live]
        a1 = a1 * five + np.uint64(0x52DCE729)
        a2 = _rotl64(h2[live] ^ k2, 31) + a1
        h1[live] = a1
        h2[live] = a2 * five + np.uint64(0x38495AB5)
    tail = lengths & 15
    at = starts + 16 * nblocks
    k2 = words[at + 8] & _MASK64[np.maximum(tail - 8, 0)]
    h2 ^= _rotl64(k2 * c2, 33) * c1
    k1 = words[at] & _MASK64[np.minimum(tail, 8)]
    h1 ^= _rotl64(k1 * c1, 31) * c2
    size = lengths.astype(np.uint64)
    h1 ^= size
    h2 ^= size
    h1 += h2
    h2 += h1
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    return h1 + h2


def _permuted_minima(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray,
                     bits: int, out: np.ndarray) -> None:
    """Per row and permutation, the minimum permuted hash (rows with no window stay 0).

    Works permutation-major (a block is permutations x n-grams) so that the reduction
    over each row's n-grams runs along contiguous memory.
    """
    bounds = np.concatenate(([0], np.cumsum(counts)))
    rows = len(counts)
    minima = np.zeros((len(a), rows), dtype=out.dtype)
    b_col = b[:, None]
    r0 = 0
    while r0 < rows:
        r1 = int(np.searchsorted(bounds, bounds[r0] + _CHUNK_WINDOWS, side="right")) - 1
        r1 = min(max(r1, r0 + 1), rows)
        w0, w1 = bounds[r0], bounds[r1]
        if w1 > w0:
            block = np.multiply.outer(a, hashes[w0:w1])
            block += b_col
            if bits == 64:
                low = block & _M61
                block >>= np.uint64(61)
                block += low
                np.minimum(block, block - _M61, out=block)
            live = counts[r0:r1] > 0
            if live.all():
                np.minimum.reduceat(block, bounds[r0:r1] - w0, axis=1, out=minima[:, r0:r1])
            else:
                segments = (bounds[r0:r1] - w0)[live]
                minima[:, r0:r1][:, live] = np.minimum.reduceat(block, segments, axis=1)
        r0 = r1
    out[:] = minima.T


def band_keys(sigs: Any, bands: int, rows: int, salt: Any = None) -> Any:
    """One 64-bit key per row and band (rows x bands): a hash of the band's `rows`
    signature values, its band number and an optional per-row `salt` (e.g. the task hash).
    Works on NumPy and CuPy arrays alike and gives the same values on both."""
    xp = _array_module(sigs)
    n = sigs.shape[0]
    values = sigs[:, : bands * rows].astype(xp.uint64).reshape(n, bands, rows)
    keys = xp.asarray(np.array(_splitmix64(0x5EED, bands), dtype=np.uint64))
    keys = xp.broadcast_to(keys, (n, bands)).copy()
    prime = xp.uint64(_FNV64)
    for i in range(rows):
        keys ^= values[:, :, i]
        keys *= prime
    if salt is not None:
        keys ^= xp.asarray(salt, dtype=xp.uint64)[:, None]
    return _fmix64(keys)


def _array_module(arr: Any) -> Any:
    if type(arr).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def ngram_set(text: str, n: int, words: bool = False) -> set[str]:
    """The n-gram set MinHash estimates: character n-grams (the whole text when shorter),
    or word n-grams with `words`. Empty text has none."""
    if words:
        return word_ngrams(text, n)
    if len(text) <= n:
        return {text} if text else set()
    return {text[i: i + n] for i in range(len(text) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (0 when both are empty)."""
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def gram_matrix(texts: Sequence[str], n: int, words: bool = False) -> Any:
    """A binary CSR matrix (texts x distinct n-grams) of the texts' n-gram sets, the
    n-grams told apart by their 64-bit MurmurHash3 (the windows of `cpu_signatures`)."""
    from scipy.sparse import csr_matrix

    strings = _as_strings(list(texts), words)
    data, offsets = _utf8(strings)
    starts, lengths, counts = ngram_spans(data, offsets, n, words)
    hashes = murmur3_64(data, starts, lengths)
    columns = pd.factorize(hashes)[0]
    indptr = np.concatenate(([0], np.cumsum(counts)))
    matrix = csr_matrix((np.ones(len(columns), np.int32), columns, indptr),
                        shape=(len(texts), int(columns.max(initial=-1)) + 1))
    matrix.sum_duplicates()  # a repeated n-gram counts once
    matrix.data[:] = 1
    return matrix


def jaccard_pairs(left: Sequence[str], right: Sequence[str], n: int, words: bool = False,
                  threshold: float = 0.0, margin: float = 0.01) -> np.ndarray:
    """The n-gram Jaccard of each (left[i], right[i]) pair. Computed for all pairs at
    once on hashed n-gram sets (`gram_matrix`); every pair at or above `threshold - margin`
    is then recomputed exactly on its n-gram strings, so which pairs reach `threshold` is
    decided on the true sets."""
    if not len(left):
        return np.zeros(0)
    codes, texts = pd.factorize(pd.Series([*left, *right], dtype=object))
    matrix = gram_matrix(list(texts), n, words)
    sizes = np.diff(matrix.indptr)
    a, b = codes[: len(left)], codes[len(left):]
    inter = np.asarray(matrix[a].multiply(matrix[b]).sum(axis=1)).ravel()
    union = sizes[a] + sizes[b] - inter
    scores = np.divide(inter, union, out=np.zeros(len(a)), where=union > 0)
    sets: dict[int, set[str]] = {}
    for i in np.flatnonzero(scores >= threshold - margin):
        for code in (a[i], b[i]):
            if code not in sets:
                sets[code] = ngram_set(texts[code], n, words)
        scores[i] = jaccard(sets[a[i]], sets[b[i]])
    return scores

