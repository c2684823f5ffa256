"""Reading a teacher's JSON reply."""

from __future__ import annotations

import json
from typing import Any

from curation.errors import RowError


def json_object(text: str) -> dict[str, Any]:
    """The reply as a JSON object (raw control characters in strings allowed), or RowError."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise RowError("unparsable", "response", exc.msg) from None
    if not isinstance(data, dict):
        raise RowError("unparsable", "response", "reply is not a JSON object")
    return data
