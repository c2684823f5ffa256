"""A filter's decision on one record: keep, or drop with a reason."""

from __future__ import annotations

from typing import NamedTuple


class Verdict(NamedTuple):
    """Keep, or drop with a short stable reason tag and a human-readable detail."""

    keep: bool
    reason: str = ""
    detail: str = ""


KEEP = Verdict(True)


def drop(reason: str, detail: str = "") -> Verdict:
    """A verdict that drops the record for `reason`."""
    return Verdict(False, reason, detail or reason)
