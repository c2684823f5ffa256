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
