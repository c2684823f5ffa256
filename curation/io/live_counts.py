"""Live progress of the units of work running in this process.

A stage reports what it does (`add`, `put`): teacher requests planned and answered, requests
in flight, tokens written. The runner of a unit installs a sink (`watch`) that gets the
unit's counts at most once per `interval` seconds, e.g. to write them where the coordinator
reads them. Units that run at once in threads of one process each have their own `Meter`;
a callback that runs on another thread (a backend's event loop) reports to the meter it
was given (`current()` on the unit's thread). Without a sink, reports cost a dict update.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

Sink = Callable[[dict[str, float]], None]


class Meter:
    """The counters and gauges of one unit, sent to its sink now and then."""

    def __init__(self, sink: Sink | None = None, interval: float = 1.0) -> None:
        self.sink = sink
        self.interval = interval
        self._state: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, **deltas: float) -> None:
        """Add to counters (`requests_done=1, completion_tokens=37`)."""
        with self._lock:
            for key, value in deltas.items():
                self._state[key] = self._state.get(key, 0) + value
        self.flush()

    def put(self, **values: float) -> None:
        """Set gauges (`in_flight=12`)."""
        with self._lock:
            self._state.update(values)
        self.flush()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._state)

    def flush(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self.sink is None or (not force and now - self._last < self.interval):
                return
            self._last = now
            state = dict(self._state)
        self.sink(state)


_local = threading.local()
_UNWATCHED = Meter()


def current() -> Meter:
    """The meter of the unit running on this thread (a sink-less one outside a unit)."""
    return getattr(_local, "meter", None) or _UNWATCHED


@contextlib.contextmanager
def watch(sink: Sink, interval: float = 1.0) -> Iterator[Meter]:
    """Send this thread's unit's progress to `sink` for the block (and once more at its
    end)."""
    meter, outer = Meter(sink, interval), getattr(_local, "meter", None)
    _local.meter = meter
    try:
        yield meter
    finally:
        meter.flush(force=True)
        _local.meter = outer


def add(**deltas: float) -> None:
    current().add(**deltas)


def put(**values: float) -> None:
    current().put(**values)


def snapshot() -> dict[str, float]:
    return current().snapshot()
