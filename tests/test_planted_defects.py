"""Floor for the deterministic filters on planted defects in real seeds (real sandbox).

A smaller set than `benchmarks/bench_planted_defects.py`, from the same fixed seed: 50 of
each defect kind (20 hanging programs, each costs the sandbox's time limit) and 600
untouched correct items. Every deterministic kind must be caught at least 95% of the time
and at most 2% of correct items dropped; `wrong_answer_key` and `truncated_stem` (a cut stem
of a task whose seeds are cloze stems) are left to the model judges.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MIN_RECALL = 0.95
MAX_FALSE_DROPS = 0.02


def _planted() -> ModuleType:
    spec = importlib.util.spec_from_file_location("planted", REPO / "benchmarks" / "planted.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


planted = _planted()


@pytest.fixture(scope="module")
def summary(seeds_root: Path) -> dict[str, Any]:
    records = planted.load_records(seeds_root, max_per_task=1000)
    items = planted.build(records, planted.default_counts(50, 600, code_hangs=20), seed=0)
    seeds = [r for task in records.values() for r in task]
    outcomes, _ = planted.run_filters(items, code_seconds=2.0, workers=2, seeds=seeds)
    return planted.summarize(items, outcomes)


def test_every_kind_is_planted(summary: dict[str, Any]) -> None:
    assert set(summary["kinds"]) == set(planted.KINDS)
    for kind, row in summary["kinds"].items():
        assert row["planted"] >= 20, f"{kind}: only {row['planted']} planted"


@pytest.mark.parametrize("kind", planted.DETERMINISTIC)
def test_recall_floor(summary: dict[str, Any], kind: str) -> None:
    row = summary["kinds"][kind]
    missed = json.dumps(row["missed_examples"][:3], indent=1)
    assert row["recall"] >= MIN_RECALL, (
        f"{kind}: caught {row['caught']}/{row['planted']}; missed by variant "
        f"{row['missed_by_variant']}; e.g. {missed}")


def test_few_correct_items_dropped(summary: dict[str, Any]) -> None:
    rows = summary["correct_by_task"]
    total = sum(r["n"] for r in rows.values())
    dropped = {task: r for task, r in rows.items() if r["dropped"]}
    rate = sum(r["dropped"] for r in rows.values()) / total
    assert rate <= MAX_FALSE_DROPS, json.dumps(dropped, indent=1)
