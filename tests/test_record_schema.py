import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from taskseed.curation.io.arrow import RECORD_SCHEMA, read_parquet, write_parquet
from taskseed.curation.record import (
    Format,
    Lineage,
    ModelText,
    Origin,
    RawRow,
    Record,
    Reject,
    Sampling,
    Source,
)


def make_record(**over) -> Record:
    fields = dict(
        task="arc_easy", family="arc", format=Format.MULTIPLE_CHOICE,
        question="Which gas do plants take in?", choices=["oxygen", "carbon dioxide"],
        answer="carbon dioxide", answer_label="B", license="CC-BY-SA-4.0",
        source=Source("allenai/ai2_arc", "ARC-Easy", "train", 7, "arc/x.json"),
    )
    fields.update(over)
    return Record(**fields)


def test_id_is_a_content_hash():
    a, b = make_record(), make_record(reasoning="different reasoning does not change identity")
    assert a.id == b.id and len(a.id) == 32
    assert make_record(answer="oxygen").id != a.id
    assert make_record(question="Which gas do animals breathe out?").id != a.id


def test_format_is_validated():
    assert make_record(format="yes_no").format is Format.YES_NO
    with pytest.raises(ValueError):
        make_record(format="essay")


def test_parquet_round_trip_keeps_every_field(tmp_path: Path):
    rec = make_record(
        origin=Origin.GENERATED, context="ctx", reasoning="why", knowledge="background",
        tests=["assert f(1) == 2"], commercial=False, scores={"judge": 0.75, "reward": 3.5},
        lineage=Lineage(
            seed_ids=["s1", "s2"], teacher_model="m", prompt_template="multiple_choice.j2",
            prompt_hash="abc", sampling=Sampling(0.7, 0.9, 128, 42), stage="generate",
        ),
    )
    path = tmp_path / "part.parquet"
    write_parquet(path, [rec, make_record()], Record)
    assert pq.read_schema(path).equals(RECORD_SCHEMA, check_metadata=False)
    back = read_parquet(path, Record)
    assert back[0] == rec
    assert back[1] == make_record()
    assert back[0].lineage.sampling.seed == 42


def test_to_dict_is_asdict_with_enum_values_and_shares_nothing():
    rec = make_record(
        scores={"judge": 0.75}, tests=["assert f(1) == 2"],
        lineage=Lineage(seed_ids=["s1"], sampling=Sampling(0.7, 0.9, 128, 42),
                        models=[ModelText("generate", "m", "Apache-2.0")]),
    )
    for record in (rec, make_record()):
        expected = dataclasses.asdict(record)
        expected.update(format=record.format.value, origin=record.origin.value)
        data = record.to_dict()
        assert data == expected and list(data) == list(expected)
        assert list(data["lineage"]) == list(expected["lineage"])
    data = rec.to_dict()
    data["choices"].append("x")
    data["lineage"]["seed_ids"].append("x")
    data["scores"]["x"] = 1.0
    data["lineage"]["models"][0]["model"] = "x"
    assert rec == make_record(
        scores={"judge": 0.75}, tests=["assert f(1) == 2"],
        lineage=Lineage(seed_ids=["s1"], sampling=Sampling(0.7, 0.9, 128, 42),
                        models=[ModelText("generate", "m", "Apache-2.0")]))


def test_raw_rows_and_rejects_round_trip(tmp_path: Path):
    raw = RawRow("gsm8k", Source("openai/gsm8k", "main", "train", 3, "gsm8k/train.jsonl"), "{}")
    write_parquet(tmp_path / "raw.parquet", [raw], RawRow)
    assert read_parquet(tmp_path / "raw.parquet", RawRow) == [raw]
    rej = Reject.of("validity", "answer_missing", "empty answer", make_record())
    write_parquet(tmp_path / "rej.parquet", [rej], Reject)
    back = read_parquet(tmp_path / "rej.parquet", Reject)[0]
    assert back.reason == "answer_missing" and back.item_id == make_record().id
    assert Record.from_dict(__import__("json").loads(back.item)) == make_record()
