"""Reading a teacher's reply: JSON objects, and checks against the requested JSON schema."""

from __future__ import annotations

import functools
import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from taskseed.curation.errors import RowError


def json_object(text: str) -> dict[str, Any]:
    """The reply as a JSON object (raw control characters in strings allowed), or RowError."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise RowError("unparsable", "response", exc.msg) from None
    if not isinstance(data, dict):
        raise RowError("unparsable", "response", "reply is not a JSON object")
    return data


@functools.lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    """The most relevant mismatch of `value` against a JSON schema as `path: problem`, or
    None when it conforms (every keyword of JSON Schema 2020-12 is checked)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = best_match(validator.iter_errors(value))
    return None if error is None else f"{error.json_path}: {_problem(error)}"


def _problem(error: ValidationError) -> str:
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"missing {missing[0]!r}" if missing else error.message
    if error.validator == "type":
        types = error.validator_value
        return "expected " + (types if isinstance(types, str) else "|".join(types))
    return error.message
