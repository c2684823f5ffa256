"""Seed files as they come: BOMs, delimiters, Parquet, compression, mixed licenses, big files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from taskseed.curation.errors import ConfigError, RowError
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_spec

ROWS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i), "lic": lic}
        for i, lic in enumerate(["MIT", "CC-BY-NC-4.0", "", "Apache-2.0"])]

SPEC = """name: sums
family: sums
format: free_form
license: MIT
source: {{dataset: demo/sums}}
scored_split: test
train:
  split: train
  files: [{file}]
  {extra}
  mapping: {{question: q, answer: a{mapping}}}
"""


def spec(tmp_path: Path, file: str, extra: str = "", mapping: str = ""):
    path = tmp_path / "sums.yaml"
    path.write_text(SPEC.format(file=file, extra=extra, mapping=mapping))
    return load_task_spec(path)


def records(tmp_path: Path, task) -> tuple[list, list]:
    specs = {task.name: task}
    stage = SeedStage(SeedParams(rows_per_shard=2), specs, tmp_path)
    raws, rejects = [], []
    for shard in stage.plan():
        read = stage.read(shard)
        raws += read.items
        rejects += read.rejects
    done = NormalizeStage(None, specs).process(raws, 0)
    return done.items, rejects + done.rejects


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_a_byte_order_mark_loses_no_row(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl(ROWS))
    got, rejects = records(tmp_path, spec(tmp_path, "s.jsonl"))
    assert [r.answer for r in got] == ["0", "2", "4", "6"] and rejects == []


@pytest.mark.parametrize(
    ("name", "extra", "write"),
    [
        ("s.tsv", "", lambda rows: "q\ta\tlic\n" + "".join(
            f"{r['q']}\t{r['a']}\t{r['lic']}\n" for r in rows)),
        ("s.txt", "reader: csv\n  delimiter: '|'", lambda rows: "q|a|lic\n" + "".join(
            f"{r['q']}|{r['a']}|{r['lic']}\n" for r in rows)),
        ("s.csv", "", lambda rows: "\ufeffq,a,lic\n" + "".join(
            f"{r['q']},{r['a']},{r['lic']}\n" for r in rows)),
    ],
    ids=["tsv", "pipe-delimited", "csv-with-bom"],
)
def test_delimited_files(tmp_path: Path, name: str, extra: str, write) -> None:
    (tmp_path / name).write_text(write(ROWS), encoding="utf-8")
    got, rejects = records(tmp_path, spec(tmp_path, name, extra))
    assert [(r.question, r.answer) for r in got] == [(r["q"], r["a"]) for r in ROWS]
    assert rejects == []


def test_parquet_and_compressed_files_read_the_same_rows(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "s.parquet")
    (tmp_path / "s.jsonl.gz").write_bytes(gzip.compress(jsonl(ROWS)))
    (tmp_path / "s.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(ROWS)))
    (tmp_path / "s.csv.gz").write_bytes(gzip.compress(
        ("q,a\n" + "".join(f"{r['q']},{r['a']}\n" for r in ROWS)).encode()))
    expected = [(r["q"], r["a"]) for r in ROWS]
    for name in ("s.parquet", "s.jsonl.gz", "s.jsonl.zst", "s.csv.gz"):
        got, rejects = records(tmp_path, spec(tmp_path, name))
        assert [(r.question, r.answer) for r in got] == expected, name
        assert rejects == [], name


def test_a_broken_compressed_file_keeps_the_rows_before_the_break(tmp_path: Path) -> None:
    many = [{"q": f"Question number {i}?", "a": str(i)} for i in range(3000)]
    data = gzip.compress(jsonl(many))
    (tmp_path / "s.jsonl.gz").write_bytes(data[: len(data) // 2])
    rows = [row for _, _, row in iter_split(spec(tmp_path, "s.jsonl.gz").train, tmp_path)]
    assert isinstance(rows[-1], RowError) and rows[-1].reason == "unreadable"
    good = rows[:-1]
    assert len(good) > 100 and all(r["a"] == str(i) for i, r in enumerate(good))


def test_repeated_choices_are_rejected_at_normalization(tmp_path: Path) -> None:
    rows = [{"q": "Which is a fruit?", "c": ["apple", "stone", "glass"], "a": "apple"},
            {"q": "Which is a stone?", "c": ["apple", "Apple ", "granite"], "a": "granite"}]
    (tmp_path / "mc.jsonl").write_bytes(jsonl(rows))
    path = tmp_path / "mc.yaml"
    path.write_text(SPEC.format(file="mc.jsonl", extra="", mapping="").replace(
        "free_form", "multiple_choice").replace("{question: q, answer: a}",
                                                "{question: q, choices: c, answer: a}"))
    got, rejects = records(tmp_path, load_task_spec(path))
    assert [r.question for r in got] == ["Which is a fruit?"]
    assert [(r.reason, r.detail.split(": ", 1)[1]) for r in rejects] == [
        ("duplicate_choices", "choices: 'apple' is given twice")]


def test_a_license_column_per_row(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_bytes(jsonl(ROWS))
    got, _ = records(tmp_path, spec(tmp_path, "s.jsonl", mapping=", license: lic"))
    assert [(r.license, r.commercial) for r in got] == [
        ("MIT", True), ("CC-BY-NC-4.0", False), ("MIT", True), ("Apache-2.0", True)]


SPLITS = """name: mixed
family: mixed
format: free_form
license: MIT
source: {{dataset: demo/mixed}}
scored_split: dev
train: {{split: train, files: [all.jsonl], mapping: {{question: q, answer: a,
         where: {{field: split, values: {train}}}}}}}
eval:
  - {{split: dev, files: [all.jsonl], mapping: {{question: q, answer: a,
      where: {{field: split, values: {dev}}}}}}}
"""


def test_one_file_with_a_split_column_can_seed_and_be_held_out(tmp_path: Path) -> None:
    rows = [{"q": f"Question {i}?", "a": str(i), "split": "train" if i % 3 else "dev"}
            for i in range(9)]
    (tmp_path / "all.jsonl").write_bytes(jsonl(rows))
    path = tmp_path / "mixed.yaml"
    path.write_text(SPLITS.format(train="[train]", dev="[dev]"))
    task = load_task_spec(path)
    got, _ = records(tmp_path, task)
    assert [r.answer for r in got] == ["1", "2", "4", "5", "7", "8"]
    path.write_text(SPLITS.format(train="[train, dev]", dev="[dev]"))
    with pytest.raises(ConfigError, match="no disjoint `where` filters"):
        load_task_spec(path)


def test_shards_stream_a_split_in_any_order(tmp_path: Path) -> None:
    many = [{"q": f"Question number {i}?", "a": str(i)} for i in range(50)]
    (tmp_path / "s.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl(many)))
    task = spec(tmp_path, "s.jsonl.zst")
    stage = SeedStage(SeedParams(rows_per_shard=7), {task.name: task}, tmp_path)
    plan = stage.plan()
    assert len(plan) == 8 and plan[-1] == {"task": "sums", "start": 49, "stop": 50}
    order = [3, 4, 0, 7, 1, 2, 6, 5]
    read = {i: [json.loads(r.payload)["a"] for r in stage.read(plan[i]).items] for i in order}
    assert [a for i in range(8) for a in read[i]] == [str(i) for i in range(50)]
