"""The dataset card beside a run's final data, on a real pipeline run over ../shared/seeds.

One run (seeds, normalize, decontaminate, a reward model on the loopback fake server, export,
mix with a commercial subset) gives the mix card; a copy of it without the mix folder is a
run that has only reached its export. `datasets` loads the card's configs offline.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskseed.views.card.card import limits_section, models_used, write_card
from taskseed.views.card.data import (
    CARD,
    final_data,
    hub_license,
    license_metadata,
    size_category,
)

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "configs" / "tasks"
PIPE = """name: card-test
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/gsm8k.yaml, {tasks}/arc_easy.yaml, {tasks}/social_i_qa.yaml]
executor: {{workers: 2}}
teacher: {{backend: openai, base_url: '{url}', model: test-teacher, license: Apache-2.0}}
models:
  reward: {{backend: nim_reward, base_url: '{url}', model: fake-reward}}
stages:
  - {{name: seeds, max_per_task: 30, rows_per_shard: 40}}
  - {{name: normalize}}
  - name: decontaminate
    eval_specs: ["{tasks}/gsm8k.yaml", "{tasks}/arc_easy.yaml", "{tasks}/gpqa.yaml"]
    hub: skip
  - {{name: reward, min_score: 1.0}}
  - {{name: export, include_seeds: true}}
  - {{name: mix, include_seeds: true, shards: 1, shard_records: 25, commercial_subset: true}}
"""
MIX_CONFIGS = {"multiple_choice": ("full", "multiple_choice"),
               "generative": ("full", "generative"),
               "commercial_multiple_choice": ("commercial", "multiple_choice"),
               "commercial_generative": ("commercial", "generative")}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, seeds_root: Path) -> Path:
    from taskseed.generation.servers.fake import FakeOpenAIServer

    from taskseed.execution.run import run_pipeline

    base = tmp_path_factory.mktemp("card")
    config = base / "pipe.yaml"
    with FakeOpenAIServer() as server:
        config.write_text(PIPE.format(run=base / "run", seeds=seeds_root, tasks=TASKS,
                                      url=server.base_url))
        run_pipeline(config, progress=lambda line: None)
    return base / "run"


@pytest.fixture(scope="module")
def export_run(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run as it stood before its mix stage ran."""
    copy = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*-mix"))
    return copy


def card_meta(path: Path) -> dict[str, Any]:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(path).data.to_dict()


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the Markdown table rows whose first cell is `first_cell`."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def jsonl(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines()]


