"""An n-gram index of held-out items, stored as NumPy arrays and queried a batch at a time.

Text is tokenized into normalized words, the words of `text.normalize_text` (lowercase,
punctuation stripped, whitespace split): runs of word characters (letters, digits, `_`).
A text is given as two parts, `head` (question and answer) and `tail` (choices and
context); its words are the head's, then the tail's.

A batch is hashed without a Python loop over its words: word boundaries come from a byte
table over the batch's UTF-8 buffer, each word is hashed from its bytes read 8 at a time,
and each word sequence from the word hashes by a polynomial over prefix sums. Keys are the
64-bit hashes of an item's n-grams, each inside its head or inside its tail; an item with
no n-gram (head and tail both shorter than `ngram`, so every item shorter than `ngram`)
is keyed by its whole word sequence and by its head alone, so that only a text whose
words or head words equal those matches it. A window holding a word outside the eval
vocabulary cannot match: a bit filter over the vocabulary rules it out before any lookup.

Each key points to a posting, the set of eval items it came from (many keys share one,
e.g. the n-grams of a passage that several questions read).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

MAX_NGRAM = 64
CHUNK_CHARS = 1 << 20  # text hashed per NumPy pass
CHUNK_WORDS = 1 << 19  # words keyed per NumPy pass
KEY_FILTER_BITS = 27
VOCAB_FILTER_BITS = 22
TABLE_CHARS = 0x30000  # code points classified by table; those above count as word
_BASE = 0x100000001B3
_LENGTH = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_ASCII_WORD = np.zeros(256, dtype=bool)
for _chars in (b"0123456789_", b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
    _ASCII_WORD[list(_chars)] = True
_LOW7, _HIGH = np.uint64(0x7F7F7F7F7F7F7F7F), np.uint64(0x8080808080808080)
_FROM_A, _ABOVE_Z = np.uint64(0x3F3F3F3F3F3F3F3F), np.uint64(0x2525252525252525)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One held-out item: its benchmark (task), split and row (in `file` when the split
    reads several files)."""

    benchmark: str
    split: str
    row: int
    file: str = ""

    def label(self) -> str:
        where = f"{self.file}:{self.row}" if self.file else str(self.row)
        return f"{self.benchmark}/{self.split}/{where}"


