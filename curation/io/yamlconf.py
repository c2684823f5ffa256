"""Loading YAML files into validated models with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Discriminator, ValidationError
from taskseed.curation.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

# A tagged union's `custom_error_type` is `unknown_<key>` (e.g. `unknown_backend`), so that
# an invalid tag is reported at the key that holds it.
UNKNOWN_TAG = "unknown_"


def tag_discriminator(key: str, default: str, tags: list[str]) -> Discriminator:
    """Pick a tagged union's member by the value of `key` (`default` when it is absent)."""

    def tag_of(value: object) -> str:
        if isinstance(value, dict):
            return str(value.get(key, default))
        return str(getattr(value, key, default))

    return Discriminator(
        tag_of,
        custom_error_type=UNKNOWN_TAG + key,
        custom_error_message=f"unknown {key}; expected one of: {', '.join(tags)}",
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping or raise a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(str(path), where, f"invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "expected a mapping at the top level")
    return data


def error_key(loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location as `a.b[2].c`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def error_location(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """A pydantic error location as keys of `data`.

    Errors inside a tagged union carry the tag as an extra location part (`teacher.openai.
    n_ctx`); it names no key of the input, so it is dropped.
    """
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(part, str) and part.startswith("function-"):
            continue
        last = i == len(loc) - 1
        if isinstance(node, dict) and isinstance(part, str) and part not in node and not last:
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def validate(model: type[M], data: dict[str, Any], path: Path | str) -> M:
    """Validate data against a model; the first problem becomes a one-line ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = error_location(tuple(err["loc"]), data)
        msg = err["msg"]
        if err["type"].startswith(UNKNOWN_TAG):  # a union's tag is invalid: name its key
            loc += (err["type"].removeprefix(UNKNOWN_TAG),)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        raise ConfigError(str(path), error_key(loc), msg) from None


def load_model(model: type[M], path: Path) -> M:
    return validate(model, read_yaml(path), path)
