"""What a run writes loads in the tools people use: datasets, pandas, JSONL readers."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.parquet as pq
import pytest
from taskseed.curation.io.arrow import read_parquet, write_parquet
from taskseed.curation.record import Format, Record, Source
from taskseed.generation.servers.fake import FakeOpenAIServer
from workspace import write_task

from taskseed.execution.run import run_pipeline

PIPE = """name: formats
run_dir: {run}
seeds_root: .
tasks: [mc.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: fake}}
stages:
  - {{name: seeds, rows_per_shard: 3}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 1}}
  - {{name: validity}}
  - {{name: enrich}}
  - {{name: exact_dedup, shards: 2}}
  - {{name: export, include_seeds: true}}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    rows = [{"q": f"Which option is number {i}?", "c": [f"opt {i}", f"opt {i + 1}", "none"],
             "a": f"opt {i}"} for i in range(6)]
    write_task(root, "mc", "multiple_choice", rows, "{question: q, choices: c, answer: a}")
    with FakeOpenAIServer() as server:
        (root / "pipe.yaml").write_text(PIPE.format(run=root / "run", url=server.base_url))
        run_pipeline(root / "pipe.yaml", progress=lambda line: None)
    return root / "run"


def test_every_stage_and_the_export_load_with_datasets(run_dir: Path) -> None:
    parquet = sorted((run_dir / "stages").rglob("*.parquet"))
    assert len(parquet) > 10
    for path in parquet:  # every column type has a `datasets` feature (no map type)
        datasets.Features.from_arrow_schema(pq.read_schema(path))
    groups: dict[Path, list[Path]] = {}
    for path in parquet:
        groups.setdefault(path.parent, []).append(path)
    loaded = set()
    for folder, files in groups.items():
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        if not rows:
            continue  # `datasets` has no empty splits; the schemas were checked above
        dataset = datasets.load_dataset("parquet", data_files=[str(f) for f in files],
                                        split="train")
        assert dataset.num_rows == rows, folder
        loaded.add(folder.name)
    stages = {"01-seeds", "02-normalize", "03-generate", "04-validity", "05-enrich",
              "06-exact_dedup", "07-export"}
    assert stages <= loaded
    jsonl = sorted((run_dir / "stages" / "07-export").glob("*.jsonl"))
    exported = datasets.load_dataset("json", data_files=[str(p) for p in jsonl], split="train")
    assert exported.num_rows > 0 and {"text", "license", "source", "lineage"} <= set(
        exported.column_names)


def test_scores_are_a_list_of_name_value_pairs(tmp_path: Path) -> None:
    record = Record(task="t", family="f", format=Format.FREE_FORM, question="Why?",
                    answer="Because.", license="MIT", source=Source("d"),
                    scores={"judge.correctness": 4.0, "reward": -0.5})
    path = tmp_path / "part.parquet"
    write_parquet(path, [record], Record)
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert loaded[0]["scores"] == [{"name": "judge.correctness", "value": 4.0},
                                   {"name": "reward", "value": -0.5}]
    assert read_parquet(path, Record)[0].scores == record.scores
    frame = pd.read_parquet(path)
    assert [dict(s) for s in frame["scores"][0]] == loaded[0]["scores"]


def test_jsonl_lines_are_plain_json_with_text(run_dir: Path) -> None:
    for path in (run_dir / "stages" / "07-export").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            assert isinstance(row["text"], str) and row["text"].endswith("\n")
            assert isinstance(row["scores"], dict)