class _Powers:
    """BASE**i and BASE**-i modulo 2**64, grown on demand (swapped in as one pair)."""

    def __init__(self) -> None:
        self.pair = (np.ones(0, dtype=np.uint64), np.ones(0, dtype=np.uint64))

    def upto(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pair
        if size > len(pair[0]):
            size = max(size, CHUNK_WORDS + 1)
            up, down = (
                np.r_[np.uint64(1), np.cumprod(np.full(size - 1, base, dtype=np.uint64))]
                for base in (_BASE, pow(_BASE, -1, 2**64))
            )
            pair = self.pair = (up, down)
        return pair


_POWERS = _Powers()


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads the bits of a linear hash."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


def prefix_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of `values[i] * BASE**i` and the powers BASE**-i (mod 2**64): the
    polynomial hash of `values[s:e]` is `(prefix[e] - prefix[s]) * down[s]`."""
    up, down = _POWERS.upto(len(values) + 1)
    prefix = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(values * up[:len(values)], out=prefix[1:])
    return prefix, down


def span_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each span `values[s:e]` of uint64 values: a polynomial over prefix
    sums, so two gathers per span whatever its length."""
    prefix, down = prefix_sums(values)
    h = (prefix[ends] - prefix[starts]) * down[starts]
    return mix64(h + _LENGTH * (ends - starts).astype(np.uint64))


@cache
def _word_chars() -> np.ndarray:
    """Per code point below TABLE_CHARS: whether it is a word character (`\\w`)."""
    chars = map(chr, range(TABLE_CHARS))
    return np.fromiter((c.isalnum() or c == "_" for c in chars), dtype=bool, count=TABLE_CHARS)


def _classify_other(data: np.ndarray, word: np.ndarray) -> None:
    """Set the word flag of every byte of the non-ASCII characters of UTF-8 `data`."""
    lead = np.flatnonzero(data >= 0xC0)
    if not len(lead):
        return
    first = data[lead].astype(np.int64)
    width = np.where(first >= 0xF0, 4, np.where(first >= 0xE0, 3, 2))
    cp = first & np.where(width == 2, 0x1F, np.where(width == 3, 0x0F, 0x07))
    last = len(data) - 1
    for k in (1, 2, 3):
        live = np.flatnonzero(width > k)
        cp[live] = (cp[live] << 6) | (data[np.minimum(lead[live] + k, last)] & 0x3F)
    flags = np.ones(len(cp), dtype=bool)
    small = np.flatnonzero(cp < TABLE_CHARS)
    flags[small] = _word_chars()[cp[small]]
    for k in (0, 1, 2, 3):
        live = np.flatnonzero(width > k)
        word[np.minimum(lead[live] + k, last)] = flags[live]


def _utf8(parts: list[str]) -> pa.Array:
    """Parts as one Arrow string array, each ended by a newline (no word crosses parts),
    non-ASCII parts lowercased by Python (ASCII letters are lowercased per block)."""
    lines = [p + "\n" if p.isascii() else p.lower() + "\n" for p in parts]
    try:
        return pa.array(lines, pa.large_string())
    except UnicodeEncodeError:  # lone surrogates
        return pa.array([p.encode("utf-8", "replace").decode("utf-8") for p in lines],
                        pa.large_string())


def _ascii_lower(x: np.ndarray) -> np.ndarray:
    """Bytes A-Z of each uint64 lowercased, all others kept (SWAR: 8 bytes per step)."""
    low7 = x & _LOW7
    at_least_a = low7 + _FROM_A
    above_z = low7 + _ABOVE_Z
    upper = at_least_a & ~above_z & ~x & _HIGH
    return x | (upper >> np.uint64(2))


def _block_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte span of `data` (which has 8 spare bytes at its end), read
    8 bytes at a time: a span of up to 8 bytes is its own lowercased bytes before mixing."""
    blocks = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    length = ends - starts
    h = _ascii_lower(blocks[starts] & _MASKS[np.minimum(length, 8)])
    more, k = np.flatnonzero(length > 8), 8
    while len(more):
        tail = _ascii_lower(blocks[starts[more] + k] & _MASKS[np.minimum(length[more] - k, 8)])
        h[more] = mix64(h[more]) ^ tail
        k += 8
        more = more[length[more] > k]
    return mix64(h + _LENGTH * length.astype(np.uint64))


def _chunk_words(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    array = _utf8(parts)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(parts) + 1)
    size = int(offsets[-1])
    data = np.zeros(size + 8, dtype=np.uint8)
    data[:size] = np.frombuffer(array.buffers()[2], dtype=np.uint8, count=size)
    padded = np.zeros(size + 2, dtype=bool)  # padded[i + 1]: byte i is part of a word
    np.take(_ASCII_WORD, data[:size], out=padded[1:-1])
    if data.max() >= 0x80:
        _classify_other(data[:size], padded[1:-1])
    bounds = np.flatnonzero(padded[:-1] != padded[1:])
    starts, ends = bounds[0::2], bounds[1::2]
    counts = np.diff(np.searchsorted(starts, offsets))
    return _block_hashes(data, starts, ends), counts


def word_hashes(parts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of every word of `parts`, flat, and the word count of each part."""
    ends = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))
    hashes, counts = [np.empty(0, dtype=np.uint64)], [np.zeros(0, dtype=np.int64)]
    lo = 0
    while lo < len(parts):
        base = int(ends[lo - 1]) if lo else 0
        hi = max(int(np.searchsorted(ends, base + CHUNK_CHARS, side="right")), lo + 1)
        h, c = _chunk_words(parts[lo:hi])
        hashes.append(h)
        counts.append(c)
        lo = hi
    return np.concatenate(hashes), np.concatenate(counts)


