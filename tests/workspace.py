"""Small task specs and seed files written into a test's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

TASK = """name: {name}
family: demo
format: {fmt}
license: MIT
source: {{dataset: demo/{name}}}
scored_split: test
train: {{split: train, files: [{name}.jsonl], mapping: {mapping}}}
"""


def write_task(folder: Path, name: str, fmt: str, rows: list[dict], mapping: str) -> Path:
    """Write `<name>.jsonl` with the rows and `<name>.yaml`, a spec reading it; return the spec."""
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = folder / f"{name}.yaml"
    spec.write_text(TASK.format(name=name, fmt=fmt, mapping=mapping))
    return spec


def hub_folder(folder: Path, rows: list[dict]) -> Path:
    """A dataset folder as the hub stores it (`data/train-00000-of-00001.parquet`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    return folder


def with_local_hub(split, folder: Path):
    """The split with its hub source pointed at a local folder in the hub's layout."""
    hub = split.hub.model_copy(update={"path": str(folder), "name": None})
    return split.model_copy(update={"hub": hub})
