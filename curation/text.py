"""Text normalization shared by dedup, decontamination and copy checks."""

from __future__ import annotations

import re

_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str | None) -> str:
    """Lowercase, drop punctuation, collapse whitespace."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", (text or "").lower())).strip()
