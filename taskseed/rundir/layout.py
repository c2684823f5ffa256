"""The run directory: resolved config, one folder per stage with shards and done markers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.arrow import read_parquet, write_parquet
from taskseed.curation.io.files import write_json
from taskseed.curation.record import Reject
from taskseed.curation.stage import DoneMarker


@dataclass(frozen=True)
class StageDir:
    """The folder of one stage: `part-NNNNN.parquet`, `part-NNNNN.done`, `rejects/`.

    It is the `StageOutput` a finished stage's `finalize` reads.
    """

    path: Path

    def shard_path(self, shard: int) -> Path:
        return self.path / f"part-{shard:05d}.parquet"

    def done_path(self, shard: int) -> Path:
        return self.path / f"part-{shard:05d}.done"

    def rejects_path(self, shard: int) -> Path:
        return self.path / "rejects" / f"part-{shard:05d}.parquet"

    def is_done(self, shard: int) -> bool:
        return self.done_path(shard).exists()

    def done_shards(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.path.glob("part-*.done"))

    def read_marker(self, shard: int) -> DoneMarker:
        return DoneMarker.from_dict(json.loads(self.done_path(shard).read_text()))

    def markers(self) -> list[DoneMarker]:
        """The done marker of every committed shard, in shard order."""
        return [self.read_marker(shard) for shard in self.done_shards()]

    def write_shard(
        self, shard: int, items: list[Any], kind: type, rejects: list[Reject],
        marker: DoneMarker | dict[str, Any]
    ) -> None:
        """Write a shard, its rejects, then its done marker: the marker is the commit (given
        as a `DoneMarker` or its fields)."""
        marker = DoneMarker.of(marker)
        write_parquet(self.shard_path(shard), items, kind)
        write_parquet(self.rejects_path(shard), rejects, Reject)
        write_json(self.done_path(shard), marker.to_dict())

    def read_shard(self, shard: int, kind: type) -> list[Any]:
        return read_parquet(self.shard_path(shard), kind)

    def read_rejects(self, shard: int) -> list[Reject]:
        return read_parquet(self.rejects_path(shard), Reject)

    def plan_path(self) -> Path:
        return self.path / "plan.json"

    def meta_path(self) -> Path:
        return self.path / "stage.json"


class RunDir:
    """A run's folder. Stages live under `stages/NN-name`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stage(self, index: int, name: str) -> StageDir:
        return StageDir(self.path / "stages" / f"{index:02d}-{name}")

    def stage_dirs(self) -> list[tuple[int, str, StageDir]]:
        """Every `stages/NN-name` folder as (number, name, folder), in order."""
        out = []
        for folder in sorted((self.path / "stages").glob("[0-9][0-9]-*")):
            number, _, name = folder.name.partition("-")
            if folder.is_dir() and number.isdigit():
                out.append((int(number), name, StageDir(folder)))
        return out

    def stage_files(self, name: str) -> list[Path]:
        """A file of that name in any stage folder (e.g. `decontamination.json`), in order."""
        return [d.path / name for _, _, d in self.stage_dirs() if (d.path / name).exists()]

    def claim_stage(
        self, stage_dir: StageDir, fingerprint: str, name: str, write: bool = True
    ) -> None:
        """Record a stage's fingerprint (with `write`), or refuse when the folder holds
        another config's work."""
        meta = stage_dir.meta_path()
        if meta.exists():
            old = json.loads(meta.read_text())
            if old.get("fingerprint") != fingerprint:
                raise TaskseedError(
                    f"{stage_dir.path}: made with a different config for stage '{name}'; "
                    "use a new run directory or delete this stage folder and the ones after it"
                )
            return
        if write:
            write_json(meta, {"name": name, "fingerprint": fingerprint})

    def write_config(self, resolved: dict[str, Any], config_hash: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(resolved, sort_keys=False)
        (self.path / "config.yaml").write_text(text)
        (self.path / "config.hash").write_text(config_hash + "\n")

    def summary_path(self) -> Path:
        return self.path / "summary.json"
