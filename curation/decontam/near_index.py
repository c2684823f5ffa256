"""Near copies of short held-out items: one word changed, dropped or added, options edited.

An n-gram index cannot see a light edit of a short item: a question shorter than the
n-gram has no n-gram, and one changed word breaks every n-gram of a question not much
longer. This index compares what such an item gives instead, as sets. Its text is the
question, after the passage when the item has a short one (at most `MAX_WORDS` words in
all; an item with a longer passage keeps the passage's n-grams through a light edit):

- the text's distinct words (normalized as `ngram_index` does). A set is keyed by the sum
  of its word hashes and, when it has at least `MIN_WORDS` words, by that sum less each
  word's hash: two texts share a key exactly when their word sets are equal or differ by
  one word added, dropped or replaced (case, punctuation and word order do not count);
- the options, each a normalized text hash.

A record that shares a key with an item (is "near" it) is its copy when
- with options on both sides, it keeps at least half of the item's options (in any
  order); candidates are found by a key and an option together, so a common stem ("Which
  of the following is true?") costs nothing unless an option is shared too; or
- the item is specific: at least `SPECIFIC_WORDS` distinct words and no other held-out
  item near it. A record near a specific item is its copy unless both have options, the
  record keeps fewer than half of them and its words are not exactly the item's (a
  template question such as "Which is a renewable resource?" asked over other options).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from taskseed.curation.decontam.ngram_index import (
    mix64,
    prefix_sums,
    span_hashes,
    span_positions,
    word_hashes,
)

MAX_WORDS = 40
MIN_WORDS = 1
SPECIFIC_WORDS = 6
_SALT = np.uint64(0x5851F42D4C957F2D)
_FIELDS = ("keys", "key_items", "pair_codes", "pair_items", "full", "specific",
           "option_counts", "option_codes")


def near_text(question: str, context: str | None = None) -> str:
    """The text compared: the question, after its passage if it has one (a text of more
    than MAX_WORDS words is not compared)."""
    return f"{context}\n{question}" if context else question


@dataclass
class TextSets:
    """Per text: distinct-word count and set key; every (key, text) pair of its set key and
    one-word-less keys; its option hashes (CSR)."""

    words: np.ndarray
    full: np.ndarray
    key: np.ndarray
    owner: np.ndarray
    option_offsets: np.ndarray
    options: np.ndarray

    @classmethod
    def of(cls, texts: list[str], choices: list[list[str]]) -> TextSets:
        hashes, words = word_hashes(texts)
        mixed = mix64(hashes ^ _SALT)
        prefix, down = prefix_sums(mixed)
        ends = np.cumsum(words)
        starts = ends - words
        full = mix64((prefix[ends] - prefix[starts]) * down[starts])
        compared = (words > 0) & (words <= MAX_WORDS)
        owner = np.repeat(np.arange(len(texts)), words)
        at = np.flatnonzero(compared[owner] & (words[owner] >= MIN_WORDS))
        who = owner[at]
        s, e = starts[who], ends[who]
        less = (prefix[at] - prefix[s]) + (prefix[e] - prefix[at + 1]) * down[1]
        key = np.concatenate([full[compared], mix64(less * down[s])])
        offsets, options = _option_hashes(choices)
        return cls(words.astype(np.int64), full, key,
                   np.concatenate([np.flatnonzero(compared), who]), offsets, options)

    def pairs(self, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(code, text) for every key of a text times each of its options (of the texts
        `among`, when given)."""
        key, owner = self.key, self.owner
        if among is not None:
            keep = among[owner]
            key, owner = key[keep], owner[keep]
        counts = np.diff(self.option_offsets)[owner]
        starts = self.option_offsets[owner]
        at = span_positions(starts, counts)
        return mix64(np.repeat(key, counts)) ^ self.options[at], np.repeat(owner, counts)


