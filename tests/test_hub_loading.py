"""The hub path on local files: `datasets.load_dataset` on a folder in the hub's row layout."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from taskseed.curation.errors import RowError
from taskseed.curation.record import RawRow, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import load_task_spec


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def records(spec, split, seeds_root: Path) -> list:
    """The normalized records of a split; rows that normalization rejects are left out."""
    out = []
    for path, index, row in iter_split(split, seeds_root):
        raw = RawRow(spec.name, Source(spec.source.dataset, None, split.split, index, path),
                     json.dumps(row, default=str))
        try:
            out.append(normalize_row(raw, spec, split.mapping))
        except RowError:
            continue
    return out


def as_hub_folder(folder: Path, rows: list[dict]) -> Path:
    """A dataset folder as the hub stores it: data/train-00000-of-00001.parquet."""
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    return folder


def first_rows(path: Path, n: int) -> list[dict]:
    with path.open() as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def test_gsm8k_from_a_hub_layout_matches_the_local_files(repo, seeds_root, tmp_path):
    spec = load_task_spec(repo / "configs" / "tasks" / "gsm8k.yaml")
    rows = first_rows(seeds_root / "gsm8k" / "train.jsonl", 12)
    folder = as_hub_folder(tmp_path / "gsm8k", rows)
    hub_spec = load_task_spec(repo / "configs" / "tasks" / "gsm8k.yaml", hub=True)
    hub_split = hub_spec.train.model_copy(
        update={"hub": hub_spec.train.hub.model_copy(update={"path": str(folder), "name": None})}
    )
    from_hub = records(hub_spec, hub_split, seeds_root)
    local = records(spec, spec.train, seeds_root)[:12]
    assert [(r.question, r.answer, r.reasoning) for r in from_hub] == [
        (r.question, r.answer, r.reasoning) for r in local
    ]
    assert from_hub[0].answer == "72"


def test_commonsense_qa_hub_schema_resolves_labels_to_text(repo, seeds_root, tmp_path):
    spec = load_task_spec(repo / "configs" / "tasks" / "commonsense_qa.yaml")
    originals = first_rows(seeds_root / "commonsense_qa" / "train_rand_split.jsonl", 8)
    flattened = [
        {"id": r["id"], "question": r["question"]["stem"],
         "question_concept": r["question"]["question_concept"],
         "choices": {"label": [c["label"] for c in r["question"]["choices"]],
                     "text": [c["text"] for c in r["question"]["choices"]]},
         "answerKey": r["answerKey"]}
        for r in originals
    ]
    folder = as_hub_folder(tmp_path / "csqa", flattened)
    hub_spec = load_task_spec(repo / "configs" / "tasks" / "commonsense_qa.yaml", hub=True)
    hub_split = hub_spec.train.model_copy(
        update={"hub": hub_spec.train.hub.model_copy(update={"path": str(folder)})}
    )
    from_hub = records(hub_spec, hub_split, seeds_root)
    local = [r for r in records(spec, spec.train, seeds_root) if r.source.row < 8]
    assert [(r.question, r.choices, r.answer, r.answer_label) for r in from_hub] == [
        (r.question, r.choices, r.answer, r.answer_label) for r in local
    ]
    assert from_hub[0].answer == "ignore" and from_hub[0].answer_label == "A"


def test_a_missing_hub_dataset_is_one_line(repo, seeds_root, tmp_path):
    from taskseed.curation.errors import TaskseedError

    hub_spec = load_task_spec(repo / "configs" / "tasks" / "gsm8k.yaml", hub=True)
    hub_split = hub_spec.train.model_copy(
        update={"hub": hub_spec.train.hub.model_copy(update={"path": str(tmp_path / "none")})}
    )
    with pytest.raises(TaskseedError) as err:
        list(iter_split(hub_split, seeds_root))
    assert "\n" not in str(err.value) and str(tmp_path / "none") in str(err.value)
