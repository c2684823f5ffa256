"""Task specs of the whole seed catalog: counts per split, licenses, hub variants, refusals."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import taskseed.curation.seeds.readers as readers
from taskseed.curation.decontam.eval_sets import eval_splits, iter_eval_records, read_eval_split
from taskseed.curation.errors import ConfigError
from taskseed.curation.record import RawRow, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_spec, load_task_specs
from workspace import hub_folder, with_local_hub

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
TASKS = REPO / "configs" / "tasks"
FIXTURE_SPECS = REPO / "tests" / "fixtures" / "specs"

pytestmark = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds is not present")

TRAIN_COUNTS = {
    "gsm8k": 7473,
    "mbpp": 374,
    "commonsense_qa": 9741,
    "social_i_qa": 33410,
    "arc_easy": 2251,
    "arc_challenge": 1119,
    "openbookqa": 4957,
    "boolq": 9427,
    "race": 4115 + 6068,
    "squad": 500,
}
EVAL_COUNTS = {
    ("gsm8k", "test"): 1319,
    ("mbpp", "test"): 500,
    ("mbpp", "prompt"): 10,
    ("commonsense_qa", "validation"): 1221,
    ("social_i_qa", "validation"): 1954,
    ("arc_easy", "test"): 2376,
    ("arc_easy", "validation"): 570,
    ("arc_challenge", "test"): 1172,
    ("arc_challenge", "validation"): 299,
    ("openbookqa", "test"): 500,
    ("boolq", "validation"): 3270,
    ("race", "validation"): 3451 + 1436,
    ("squad", "validation"): 10570,
    ("squadv2", "validation"): 11873,
    ("mmlu", "test"): 14042,
    ("mmlu", "dev"): 285,
    ("piqa", "validation"): 1838,
    ("winogrande", "validation"): 1267,
    ("hellaswag", "validation"): 1000,
    ("mathqa", "test"): 2985,
    ("logiqa", "test"): 651,
    ("logiqa", "validation"): 651,
}
HUB_ONLY = {("gpqa", "train"), ("mmlu_pro", "test"), ("mmlu_pro", "validation"),
            ("openbookqa", "validation"), ("race", "test")}


@pytest.fixture(scope="module")
def specs() -> dict[str, TaskSpec]:
    return load_task_specs(sorted(TASKS.glob("*.yaml")))


@pytest.fixture(scope="module")
def train_results(specs):
    stage = SeedStage(SeedParams(rows_per_shard=4000), specs, SEEDS)
    normalize = NormalizeStage(None, specs)
    records: dict[str, list] = {}
    rejects = []
    for shard in stage.plan():
        read = stage.read(shard)
        done = normalize.process(read.items, 0)
        records.setdefault(shard["task"], []).extend(done.items)
        rejects += read.rejects + done.rejects
    return records, rejects


def test_catalog_names(specs):
    assert set(specs) == set(TRAIN_COUNTS) | {
        "mmlu", "piqa", "winogrande", "hellaswag", "mathqa", "logiqa", "squadv2", "gpqa",
        "mmlu_pro",
    }
    assert {n for n, s in specs.items() if s.train is not None} == set(TRAIN_COUNTS)


# Training rows whose options repeat are refused as seeds (the held-out splits keep them).
REPEATED_OPTIONS = {"commonsense_qa": 122, "social_i_qa": 37, "race": 12, "openbookqa": 3,
                    "arc_challenge": 2}
# Training rows that repeat an earlier row of their split word for word are dropped once.
REPEATED_ROWS = {"social_i_qa": 24, "openbookqa": 5, "arc_challenge": 1}


def test_training_counts_match_source_md(train_results):
    records, rejects = train_results
    assert {r.reason for r in rejects} == {"duplicate_choices", "duplicate_row"}
    repeated = Counter(json.loads(r.item)["task"] for r in rejects if r.reason == "duplicate_row")
    assert repeated == REPEATED_ROWS
    refused = Counter(json.loads(r.item)["task"] for r in rejects)
    assert refused - repeated == REPEATED_OPTIONS
    counts = {task: len(rows) + refused[task] for task, rows in records.items()}
    assert counts == TRAIN_COUNTS


def test_training_splits_only(train_results):
    records, _ = train_results
    splits = {r.source.split for rows in records.values() for r in rows}
    assert splits == {"train"}
    mbpp_rows = sorted(r.source.row for r in records["mbpp"])
    assert (mbpp_rows[0], mbpp_rows[-1]) == (600, 973)  # task_id 601..974


def test_eval_counts_match_source_md(specs):
    local = {}
    for target in eval_splits(specs):
        if not target.local:
            continue
        result = read_eval_split(target, SEEDS)
        assert result.rejects == [], (target.task, target.split)
        local[(target.task, target.split)] = len(result.items)
    assert local == EVAL_COUNTS
    assert {(t.task, t.split) for t in eval_splits(specs) if not t.local} == HUB_ONLY


def test_iter_eval_records_skips_hub_only_splits(specs, tmp_path):
    subset = {k: specs[k] for k in ("gpqa", "mathqa", "logiqa")}
    rejects: list = []
    got = Counter((r.task, r.source.split) for r in iter_eval_records(subset, SEEDS,
                                                                       rejects=rejects))
    assert got == {("mathqa", "test"): 2985, ("logiqa", "test"): 651,
                   ("logiqa", "validation"): 651}
    assert rejects == []

    hub_rows = [{"Question": "Which particle mediates the strong force?",
                 "Correct Answer": "gluon", "Incorrect Answer 1": "photon",
                 "Incorrect Answer 2": "W boson", "Incorrect Answer 3": "graviton"}]
    folder = hub_folder(tmp_path / "gpqa", hub_rows)
    spec = specs["gpqa"]
    local = spec.model_copy(update={"eval": [with_local_hub(s, folder) for s in spec.eval]})
    (gpqa,) = iter_eval_records({"gpqa": local}, SEEDS, include_hub=True)
    assert (gpqa.answer, gpqa.answer_label, gpqa.source.split) == ("gluon", "A", "train")
    assert gpqa.choices == ["gluon", "photon", "W boson", "graviton"]
    assert gpqa.source.path == f"hub:{folder}/:train"


def test_licenses_and_commercial_flags(specs, train_results):
    non_commercial = {n for n, s in specs.items() if not s.commercial}
    assert non_commercial == {"race", "social_i_qa", "logiqa"}
    assert specs["gsm8k"].license == "MIT"
    assert specs["arc_easy"].license == specs["squad"].license == "CC-BY-SA-4.0"
    assert specs["boolq"].license == "CC-BY-SA-3.0"
    assert specs["mbpp"].license == "CC-BY-4.0"
    assert specs["piqa"].license == "AFL-3.0"
    records, _ = train_results
    for task, rows in records.items():
        assert {(r.license, r.commercial) for r in rows} == {
            (specs[task].license, specs[task].commercial)
        }


def test_every_spec_names_a_hub_source(specs):
    for name, spec in specs.items():
        for split in [spec.train, *spec.eval] if spec.train else spec.eval:
            assert split.hub is not None, (name, split.split)
            assert split.hub.revision is None


def test_hub_variant_switches_rows_and_mapping(specs):
    hub = load_task_specs(sorted(TASKS.glob("*.yaml")), hub=True)
    assert hub["arc_easy"].train.files == []
    assert hub["arc_easy"].train.mapping.parser == "fields"
    assert hub["arc_easy"].train.mapping.question == "question"
    assert hub["social_i_qa"].train.label_files == []
    assert hub["social_i_qa"].train.mapping == specs["social_i_qa"].train.mapping
    assert [s.split for s in hub["openbookqa"].eval] == ["test", "validation"]
    assert hub["race"].train.hub.path == "ehovy/race"
    assert hub["race"].eval[1].mapping.explode == ["problems"]


def _hub_record(spec: TaskSpec, row: dict, split: str = "train"):
    """Normalize one row in the hub layout through the hub variant of a task."""
    hub = spec.hub_variant()
    target = hub.train if split == "train" else next(s for s in hub.eval if s.split == split)
    rows = list(readers.apply_mapping_rows([row], target.mapping))
    source = Source(spec.source.dataset, spec.source.config, split, 0, "hub")
    return [
        normalize_row(RawRow(spec.name, source, json.dumps(r)), hub, target.mapping)
        for _, r in rows
    ]


def _content(record) -> tuple:
    return (record.question, record.context, record.choices, record.answer,
            record.answer_label, record.reasoning, record.tests)


def test_hub_layouts_normalize_like_local_rows(specs, train_results):
    records, _ = train_results
    first = {task: rows[0] for task, rows in records.items()}

    (gsm,) = _hub_record(specs["gsm8k"], json.loads(
        (SEEDS / "gsm8k/train.jsonl").read_text().splitlines()[0]))
    assert _content(gsm) == _content(first["gsm8k"])

    local = first["commonsense_qa"]
    (csqa,) = _hub_record(specs["commonsense_qa"], {
        "id": "075e483d21c29a511267ef62bedc0461", "question": local.question,
        "question_concept": "punishing",
        "choices": {"label": ["A", "B", "C", "D", "E"], "text": local.choices},
        "answerKey": "A"})
    assert _content(csqa) == _content(local)

    local = first["arc_easy"]
    (arc,) = _hub_record(specs["arc_easy"], {
        "id": "x", "question": local.question,
        "choices": {"text": local.choices, "label": ["A", "B", "C", "D"]}, "answerKey": "B"})
    assert _content(arc) == _content(local)

    local = first["openbookqa"]
    (obqa,) = _hub_record(specs["openbookqa"], {
        "id": "7-980", "question_stem": local.question,
        "choices": {"text": local.choices, "label": ["A", "B", "C", "D"]}, "answerKey": "D"})
    assert _content(obqa) == _content(local)

    local = first["social_i_qa"]
    (siqa,) = _hub_record(specs["social_i_qa"], {
        "context": local.context, "question": local.question, "answerA": local.choices[0],
        "answerB": local.choices[1], "answerC": local.choices[2], "label": "1"})
    assert _content(siqa) == _content(local)

    local = first["mbpp"]
    mbpp_row = json.loads((SEEDS / "mbpp/mbpp.jsonl").read_text().splitlines()[600])
    (mbpp,) = _hub_record(specs["mbpp"], mbpp_row)
    assert _content(mbpp) == _content(local)

    local = first["squad"]
    (squad,) = _hub_record(specs["squad"], {
        "id": "x", "title": "Hydrogen", "context": local.context, "question": local.question,
        "answers": {"text": [local.answer], "answer_start": [137]}})
    assert _content(squad) == _content(local)

    (boolq,) = _hub_record(specs["boolq"], {
        "question": "do iran and afghanistan speak the same language", "passage": "Persian...",
        "idx": 0, "label": 1})
    assert (boolq.answer, boolq.context) == ("yes", "Persian...")

    local = first["race"]
    (race,) = _hub_record(specs["race"], {
        "example_id": "middle1.txt", "article": local.context, "question": local.question,
        "options": local.choices, "answer": "C"})
    assert _content(race) == _content(local)


def test_hub_layouts_of_eval_only_tasks(specs):
    (mathqa,) = _hub_record(specs["mathqa"], {
        "Problem": "what is 6 * 7 ?", "Rationale": "\"6 * 7 = 42 answer : b\"",
        "options": "a ) 40 , b ) 42 , c ) 44 , d ) 1 , 2 , e ) none", "correct": "b"}, "test")
    assert (mathqa.choices, mathqa.answer, mathqa.answer_label) == (
        ["40", "42", "44", "1 , 2", "none"], "42", "B")
    assert mathqa.reasoning == "\"6 * 7 = 42 answer : b\""

    (wino,) = _hub_record(specs["winogrande"], {
        "sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
        "option1": "Sarah", "option2": "Maria", "answer": "2"}, "validation")
    assert (wino.answer, wino.answer_label) == ("Maria", "B")

    (mmlu,) = _hub_record(specs["mmlu"], {
        "question": "2 + 2 = ?", "subject": "x", "choices": ["3", "4", "5", "6"], "answer": 1},
        "test")
    assert (mmlu.answer, mmlu.answer_label) == ("4", "B")

    (logiqa,) = _hub_record(specs["logiqa"], {
        "label": "b", "context": "All cats purr.", "question": "Which follows?",
        "options": ["Dogs purr", "Tom, a cat, purrs", "Nothing", "Fish purr"]}, "test")
    assert (logiqa.answer, logiqa.context) == ("Tom, a cat, purrs", "All cats purr.")

    race_test = _hub_record(specs["race"], {
        "article": "Tom has a cat.",
        "problems": "[{'answer': 'B', 'options': ['a dog', 'a cat', 'a fish', 'a bird'], "
                    "'question': 'What does Tom have?'}, {'answer': 'A', 'options': "
                    "['Tom', 'Ann', 'Bob', 'Eve'], 'question': 'Who has a cat?'}]"}, "test")
    assert [(r.question, r.answer) for r in race_test] == [
        ("What does Tom have?", "a cat"), ("Who has a cat?", "Tom")]

    unanswerable = _hub_record(specs["squadv2"], {
        "id": "x", "title": "t", "context": "Paris is in France.",
        "question": "Where is Rome?", "answers": {"text": [], "answer_start": []}}, "validation")
    assert unanswerable[0].answer == "unanswerable"

    (mmlu_pro,) = _hub_record(specs["mmlu_pro"], {
        "question_id": 1, "question": "Pick C", "options": list("ABCDEFGHIJ"),
        "answer": "C", "answer_index": 2, "cot_content": "", "category": "x", "src": "y"},
        "test")
    assert (mmlu_pro.answer, mmlu_pro.answer_label) == ("C", "C")


def test_hub_rows_flow_through_the_seed_stages(specs, tmp_path):
    rows = [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"},
            {"question": "What is 2 + 2?", "answer": "no marker here"}]
    folder = hub_folder(tmp_path / "gsm8k", rows)
    spec = specs["gsm8k"].hub_variant()
    hub = {"gsm8k": spec.model_copy(update={"train": with_local_hub(spec.train, folder)})}
    stage = SeedStage(SeedParams(), hub, SEEDS)
    (shard,) = stage.plan()
    read = stage.read(shard)
    assert [r.source.path for r in read.items] == [f"hub:{folder}/:train"] * 2
    done = NormalizeStage(None, hub).process(read.items, 0)
    assert [(r.answer, r.reasoning) for r in done.items] == [("2", "1 + 1 = 2")]
    assert [r.reason for r in done.rejects] == ["missing_field"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("leak_gpqa.yaml", "leak_gpqa.yaml: train.split: split 'train' is the scored split of "
                           "task 'gpqa_leak' and can never be a seed"),
        ("leak_test_split.yaml", "leak_test_split.yaml: train.split: split 'test' is held out "
                                 "by name and cannot seed"),
        ("leak_hub_split.yaml", "leak_hub_split.yaml: train.hub.split: hub split 'validation' "
                                "is held out by name and cannot seed"),
        ("leak_eval_file.yaml", "leak_eval_file.yaml: train.files[0]: 'mbpp/mbpp.jsonl' is also "
                                "a file of held-out split 'test' and no disjoint `where` filters"),
    ],
)
def test_leaking_specs_are_refused(name, message):
    with pytest.raises(ConfigError) as info:
        load_task_spec(FIXTURE_SPECS / name)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(FIXTURE_SPECS / name))
    assert message in text
    assert info.value.key.startswith("train.")


def test_held_out_eval_split_as_seed_is_refused(tmp_path):
    data = (TASKS / "commonsense_qa.yaml").read_text().replace(
        "train:\n  split: train", "train:\n  split: validation", 1)
    path = tmp_path / "csqa_leak.yaml"
    path.write_text(data)
    with pytest.raises(ConfigError, match="train.split: split 'validation' is the scored split"):
        load_task_spec(path)