def _option_hashes(choices: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Each option's normalized word-sequence hash, sorted per text (CSR arrays)."""
    counts = np.fromiter(map(len, choices), dtype=np.int64, count=len(choices))
    offsets = np.zeros(len(choices) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = [option for options in choices for option in options]
    if not flat:
        return offsets, np.empty(0, dtype=np.uint64)
    hashes, per_option = word_hashes(flat)
    ends = np.cumsum(per_option)
    values = span_hashes(hashes, ends - per_option, ends)
    owner = np.repeat(np.arange(len(choices)), counts)
    return offsets, values[np.lexsort((values, owner))]


def _option_codes(items: np.ndarray, options: np.ndarray) -> np.ndarray:
    """One code per (item, option hash)."""
    return mix64(items.astype(np.uint64) + np.uint64(1)) ^ options


def _sorted(codes: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (code, item) pairs sorted by code."""
    pairs = np.unique(np.rec.fromarrays([codes, items.astype(np.int64)]))
    return pairs.f0.astype(np.uint64), pairs.f1.astype(np.int32)


def _lookup(sorted_codes: np.ndarray, sorted_items: np.ndarray, codes: np.ndarray,
            owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, item) for every query code found in the sorted codes (the queries are
    sorted first: a sorted search then walks memory in order)."""
    if not len(sorted_codes) or not len(codes):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    order = np.argsort(codes)
    codes, owners = codes[order], owners[order]
    lo = np.searchsorted(sorted_codes, codes, side="left")
    hit = np.flatnonzero(sorted_codes[np.minimum(lo, len(sorted_codes) - 1)] == codes)
    lo = lo[hit]
    sizes = np.searchsorted(sorted_codes, codes[hit], side="right") - lo
    picks = span_positions(lo, sizes)
    return np.repeat(owners[hit], sizes), sorted_items[picks].astype(np.int64)


@dataclass
class NearIndex:
    """Keys of the specific items (`keys`, `key_items`), key-and-option codes of the other
    items with options (`pair_codes`, `pair_items`), and per item its set key, whether it
    is specific, its option count and its sorted (item, option) codes."""

    keys: np.ndarray
    key_items: np.ndarray
    pair_codes: np.ndarray
    pair_items: np.ndarray
    full: np.ndarray
    specific: np.ndarray
    option_counts: np.ndarray
    option_codes: np.ndarray

    @classmethod
    def build(cls, texts: list[str], choices: list[list[str]]) -> NearIndex:
        """The index of items whose near texts (see `near_text`) and options are given."""
        sets = TextSets.of(texts, choices)
        keys, items = _sorted(sets.key, sets.owner)
        first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.ones(0, bool)
        group = np.cumsum(first) - 1
        shared = np.bincount(group)[group] > 1  # a key two items have
        crowded = np.zeros(len(texts), dtype=bool)
        crowded[items[shared]] = True
        specific = ~crowded & (sets.words >= SPECIFIC_WORDS) & (sets.words <= MAX_WORDS)
        own = specific[items]
        counts = np.diff(sets.option_offsets)
        pair_codes, pair_items = _sorted(*sets.pairs(among=~specific & (counts > 0)))
        codes = np.sort(_option_codes(np.repeat(np.arange(len(texts)), counts), sets.options))
        return cls(keys[own], items[own], pair_codes, pair_items, sets.full, specific,
                   counts, codes)

    def match(self, texts: list[str], choices: list[list[str]]) -> list[np.ndarray]:
        """For each text (with its options), the ids of the items it is a near copy of."""
        out = [np.empty(0, dtype=np.int32)] * len(texts)
        if not texts or not len(self.full):
            return out
        query = TextSets.of(texts, choices)
        by_key = _lookup(self.keys, self.key_items, query.key, query.owner)
        by_pair = _lookup(self.pair_codes, self.pair_items, *query.pairs())
        record = np.concatenate([by_key[0], by_pair[0]]).astype(np.int64)
        item = np.concatenate([by_key[1], by_pair[1]])
        if not len(record):
            return out
        pair = np.unique(record * len(self.full) + item)
        record, item = pair // len(self.full), pair % len(self.full)
        shared = self._shared_options(query, record, item)
        record_options = np.diff(query.option_offsets)[record]
        both = (self.option_counts[item] > 0) & (record_options > 0)
        agree = both & (2 * shared >= self.option_counts[item])
        exact = query.full[record] == self.full[item]
        found = pair[agree | (self.specific[item] & (exact | ~both))]
        owners = found // len(self.full)
        bounds = np.searchsorted(owners, np.arange(len(texts) + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            out[i] = (found[bounds[i]:bounds[i + 1]] % len(self.full)).astype(np.int32)
        return out

    def _shared_options(self, query: TextSets, record: np.ndarray,
                        item: np.ndarray) -> np.ndarray:
        """For each (record, item) pair: how many of the record's options the item has."""
        counts = np.diff(query.option_offsets)[record]
        if not counts.sum() or not len(self.option_codes):
            return np.zeros(len(record), dtype=np.int64)
        starts = query.option_offsets[record]
        at = span_positions(starts, counts)
        codes = _option_codes(np.repeat(item, counts), query.options[at])
        where = np.minimum(np.searchsorted(self.option_codes, codes), len(self.option_codes) - 1)
        hit = self.option_codes[where] == codes
        return np.bincount(np.repeat(np.arange(len(record)), counts)[hit],
                           minlength=len(record))

    def save(self, path: Path) -> None:
        """Write the arrays to `path` (`.npz`) atomically."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, **{name: getattr(self, name) for name in _FIELDS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> NearIndex:
        with np.load(path) as arrays:
            return cls(*(arrays[name] for name in _FIELDS))
