"""Progress of a local run, per stage and overall: shards, records in and out, share kept,
teacher requests in flight, tokens per second and an ETA.

On a terminal it is a live `rich` display; elsewhere (a Slurm log, a pipe) it is one plain
line per running stage every `TASKSEED_PROGRESS_SECONDS` (30). Finished shards are counted
from their done markers; running ones from the live counts their process keeps in its
`.running` marker (`taskseed.rundir.units`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskseed.curation.stage import DoneMarker
from taskseed.rundir.layout import StageDir
from taskseed.rundir.units import read, running_paths

Lines = Callable[[str], None]


def interval_s() -> float:
    """Seconds between plain progress lines (`TASKSEED_PROGRESS_SECONDS`, default 30)."""
    return float(os.environ.get("TASKSEED_PROGRESS_SECONDS", "30"))


def duration(seconds: float | None) -> str:
    """`2m10s`, `1h04m`, or `?`."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


@dataclass
class StageMeter:
    """One stage's counts while it runs."""

    name: str
    folder: Any  # Path of the stage folder
    units: int
    done: int = 0
    inputs: int = 0
    outputs: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def unit_done(self, marker: DoneMarker | dict[str, Any]) -> None:
        marker = DoneMarker.of(marker)
        self.done += 1
        self.inputs += marker.inputs
        self.outputs += marker.outputs
        self.tokens += marker.counters.get("completion_tokens", 0)

    def live(self) -> dict[str, float]:
        """The summed live counts of this stage's running units."""
        total: dict[str, float] = {}
        for path in running_paths(StageDir(self.folder)):
            info = read(path) or {}
            for key, value in (info.get("live") or {}).items():
                total[key] = total.get(key, 0) + value
        return total

    def fields(self) -> dict[str, str]:
        elapsed = time.monotonic() - self.started
        live = self.live()
        tokens = self.tokens + live.get("completion_tokens", 0)
        kept = "-"
        if self.inputs:
            share = self.outputs / self.inputs
            kept = f"{share:.0%} kept" if share <= 1 else f"{share:.2f} out per in"
        eta = (self.units - self.done) * elapsed / self.done if self.done else None
        return {
            "records": f"{self.inputs} in -> {self.outputs} out",
            "kept": kept,
            "in_flight": f"{int(live.get('in_flight', 0))} in flight",
            "rate": f"{tokens / elapsed:.0f} tokens/s" if elapsed > 0 else "0 tokens/s",
            "eta": f"ETA {duration(eta) if self.done < self.units else '0s'}",
        }

    def line(self) -> str:
        f = self.fields()
        return (f"[{self.name}] {self.done}/{self.units} shards, {f['records']} ({f['kept']}), "
                f"{f['in_flight']}, {f['rate']}, {f['eta']}")


class ProgressView:
    """The display: `rich` on a terminal, plain periodic lines otherwise."""

    def __init__(self, lines: Lines, stages: int, live: bool | None = None) -> None:
        self.lines = lines
        self.stages = stages
        self.started = time.monotonic()
        self.meter: StageMeter | None = None
        self.stage_no = 0
        self.accepted = ""
        self._last_line = time.monotonic()
        self._every = interval_s()
        self._rich: Any = None
        if live is None:
            live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        if live:
            self._start_rich()

    def _start_rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = [TextColumn("{task.description:<22}"), BarColumn(bar_width=24),
                   MofNCompleteColumn(), TextColumn("{task.fields[info]}")]
        self._rich = Progress(*columns, console=Console(stderr=True), refresh_per_second=2)
        self._overall = self._rich.add_task("run", total=self.stages, info="")
        self._task: Any = None
        self._rich.start()

    @property
    def live(self) -> bool:
        """Whether the live terminal display is on."""
        return self._rich is not None

    def print(self, text: str) -> None:
        """A line of the run's log, above the live display when there is one."""
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            self.lines(text)

    def start_stage(self, name: str, folder: Any, units: int, index: int) -> None:
        self.meter = StageMeter(name, folder, units)
        self.stage_no = index
        if self._rich is not None:
            if self._task is not None:
                self._rich.remove_task(self._task)
            self._task = self._rich.add_task(name, total=max(units, 1), info="")
            self._refresh()

    def unit_done(self, marker: DoneMarker | dict[str, Any]) -> None:
        if self.meter is not None:
            self.meter.unit_done(marker)
        self.tick()

    def set_acceptance(self, acceptance: dict[str, dict[str, int]]) -> None:
        if acceptance:
            met = sum(1 for t in acceptance.values() if t["accepted"] >= t["target"])
            accepted = sum(t["accepted"] for t in acceptance.values())
            self.accepted = (f", accepted {accepted} records, {met}/{len(acceptance)} tasks at "
                             "target")
        self.tick()

    def tick(self) -> None:
        """Refresh the display, or print a line when the interval has passed."""
        if self._rich is not None:
            self._refresh()
        elif self.meter is not None and time.monotonic() - self._last_line >= self._every:
            self._last_line = time.monotonic()
            self.lines(self.meter.line() + self._overall_text())

    def _overall_text(self) -> str:
        return (f"; run: stage {self.stage_no}/{self.stages}, "
                f"{duration(time.monotonic() - self.started)} elapsed{self.accepted}")

    def _refresh(self) -> None:
        if self.meter is not None and self._task is not None:
            f = self.meter.fields()
            self._rich.update(self._task, completed=self.meter.done, info=" | ".join(
                (f["records"], f["kept"], f["in_flight"], f["rate"], f["eta"])))
        elapsed = duration(time.monotonic() - self.started)
        finished = self.meter is not None and self.meter.done >= self.meter.units
        self._rich.update(self._overall, completed=max(self.stage_no - 1 + finished, 0),
                          info=f"{elapsed} elapsed{self.accepted}")

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
