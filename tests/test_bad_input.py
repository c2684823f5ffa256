"""Malformed rows become rejects with reasons; broken files and specs are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import taskseed.curation.seeds.readers as readers
from taskseed.curation.errors import ConfigError, TaskseedError
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPECS = FIXTURES / "specs"
SEEDS = FIXTURES / "bad_seeds"


def _run(spec_name: str) -> tuple[list, list[tuple[str, int, str]]]:
    spec = load_task_spec(SPECS / spec_name)
    specs = {spec.name: spec}
    stage = SeedStage(SeedParams(), specs, SEEDS)
    records, rejects = [], []
    for shard in stage.plan():
        read = stage.read(shard)
        done = NormalizeStage(None, specs).process(read.items, 0)
        records += done.items
        for reject in read.rejects + done.rejects:
            path, row = reject.item_id.rsplit(":", 1)
            rejects.append((reject.reason, int(row), reject.detail))
    return records, sorted(rejects, key=lambda r: r[1])


def test_bad_jsonl_rows_are_rejected_and_the_rest_loads(monkeypatch):
    monkeypatch.setattr(readers, "MAX_ROW_BYTES", 2000)
    records, rejects = _run("bad_mc.yaml")
    assert [(r.question, r.answer, r.answer_label) for r in records] == [
        ("What color is the sky on a clear day?", "blue", "B"),
        ("Which color do you get by mixing red and white?", "red", "A"),
    ]
    assert [(reason, row) for reason, row, _ in rejects] == [
        ("missing_field", 1),
        ("bad_label", 2),
        ("empty_field", 3),
        ("wrong_type", 4),
        ("invalid_utf8", 5),
        ("oversized", 6),
        ("invalid_json", 7),
        ("wrong_type", 8),
    ]
    details = {row: detail for _, row, detail in rejects}
    assert details[1] == "mc.jsonl row 1: question.stem: field is missing"
    assert details[2] == "mc.jsonl row 2: answer_key: label 'E' is not among the choices"
    assert details[4] == "mc.jsonl row 4: question.choices[*].text: expected a list"
    assert details[5] == "mc.jsonl row 5: row: invalid UTF-8 at byte 26"
    assert details[6] == "mc.jsonl row 6: row: 3125 bytes over the 2000 limit"


def test_label_file_out_of_range_and_too_short():
    records, rejects = _run("bad_pairs.yaml")
    assert [(r.question, r.answer) for r in records] == [("Open a jar.", "Twist the lid.")]
    assert rejects == [
        ("label_out_of_range", 1, "pairs.jsonl row 1: answer_key: label '7' out of range"),
        ("missing_label", 2, "pairs.jsonl row 2: label: no line 3 in pairs-labels.lst"),
    ]


def test_csv_rows_with_wrong_width_or_answer():
    records, rejects = _run("bad_csv.yaml")
    assert [(r.question, r.answer, r.answer_label) for r in records] == [
        ("What is 2 + 2?", "4", "B")
    ]
    assert [(reason, row) for reason, row, _ in rejects] == [
        ("wrong_type", 1), ("label_out_of_range", 2), ("bad_label", 3)
    ]
    assert rejects[0][2] == "mmlu_like.csv row 1: row: 3 columns, the header has 6"


def test_text_blocks_with_a_missing_line():
    records, rejects = _run("bad_blocks.yaml")
    (record,) = records
    assert (record.context, record.question, record.answer, record.answer_label) == (
        "All cats purr.", "Which follows?", "Tom, a cat, purrs", "B"
    )
    assert record.choices == ["Dogs purr", "Tom, a cat, purrs", "Nothing", "Fish purr"]
    assert rejects == [("bad_block", 1, "blocks.txt row 1: row: 6 lines, expected 7")]


def test_reformatted_rows_without_options_or_with_bad_answers():
    records, rejects = _run("bad_adapters.yaml")
    (record,) = records
    assert (record.question, record.choices, record.answer) == (
        "Which is a fruit?", ["apple", "carrot"], "apple"
    )
    assert (record.license, record.commercial) == ("CC-BY-NC-4.0", False)
    assert [(reason, row) for reason, row, _ in rejects] == [
        ("missing_field", 1), ("label_out_of_range", 2), ("wrong_type", 3), ("wrong_type", 4)
    ]
    assert rejects[1][2] == "adapters.json row 2: answer: 'answer3' names no option (there are 2)"


@pytest.mark.parametrize(
    ("spec_name", "message"),
    [
        ("missing_file.yaml", f"{SEEDS / 'does_not_exist.jsonl'}: seed file not found"),
        ("not_an_array.yaml", f"{SEEDS / 'not_an_array.json'}: expected a JSON array of rows"),
    ],
)
def test_missing_or_malformed_file_is_one_line(spec_name, message):
    with pytest.raises(TaskseedError) as info:
        _run(spec_name)
    assert str(info.value) == message


def test_unreadable_file_is_one_line(tmp_path):
    spec = load_task_spec(SPECS / "bad_mc.yaml")
    (tmp_path / "mc.jsonl").mkdir()
    stage = SeedStage(SeedParams(), {spec.name: spec}, tmp_path)
    with pytest.raises(TaskseedError) as info:
        stage.plan()
    assert str(info.value) == f"{tmp_path / 'mc.jsonl'}: is a directory, not a seed file"


def test_unknown_spec_key_is_one_line():
    with pytest.raises(ConfigError) as info:
        load_task_spec(SPECS / "unknown_key.yaml")
    path = SPECS / "unknown_key.yaml"
    assert str(info.value) == f"{path}: train.mapping.answr_marker: unknown key"


def test_missing_spec_file_is_one_line():
    with pytest.raises(ConfigError) as info:
        load_task_spec(SPECS / "nope.yaml")
    assert str(info.value) == f"{SPECS / 'nope.yaml'}: file not found"


def test_label_files_must_pair_with_files(tmp_path):
    text = (SPECS / "bad_pairs.yaml").read_text().replace(
        "label_files: [pairs-labels.lst]", "label_files: [a.lst, b.lst]")
    path = tmp_path / "pairs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_task_spec(path)
    assert str(info.value) == (
        f"{path}: train: `label_files` needs one label file per entry of `files`"
    )


def _mc_row(stem: str, key: str = "A") -> str:
    choices = [{"label": "A", "text": "red"}, {"label": "B", "text": "blue"}]
    return json.dumps({"question": {"stem": stem, "choices": choices}, "answerKey": key})


def test_repeated_seed_rows_are_dropped_naming_the_row_they_repeat(tmp_path):
    spec = load_task_spec(SPECS / "bad_mc.yaml")
    rows = [_mc_row("Which is warm?"), _mc_row("Which is cold?", "B"),
            _mc_row("Which is warm?"), _mc_row("Which is cold?", "B")]
    (tmp_path / "mc.jsonl").write_text("\n".join(rows) + "\n")
    stage = SeedStage(SeedParams(rows_per_shard=3), {spec.name: spec}, tmp_path)
    read = [stage.read(shard) for shard in stage.plan()]
    assert [len(r.items) for r in read] == [2, 0]
    rejects = [r for part in read for r in part.rejects]
    assert [(r.reason, r.detail) for r in rejects] == [
        ("duplicate_row", "mc.jsonl row 2: repeats mc.jsonl row 0"),
        ("duplicate_row", "mc.jsonl row 3: repeats mc.jsonl row 1")]


def test_an_empty_seed_file_is_one_line_naming_it(tmp_path):
    spec = load_task_spec(SPECS / "bad_mc.yaml")
    (tmp_path / "mc.jsonl").write_text("")
    stage = SeedStage(SeedParams(), {spec.name: spec}, tmp_path)
    with pytest.raises(TaskseedError) as info:
        stage.plan()
    assert str(info.value) == (f"seeds: task 'bad_mc': its training split "
                               f"({tmp_path / 'mc.jsonl'}) holds no rows")
