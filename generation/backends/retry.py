"""Retry policy for teacher HTTP calls: which failures retry, and how long to wait."""

from __future__ import annotations

import email.utils
import json
import random
import re
import time
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_RETRY_AFTER_S = 600.0


@dataclass(slots=True, frozen=True)
class Failure:
    """One failed attempt: a short reason, whether to retry, and the server's Retry-After."""

    reason: str
    retryable: bool = True
    retry_after: float | None = None
    text: str = ""
    finish_reason: str = "error"
    detail: str = ""  # the server's message
    fatal: bool = True  # says nothing about the request's content (see TeacherResponse)


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and every 5xx are transient; other statuses are final."""
    return status in RETRYABLE_STATUS or 500 <= status <= 599


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number `attempt` (0-based).

    Exponential backoff with full jitter, uniform in [0, min(max_s, base_s * 2**attempt)];
    when the server sent Retry-After, that wait plus up to min(base_s, max_s) of jitter, so
    that requests throttled together do not all return at the same instant."""
    rng = rng or random
    if retry_after is not None:
        return retry_after + rng.uniform(0.0, min(base_s, max_s))
    ceiling = min(max_s, base_s * (2.0 ** min(attempt, 62)))
    return rng.uniform(0.0, ceiling)


_INVALID_REQUEST = re.compile(r"validation error|input should be|unprocessable|invalid request",
                              re.IGNORECASE)


def is_rejected_request(status: int, message: str) -> bool:
    """Whether the server refused the request itself, so that sending it again cannot help:
    a 4xx other than 408/409/429, or a 5xx whose message is a request validation error
    (llama-cpp-python's server answers an unsupported `response_format` with HTTP 500)."""
    if 400 <= status <= 499:
        return not is_retryable_status(status)
    return bool(_INVALID_REQUEST.search(message))


def error_message(body: bytes, limit: int = 300) -> str:
    """The server's message from an error body (`{"error": {"message": ...}}`, `{"detail":
    ...}` or plain text), on one line."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            inner = inner.get("message") or inner.get("detail") or inner
        text = inner if isinstance(inner, str) else json.dumps(inner)
    return " ".join(text.split())[:limit]
