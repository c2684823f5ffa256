"""Errors that are reported to users as one line."""

from __future__ import annotations


class TaskseedError(Exception):
    """An error with a one-line message for the user; the CLI prints it without a traceback."""


class ConfigError(TaskseedError):
    """A configuration file is missing, unreadable or invalid."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path, self.key, self.message = path, key, message
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + message)


class RowError(ValueError):
    """A row cannot be normalized: `reason` is a short tag, `field` names the field."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        self.reason, self.field = reason, field
        super().__init__(f"{field}: {message}")