class BitFilter:
    """One bit per 2**-bits slice of the 64-bit hash space: a value whose bit is clear
    is not in the set (one whose bit is set may be)."""

    def __init__(self, values: np.ndarray, bits: int) -> None:
        self.shift = np.uint64(64 - bits)
        slot = (values >> self.shift).astype(np.int64)
        self.bits = np.zeros(1 << max(bits - 3, 0), dtype=np.uint8)
        np.bitwise_or.at(self.bits, slot >> 3, (1 << (slot & 7)).astype(np.uint8))

    def maybe(self, values: np.ndarray) -> np.ndarray:
        slot = (values >> self.shift).astype(np.int64)
        return ((self.bits[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1).astype(bool)


def span_positions(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The positions `starts[i] .. starts[i] + sizes[i] - 1` of every span, concatenated."""
    return np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())


def sorted_lookup(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in `sorted_keys`, -1 where absent (the values are sorted
    first: a sorted search then walks memory in order)."""
    if not len(sorted_keys) or not len(values):
        return np.full(len(values), -1, dtype=np.int64)
    order = np.argsort(values)
    at = np.searchsorted(sorted_keys, values[order])
    np.minimum(at, len(sorted_keys) - 1, out=at)
    out = np.empty(len(values), dtype=np.int64)
    out[order] = np.where(sorted_keys[at] == values[order], at, -1)
    return out


@dataclass
class Tokens:
    """Word hashes of a batch of texts, flat: text i is `words[offsets[i]:offsets[i+1]]`,
    its head the first `head[i]` of them; `known` is False for words surely outside the
    eval vocabulary."""

    words: np.ndarray
    known: np.ndarray
    offsets: np.ndarray
    head: np.ndarray

    @classmethod
    def of(cls, texts: list[tuple[str, str]], vocab: BitFilter | None = None) -> Tokens:
        words, counts = word_hashes([part for pair in texts for part in pair])
        pairs = counts.reshape(-1, 2)
        offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
        np.cumsum(pairs.sum(axis=1), out=offsets[1:])
        known = vocab.maybe(words) if vocab is not None else np.ones(len(words), dtype=bool)
        return cls(words, known, offsets, pairs[:, 0].astype(np.int64))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def chunks(self) -> Iterator[tuple[int, Tokens]]:
        """Runs of whole texts of about CHUNK_WORDS words: (first text, their tokens)."""
        offsets, lo = self.offsets, 0
        while lo < len(offsets) - 1:
            hi = int(np.searchsorted(offsets, offsets[lo] + CHUNK_WORDS, side="right")) - 1
            hi = max(hi, lo + 1)
            a, b = offsets[lo], offsets[hi]
            yield lo, Tokens(self.words[a:b], self.known[a:b], offsets[lo:hi + 1] - a,
                             self.head[lo:hi])
            lo = hi


def text_keys(tokens: Tokens, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys of every text as (text index, hash, is_whole) arrays.

    A text's n-grams of known words lie inside its head or inside its tail (never across);
    a text whose head and tail are both shorter than `n` has none, and is keyed whole: by
    all its words and by its head's words.
    """
    offsets, lengths, head = tokens.offsets, tokens.lengths, tokens.head
    bad = np.zeros(len(tokens.words) + 1, dtype=np.int64)
    np.cumsum(~tokens.known, out=bad[1:])
    count = max(len(tokens.words) - n + 1, 0)
    owner = np.repeat(np.arange(len(lengths)), lengths)[:count]
    pos = np.arange(count)
    head_end = (offsets[:-1] + head)[owner]
    part_end = np.where(pos < head_end, head_end, offsets[1:][owner])
    starts = pos[(pos + n <= part_end) & (bad[pos + n] == bad[pos])]
    texts, all_starts, all_ends = [owner[starts]], [starts], [starts + n]
    short = (head < n) & (lengths - head < n)
    for size in (lengths, head):
        chosen = np.flatnonzero(short & (size > 0))
        firsts = offsets[chosen]
        chosen = chosen[bad[firsts + size[chosen]] == bad[firsts]]
        texts.append(chosen)
        all_starts.append(offsets[chosen])
        all_ends.append(offsets[chosen] + size[chosen])
    hashes = span_hashes(tokens.words, np.concatenate(all_starts), np.concatenate(all_ends))
    text = np.concatenate(texts)
    is_whole = np.zeros(len(text), dtype=bool)
    is_whole[len(starts):] = True
    return text, hashes, is_whole


def _postings(keys: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sorted unique keys, each key's posting id, and the postings (offsets, item ids),
    from (key, item) pairs sorted by key then item."""
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else []
    bounds = np.append(first, len(keys)).astype(np.int64)
    sizes = np.diff(bounds)
    mixed = mix64(items.astype(np.uint64) + np.uint64(1))
    signature = np.add.reduceat(mixed, bounds[:-1]) if len(items) else mixed
    signature = mix64(signature ^ sizes.astype(np.uint64))
    unique, first, key_posting = np.unique(signature, return_index=True, return_inverse=True)
    lengths = sizes[first]
    offsets = np.zeros(len(unique) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    picks = np.repeat(bounds[first] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return keys[bounds[:-1]], key_posting.astype(np.int32), offsets, items[picks]


@dataclass
class NgramIndex:
    """Sorted unique keys with their posting (`key_posting`), postings as item lists
    (`posting_items[posting_offsets[p]:posting_offsets[p+1]]`), the eval vocabulary
    (sorted word hashes), the item table and free-form metadata."""

    ngram: int
    vocab: np.ndarray
    keys: np.ndarray
    key_posting: np.ndarray
    posting_offsets: np.ndarray
    posting_items: np.ndarray
    items: list[EvalItem]
    meta: dict[str, Any] = field(default_factory=dict)
    _filters: tuple[BitFilter, BitFilter] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls, items: list[EvalItem], texts: list[tuple[str, str]], ngram: int,
        meta: dict[str, Any] | None = None,
    ) -> NgramIndex:
        """The index of `items`, whose (head, tail) texts are `texts`."""
        if not 1 <= ngram <= MAX_NGRAM:
            raise ValueError(f"ngram must lie in 1..{MAX_NGRAM}")
        tokens = Tokens.of(texts)
        all_hashes, all_texts = [np.empty(0, dtype=np.uint64)], [np.empty(0, dtype=np.int64)]
        for first, chunk in tokens.chunks():
            text, hashes, _ = text_keys(chunk, ngram)
            all_hashes.append(hashes)
            all_texts.append(text + first)
        hashes, text = np.concatenate(all_hashes), np.concatenate(all_texts)
        order = np.lexsort((text, hashes))
        hashes, text = hashes[order], text[order]
        fresh = np.ones(len(hashes), dtype=bool)
        fresh[1:] = (hashes[1:] != hashes[:-1]) | (text[1:] != text[:-1])
        postings = _postings(hashes[fresh], text[fresh].astype(np.int32))
        return cls(ngram, np.unique(tokens.words), *postings, list(items), dict(meta or {}))

    def filters(self) -> tuple[BitFilter, BitFilter]:
        """Bit filters of the vocabulary and of the keys, made on first use."""
        if self._filters is None:
            self._filters = (BitFilter(self.vocab, VOCAB_FILTER_BITS),
                             BitFilter(self.keys, KEY_FILTER_BITS))
        return self._filters

    def hits(self, texts: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (text, key position, is_whole) where a key of a text is in the index."""
        vocab, keys = self.filters()
        found = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))]
        for first, chunk in Tokens.of(texts, vocab).chunks():
            text, hashes, is_whole = text_keys(chunk, self.ngram)
            maybe = np.flatnonzero(keys.maybe(hashes))
            at = sorted_lookup(self.keys, hashes[maybe])
            hit = maybe[at >= 0]
            found.append((text[hit] + first, at[at >= 0], is_whole[hit]))
        text, key, whole = (np.concatenate(column) for column in zip(*found, strict=True))
        return text, key, whole

    def match(self, texts: list[tuple[str, str]], min_matches: int = 1) -> list[np.ndarray]:
        """For each text, the ids of the eval items it overlaps: at least `min_matches`
        distinct n-grams shared with the item, or its whole words or head words equal to
        a short item."""
        out = [np.empty(0, dtype=np.int32)] * len(texts)
        if not texts or not len(self.keys):
            return out
        text, key, is_whole = self.hits(texts)
        if not len(text):
            return out
        pair, first = np.unique(text * len(self.keys) + key, return_index=True)
        weight = np.where(is_whole[first], min_matches, 1)
        postings = len(self.posting_offsets)
        code = (pair // len(self.keys)) * postings + self.key_posting[pair % len(self.keys)]
        code, inverse = np.unique(code, return_inverse=True)
        score = np.bincount(inverse, weights=weight)
        text, posting = code // postings, code % postings
        lo, hi = self.posting_offsets[posting], self.posting_offsets[posting + 1]
        sizes = hi - lo
        picks = span_positions(lo, sizes)
        code = np.repeat(text, sizes) * len(self.items) + self.posting_items[picks]
        code, inverse = np.unique(code, return_inverse=True)
        found = code[np.bincount(inverse, weights=np.repeat(score, sizes)) >= min_matches]
        owners = found // len(self.items)
        bounds = np.searchsorted(owners, np.arange(len(texts) + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            out[i] = (found[bounds[i]:bounds[i + 1]] % len(self.items)).astype(np.int32)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"vocab": self.vocab, "keys": self.keys, "key_posting": self.key_posting,
                "posting_offsets": self.posting_offsets, "posting_items": self.posting_items}

    def save(self, npz: Path, table: Path) -> None:
        """Write the item table (JSON), then the arrays (`.npz`, the commit), atomically."""
        data = {"ngram": self.ngram, "meta": self.meta,
                "items": [[i.benchmark, i.split, i.row, i.file] for i in self.items]}
        _atomic(table, lambda fh: fh.write(json.dumps(data, ensure_ascii=False).encode()))
        _atomic(npz, lambda fh: np.savez(fh, **self.arrays()))

    @classmethod
    def load(cls, npz: Path, table: Path) -> NgramIndex:
        data = json.loads(table.read_text(encoding="utf-8"))
        with np.load(npz) as arrays:
            return cls(data["ngram"], arrays["vocab"], arrays["keys"], arrays["key_posting"],
                       arrays["posting_offsets"], arrays["posting_items"],
                       [EvalItem(*i) for i in data["items"]], data["meta"])


def _atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        write(fh)
    os.replace(tmp, path)
