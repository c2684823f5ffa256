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


UNGRADED = "kept_ungraded"  # the counter of records a judge could not grade and kept


def ungraded(on_failure: str, reason: str, error: object, counters: dict[str, int]) -> Verdict:
    """The verdict on a record its judge gave no usable answer for: kept (counted as
    `kept_ungraded`, the default) or, with `on_failure: drop`, dropped for `reason`. The
    failed request itself is listed in the stage's failures.jsonl either way."""
    if on_failure == "keep":
        counters[UNGRADED] = counters.get(UNGRADED, 0) + 1
        return KEEP
    return drop(reason, str(error))
