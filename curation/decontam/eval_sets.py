"""Held-out eval/test splits as normalized records: the targets of decontamination.

Every `eval:` split of every task spec (including eval-only specs with `train: null`)
is read and normalized with that split's own mapping. Splits that exist only on the hub
are skipped unless `include_hub` is set (reading them needs network or a local cache).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from taskseed.curation.errors import RowError
from taskseed.curation.record import RawRow, Record, Reject, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import SplitSpec, TaskSpec
from taskseed.curation.stage import StageResult

STAGE = "eval_sets"


@dataclass(frozen=True, slots=True)
class EvalSplit:
    """One held-out split of one task."""

    task: str
    split: str
    spec: TaskSpec
    split_spec: SplitSpec

    @property
    def local(self) -> bool:
        return bool(self.split_spec.files)


def eval_splits(specs: dict[str, TaskSpec]) -> list[EvalSplit]:
    """Every held-out split of every task, in task-name order."""
    return [
        EvalSplit(name, s.split, spec, s)
        for name, spec in sorted(specs.items())
        for s in spec.eval
    ]


def _relative(path: str, seeds_root: Path) -> str:
    try:
        return str(Path(path).relative_to(seeds_root))
    except ValueError:
        return path


def read_eval_split(target: EvalSplit, seeds_root: Path) -> StageResult:
    """Normalized records and rejects of one held-out split."""
    spec, split = target.spec, target.split_spec
    result = StageResult()
    for path, index, row in iter_split(split, seeds_root):
        source = Source(
            dataset=spec.source.dataset,
            config=spec.source.config,
            split=split.split,
            row=index,
            path=_relative(path, seeds_root),
        )
        if isinstance(row, RowError):
            raw = RawRow(spec.name, source, "")
            detail = f"{source.path} row {index}: {row}"
            result.drop(STAGE, raw, row.reason, detail)
            continue
        raw = RawRow(spec.name, source, json.dumps(row, ensure_ascii=False, default=str))
        try:
            record = normalize_row(raw, spec, split.mapping, held_out=True)
        except RowError as err:
            detail = f"{source.path} row {index}: {err}"
            result.drop(STAGE, raw, err.reason, detail)
            continue
        result.items.append(record)
        result.counters[f"eval:{spec.name}:{split.split}"] += 1
    return result


def iter_eval_records(
    specs: dict[str, TaskSpec],
    seeds_root: Path,
    *,
    include_hub: bool = False,
    rejects: list[Reject] | None = None,
) -> Iterator[Record]:
    """Yield the normalized records of every held-out split of every task.

    Rejected rows are appended to `rejects` when given. Hub-only splits are read only
    with `include_hub`.
    """
    for target in eval_splits(specs):
        if not target.local and not include_hub:
            continue
        result = read_eval_split(target, seeds_root)
        if rejects is not None:
            rejects.extend(result.rejects)
        yield from result.items
