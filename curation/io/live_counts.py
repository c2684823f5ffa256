"""Live progress of the unit of work running in this process.

A stage reports what it does (`add`, `put`): teacher requests planned and answered, requests
in flight, tokens written. The runner of the unit installs a sink (`watch`) that gets the
counts at most once per `interval` seconds, e.g. to write them where the coordinator reads
them. Without a sink, reports cost a dict update.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

Sink = Callable[[dict[str, float]], None]

_lock = threading.Lock()
_state: dict[str, float] = {}
_sink: Sink | None = None
_interval = 1.0
_last = 0.0


@contextlib.contextmanager
def watch(sink: Sink, interval: float = 1.0) -> Iterator[None]:
    """Send this process's progress to `sink` for the block (and once more at its end)."""
    global _sink, _interval, _last
    with _lock:
        _state.clear()
        _sink, _interval, _last = sink, interval, 0.0
    try:
        yield
    finally:
        _flush(force=True)
        with _lock:
            _sink = None
            _state.clear()


def add(**deltas: float) -> None:
    """Add to counters (`requests_done=1, completion_tokens=37`)."""
    with _lock:
        for key, value in deltas.items():
            _state[key] = _state.get(key, 0) + value
    _flush()


def put(**values: float) -> None:
    """Set gauges (`in_flight=12`)."""
    with _lock:
        _state.update(values)
    _flush()


def snapshot() -> dict[str, float]:
    with _lock:
        return dict(_state)


def _flush(force: bool = False) -> None:
    global _last
    with _lock:
        sink = _sink
        now = time.monotonic()
        if sink is None or (not force and now - _last < _interval):
            return
        _last = now
        state = dict(_state)
    sink(state)
