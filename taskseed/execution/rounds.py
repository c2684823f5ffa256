"""Generate until N accepted: rounds of generation and judging per task.

With `accept:` in a config, the stages from `accept.start` (generate) up to the last batch
stage before a frame stage form a loop. Round 0 runs them on every input shard. When a
round is done, the records that came out of the loop's last stage are counted per task;
every task with fewer than `target` accepted records and fewer than `max_candidates`
candidates gets another round. A round is one more batch per short task: its shards are
numbered `round * base + input shard`, so they get new exemplar groups and sampling seeds.

The rounds are kept in `rounds.json` in the run directory; a round is added only after the
one before it is committed, so a rerun decides the same rounds, sends no request for work
that is done, and overshoots `target` by at most one round's batch.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from taskseed.curation.io.files import write_json
from taskseed.rundir.layout import StageDir

TASK_COUNTERS = ("candidates", "calls", "prompt_tokens", "completion_tokens")


class AcceptConfig(BaseModel):
    """`accept:`: per task, generate and judge until `target` records pass, or until
    `max_candidates` records have been generated, in at most `max_rounds` rounds."""

    model_config = ConfigDict(extra="forbid")

    target: int = Field(ge=1)
    max_candidates: int = Field(ge=1)
    max_rounds: int = Field(20, ge=1)
    start: str = "generate"  # the first stage of the loop


def _tasks_in(out: StageDir, shards: list[int]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for shard in shards:
        path = out.shard_path(shard)
        if path.exists():
            counts.update(pq.read_table(path, columns=["task"]).column("task").to_pylist())
    return counts


@dataclass
class Rounds:
    """The rounds of a run directory: which tasks each round generates for."""

    path: Path
    base: int  # shards per round (the loop's input shards)
    rounds: list[list[str] | None] = field(default_factory=lambda: [None])  # None: all tasks

    @classmethod
    def load(cls, run_dir: Path, base: int) -> Rounds:
        path = run_dir / "rounds.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(path, base, data["rounds"])
        return cls(path, base)

    @property
    def shards(self) -> int:
        return self.base * len(self.rounds)

    def source_shard(self, shard: int) -> int:
        return shard % self.base

    def tasks(self, shard: int) -> list[str] | None:
        """The tasks shard `shard` generates for (None: every task)."""
        return self.rounds[shard // self.base]

    def select(self, shard: int, batch: list[Any]) -> list[Any]:
        tasks = self.tasks(shard)
        if tasks is None:
            return batch
        wanted = set(tasks)
        return [item for item in batch if item.task in wanted]

    def progress(self, loop: list[StageDir]) -> dict[str, dict[str, int]]:
        """Per task: candidates (requests generate planned), accepted (records out of the
        loop's last stage), and the model calls and tokens of the loop's stages."""
        stats: dict[str, Counter[str]] = {}
        for out in loop:
            for shard in out.done_shards():
                for key, value in out.read_marker(shard).counters.items():
                    name, _, task = key.partition(":")
                    if task and name in TASK_COUNTERS:
                        stats.setdefault(task, Counter())[name] += value
        last = loop[-1]
        for task, n in _tasks_in(last, last.done_shards()).items():
            stats.setdefault(task, Counter())["accepted"] += n
        return {task: dict(c) for task, c in sorted(stats.items())}

    def extend(self, cfg: AcceptConfig, stats: dict[str, dict[str, int]]) -> list[str]:
        """Add a round for the tasks still short of the target; the tasks it covers."""
        short = sorted(
            task for task, s in stats.items()
            if s.get("accepted", 0) < cfg.target and s.get("candidates", 0) < cfg.max_candidates
        )
        if not short or len(self.rounds) >= cfg.max_rounds:
            return []
        self.rounds.append(short)
        write_json(self.path, {"rounds": self.rounds})
        return short