def test_mix_card_configs_load_with_datasets(run: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    path = write_card(run)
    mix = run / "stages" / "06-mix"
    assert path == mix / CARD
    manifest = json.loads((mix / "manifest.json").read_text())
    meta = card_meta(path)
    assert [c["config_name"] for c in meta["configs"]] == list(MIX_CONFIGS)
    for config in meta["configs"]:
        (files,) = config["data_files"]
        assert files["split"] == "train" and all((mix / f).is_file() for f in files["path"])
        subset, dataset = MIX_CONFIGS[config["config_name"]]
        loaded = load_dataset(str(mix), config["config_name"], split="train",
                              cache_dir=str(tmp_path / "hf"))
        assert loaded.num_rows == manifest["sets"][subset]["datasets"][dataset]["records"] > 0
    commercial = load_dataset(str(mix), "commercial_multiple_choice", split="train",
                              cache_dir=str(tmp_path / "hf"))
    assert set(commercial["task"]) == {"arc_easy"} and all(commercial["commercial"])


def test_mix_card_metadata(run: Path) -> None:
    meta = card_meta(write_card(run))
    rows = jsonl(sorted((run / "stages/06-mix").glob("[mg]*/part-*.jsonl")))
    licenses = Counter(r["license"] for r in rows)
    assert meta["license"] == "other" and meta["license_name"] == "per-record-licenses"
    for name, count in licenses.items():
        assert f"{name} ({count} records)" in meta["license_details"]
    assert meta["size_categories"] == ["n<1K"]
    assert set(meta["task_categories"]) == {"multiple-choice", "question-answering",
                                            "text-generation"}
    assert meta["source_datasets"] == sorted({r["source"]["dataset"] for r in rows})
    assert meta["pretty_name"] == "card-test"


def test_mix_card_prose(run: Path) -> None:
    text = write_card(run).read_text()
    assert (run / "config.hash").read_text().strip() in text
    rows = jsonl(sorted((run / "stages/06-mix").glob("[mg]*/part-*.jsonl")))
    per_source = Counter((r["source"]["dataset"], r["license"]) for r in rows)
    for (dataset, license_id), count in per_source.items():
        (row,) = table_rows(text, dataset)
        assert row[2] == license_id and int(row[5]) == count
    assert table_rows(text, "openai/gsm8k")[0][3] == "https://huggingface.co/datasets/openai/gsm8k"
    (reward,) = table_rows(text, "reward")
    assert reward[1:] == ["nim_reward", "fake-reward", "unknown", "reward"]
    assert table_rows(text, "teacher")[0][3:] == ["Apache-2.0", "no stage"]
    manifest = json.loads((run / "stages/06-mix/manifest.json").read_text())
    for dataset, totals in manifest["sets"]["full"]["datasets"].items():
        (row,) = table_rows(text, f"`{dataset}`")
        assert [int(row[1]), int(row[2])] == [totals["records"], totals["tokens"]]


def test_mix_card_decontamination_and_limits(run: Path) -> None:
    text = write_card(run).read_text()
    report = json.loads((run / "stages/03-decontaminate/decontamination.json").read_text())
    assert report["generated"]["records_dropped"] > 0
    assert (f"{report['generated']['records_checked']} records checked, "
            f"{report['generated']['records_dropped']} dropped") in text
    for entry in report["indexed"]:
        row = [r for r in table_rows(text, entry["benchmark"]) if r[1] == entry["split"]]
        got = report["generated"]["benchmarks"].get(entry["benchmark"], {}).get(entry["split"])
        assert int(row[0][2]) == entry["items"]
        assert int(row[0][5]) == (got["records_dropped"] if got else 0)
    (gpqa,) = [r for r in table_rows(text, "gpqa")]
    assert gpqa[1:] == ["train", "hub-only split skipped (hub: skip)"]
    limits = text.split("## Known limits", 1)[1]
    rows = jsonl(sorted((run / "stages/06-mix").glob("[mg]*/part-*.jsonl")))
    siqa = [r for r in rows if r["task"] == "social_i_qa"]
    assert siqa and not any(r["commercial"] for r in siqa)
    assert f"{siqa[0]['license']} ({len(siqa)} records)" in limits
    assert f"{len(siqa)} of {len(rows)} records are not cleared for commercial use" in limits
    assert "paraphrases" in limits and "Small model" not in limits


def test_export_card_points_at_the_export_jsonl(export_run: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    path = write_card(export_run)
    export = export_run / "stages" / "05-export"
    assert path == export / CARD
    meta = card_meta(path)
    (config,) = meta["configs"]
    assert config["config_name"] == "default"
    files = config["data_files"][0]["path"]
    assert files == sorted(p.name for p in export.glob("part-*.jsonl"))
    loaded = load_dataset(str(export), "default", split="train", cache_dir=str(tmp_path / "hf"))
    rows = jsonl([export / f for f in files])
    assert loaded.num_rows == len(rows) == json.loads(
        (export / "manifest.json").read_text())["totals"]["records"]
    assert sorted(loaded["id"]) == sorted(r["id"] for r in rows)
    assert {r["mix"] for r in rows} == {"multiple_choice", "generative"}
    assert card_meta(path)["license"] == "other"
    assert "## Known limits" in path.read_text()


def test_card_is_rewritten_identically(run: Path) -> None:
    first = write_card(run).read_bytes()
    assert write_card(run).read_bytes() == first


def test_no_card_without_finished_final_data(export_run: Path, tmp_path: Path) -> None:
    assert write_card(tmp_path) is None
    unfinished = tmp_path / "run"
    shutil.copytree(export_run, unfinished)
    (unfinished / "stages/05-export/manifest.json").unlink()
    assert final_data(unfinished) is None and write_card(unfinished) is None


def test_license_metadata_follows_the_hub() -> None:
    assert hub_license("CC-BY-SA-4.0") == "cc-by-sa-4.0"
    assert hub_license("ODC-BY-1.0") == "odc-by"
    assert hub_license("LicenseRef-Google-PAWS") is None
    assert license_metadata({"MIT": 3}) == {"license": "mit"}
    assert license_metadata({"MIT": 3, "Apache-2.0": 1}) == {"license": ["apache-2.0", "mit"]}
    mixed = license_metadata({"MIT": 3, "unknown": 2})
    assert mixed["license"] == "other" and "unknown (2 records)" in mixed["license_details"]
    assert [size_category(n) for n in (0, 999, 1000, 10**6)] == [
        "n<1K", "n<1K", "1K<n<10K", "1M<n<10M"]


def test_the_packaged_small_model_is_a_known_limit(run: Path) -> None:
    config = {"teacher": {"backend": "embedded"},
              "models": {"judge": {"backend": "embedded", "model_path": "/m/big.gguf"}},
              "stages": [{"name": "generate"}, {"name": "llm_judge"}, {"name": "exact_dedup"}]}
    assert models_used(config) == {"teacher": ["generate"], "judge": ["llm_judge"]}
    data = final_data(run)
    assert data is not None
    limits = limits_section(config, [], [], data)
    assert "**Small model.** teacher: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF." in limits
    tiny = {**config, "models": {"judge": {"backend": "openai", "model": "m",
                                           "server": {"checkpoint": "packaged:smollm2"}}}}
    assert "**Small model.** judge: SmolLM2-135M-Instruct" in limits_section(tiny, [], [], data)
    assert "None ran: records may copy benchmark test items" in limits
