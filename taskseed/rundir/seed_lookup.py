"""The seeds of a run by id: what a judge shows beside a generated record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskseed.curation.record import Record
from taskseed.rundir.layout import RunDir, StageDir


class RunSeeds:
    """Normalized seed records of a run directory, read from its normalize stage on first
    use in each process (never pickled)."""

    def __init__(self, run_dir: Path, stage: str = "normalize") -> None:
        self.run_dir = run_dir
        self.stage = stage
        self._by_id: dict[str, Record] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_by_id": None}

    def _load(self) -> dict[str, Record]:
        if self._by_id is None:
            self._by_id = {}
            for out in self._folders():
                for shard in out.done_shards():
                    for record in out.read_shard(shard, Record):
                        self._by_id[record.id] = record
        return self._by_id

    def files(self) -> list[Path]:
        """The Parquet shards of the run's normalized seeds (a frame stage reads them whole)."""
        return [out.shard_path(shard) for out in self._folders() for shard in out.done_shards()]

    def _folders(self) -> list[StageDir]:
        return [out for _, name, out in RunDir(self.run_dir).stage_dirs() if name == self.stage]

    def records(self) -> list[Record]:
        """Every normalized seed record of the run."""
        return list(self._load().values())

    def get(self, ids: list[str]) -> list[Record]:
        """The seeds with these ids that the run has (missing ones are left out)."""
        found = self._load()
        return [found[i] for i in ids if i in found]
