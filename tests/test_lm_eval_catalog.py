"""Seed specs from lm-eval's task index: the installed harness and a small YAML tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from taskseed.curation.record import RawRow, Source
from taskseed.curation.seeds.lm_eval_catalog import import_catalog, load_task_index, write_specs
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_spec
from workspace import hub_folder, with_local_hub

from taskseed.cli.catalog import add_catalog_commands

TOY_TASKS = Path(__file__).resolve().parent / "fixtures" / "lm_eval_tasks"


@pytest.fixture(scope="module")
def catalog():
    return import_catalog(load_task_index())


def _normalize(spec: TaskSpec, row: dict, tmp_path: Path) -> list:
    """Rows loaded by `datasets` from a local folder in the hub's layout, then normalized."""
    assert spec.train is not None
    split = with_local_hub(spec.train, hub_folder(tmp_path / spec.name, [row]))
    out = []
    for path, index, item in iter_split(split, Path("/nonexistent")):
        raw = RawRow(spec.name, Source(spec.source.dataset, spec.source.config, "train", index,
                                       path), json.dumps(item, default=str))
        out.append(normalize_row(raw, spec, spec.train.mapping))
    return out


def test_installed_catalog_counts(catalog):
    summary = catalog.summary()
    assert 550 <= summary["tasks_with_training_split"] <= 800
    assert 250 <= summary["tasks_kept"] <= 600
    assert 55 <= summary["families_kept"] <= 90
    assert 150 <= summary["specs"] <= 400
    assert summary["specs"] == len({(t.dataset_path, t.dataset_name, t.training_split)
                                    for t in catalog.kept})
    assert summary["excluded_by_reason"]["training split is the scored split"] >= 40


def test_known_leaks_are_excluded_and_seeds_kept(catalog):
    gpqa = [n for n in catalog.excluded if n.startswith("gpqa_")]
    assert gpqa and all(catalog.excluded[n] == "training split is the scored split" for n in gpqa)
    assert not any(s.family in {"gpqa", "tinyBenchmarks", "mgsm"} for s in catalog.specs.values())
    assert "race" not in catalog.specs and "mmlu_abstract_algebra" not in catalog.specs
    for name in ("gsm8k", "arc_easy", "arc_challenge", "boolq", "commonsense_qa", "social_iqa"):
        assert catalog.specs[name].train.split == "train"
    assert catalog.specs["gsm8k"].train.hub.path == "openai/gsm8k"
    for spec in catalog.specs.values():
        assert spec.train.split != spec.scored_split
        assert spec.train.split not in {s.split for s in spec.eval}
        assert spec.license != "unknown" or spec.commercial is False


def test_sources_are_deduplicated(catalog):
    sources = [(s.train.hub.path, s.train.hub.name, s.train.hub.split)
               for s in catalog.specs.values()]
    assert len(sources) == len(set(sources))
    assert "gsm8k_cot_zeroshot" in catalog.aliases["gsm8k"]


def test_written_specs_load_back(catalog, tmp_path):
    subset = {k: catalog.specs[k] for k in ("gsm8k", "arc_easy", "boolq", "hellaswag")}
    paths = write_specs(subset, tmp_path)
    assert [p.name for p in paths] == ["arc_easy.yaml", "boolq.yaml", "gsm8k.yaml",
                                       "hellaswag.yaml"]
    for path in paths:
        assert load_task_spec(path) == subset[path.stem]


def test_imported_templates_normalize_hub_rows(catalog, tmp_path):
    (arc,) = _normalize(catalog.specs["arc_easy"], {
        "id": "Mercury_7175875", "question": "Which is a metal?",
        "choices": {"text": ["wood", "iron", "glass"], "label": ["A", "B", "C"]},
        "answerKey": "B"}, tmp_path)
    assert (arc.question, arc.choices, arc.answer, arc.answer_label) == (
        "Question: Which is a metal?\nAnswer:", ["wood", "iron", "glass"], "iron", "B")
    (boolq,) = _normalize(catalog.specs["boolq"], {
        "question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": 1},
        tmp_path)
    assert (boolq.answer, boolq.choices) == ("yes", ["no", "yes"])
    (siqa,) = _normalize(catalog.specs["social_iqa"], {
        "context": "Kai lent Ash a pen.", "question": "Why did Kai do this?",
        "answerA": "to be kind", "answerB": "to be rude", "answerC": "to sell it",
        "label": "1"}, tmp_path)
    assert (siqa.question, siqa.answer) == (
        "Q: Kai lent Ash a pen. Why did Kai do this?\nA:", "to be kind")


def test_process_docs_functions_run_offline(catalog, tmp_path):
    spec = catalog.specs["hellaswag"]
    assert spec.train.mapping.process_docs == "lm_eval.tasks.hellaswag.utils.process_docs"
    (record,) = _normalize(spec, {
        "ind": 4, "activity_label": "Removing ice from car",
        "ctx_a": "Then, the man writes over the snow covering the window of a car.",
        "ctx_b": "then", "ctx": "", "endings": ["he stops.", "he drives off.",
                                                "he wipes [title] it.", "he sings."],
        "source_id": "x", "split": "train", "split_type": "indomain", "label": "1"},
        tmp_path)
    assert record.question == (
        "Removing ice from car: Then, the man writes over the snow covering the window of a "
        "car. Then")
    assert record.choices == ["he stops.", "he drives off.", "he wipes. it.", "he sings."]
    assert (record.answer, record.answer_label) == ("he drives off.", "B")


def test_cli_on_a_small_task_tree(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_catalog_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "catalog", "import-lm-eval", "--include-path", str(TOY_TASKS), "--no-defaults",
        "--out", str(tmp_path / "specs"), "--report", str(tmp_path / "report.json")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [
        "lm-eval tasks with a training split: 6",
        "kept: 3 tasks in 2 families (2 dataset paths, 2 configs)",
    ]
    assert sorted(p.name for p in (tmp_path / "specs").iterdir()) == ["toymath.yaml",
                                                                      "toyqa.yaml"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["excluded"] == {
        "tinytoy": "subsets of eval sets",
        "toyqa_leak": "training split is the scored split",
        "toyqa_test_seed": "training split is held out by name",
    }
    assert report["aliases"] == {"toyqa": ["toyqa_copy"]}
    toyqa = load_task_spec(tmp_path / "specs" / "toyqa.yaml")
    assert (toyqa.family, toyqa.scored_split, [s.split for s in toyqa.eval]) == (
        "toyqa", "test", ["test", "validation"])
    toymath = load_task_spec(tmp_path / "specs" / "toymath.yaml")
    assert toymath.format.value == "free_form" and toymath.eval[0].split == "test"
