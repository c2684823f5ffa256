"""The structure's contracts: namespace, typed config, formats, filters and teacher policy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.errors import ConfigError
from taskseed.curation.formats import DEFINITIONS, Format, answer_format
from taskseed.curation.io.yamlconf import validate
from taskseed.curation.mix.export import ExportParams, ExportStage, render_text
from taskseed.curation.record import Format as RecordFormat
from taskseed.curation.record import Origin, Record, Source
from taskseed.curation.seeds.parsers import parse_mapping
from taskseed.curation.seeds.parsers.fields import FieldsMapping
from taskseed.curation.seeds.parsers.jinja import JinjaMapping
from taskseed.curation.stage import KEEP, FilterStage, StageParams, Verdict, drop
from taskseed.generation import prompts
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.replies import schema_error
from taskseed.generation.servers.fake import FakeOpenAIServer
from taskseed.generation.stages.enrich import EnrichParams, EnrichStage
from taskseed.generation.stages.generate import GenerateParams, GenerateStage

from taskseed.config.pipeline import load_config
from taskseed.execution.pipeline import build_stages


def record(**over: Any) -> Record:
    fields: dict[str, Any] = dict(task="t", family="f", format=Format.FREE_FORM,
                                  question="What is the capital of France?", answer="Paris",
                                  license="MIT", source=Source("d"))
    fields.update(over)
    return Record(**fields)


# --- an installable namespace ---------------------------------------------------------------


def test_only_the_taskseed_namespace_is_importable_outside_the_repo(tmp_path: Path) -> None:
    def imports(module: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path,
                              capture_output=True, text=True)

    for name in ("curation", "generation", "judges"):
        proc = imports(name)
        assert proc.returncode != 0 and "No module named" in proc.stderr, name
        assert imports(f"taskseed.{name}").returncode == 0, name


def test_the_wheel_installs_nothing_outside_taskseed(repo: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"  # setuptools builds in the source tree: use a copy
    shutil.copytree(repo, source, ignore=shutil.ignore_patterns(
        ".git", "build", "runs", "*.egg-info", "__pycache__", ".*_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = tmp_path.glob("taskseed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"taskseed"}
    for module in ("taskseed/curation/record.py", "taskseed/generation/prompts/math.j2",
                   "taskseed/judges/filters/validity.py", "taskseed/curation/formats/yes_no.py",
                   "taskseed/views/report/report.html.j2", "taskseed/judges/rubrics/default.yaml"):
        assert module in names


# --- typed configuration --------------------------------------------------------------------

PIPE = """name: typed
run_dir: run
seeds_root: .
tasks: [demo.yaml]
teacher: {teacher}
stages:
  - name: seeds
  - name: normalize
"""
TASK = """name: demo
family: demo
format: free_form
license: MIT
source: {dataset: demo/demo}
scored_split: test
train: {split: train, files: [demo.jsonl], mapping: {mapping}}
"""


def config_error(tmp_path: Path, teacher: str, mapping: str = "{question: q, answer: a}") -> str:
    (tmp_path / "demo.yaml").write_text(TASK.replace("{mapping}", mapping))
    path = tmp_path / "pipe.yaml"
    path.write_text(PIPE.format(teacher=teacher))
    with pytest.raises(ConfigError) as info:
        build_stages(load_config(path))
    message = str(info.value)
    assert "\n" not in message
    return message.split(": ", 1)[1]


@pytest.mark.parametrize(
    ("teacher", "expected"),
    [
        ("{backend: openai, base_url: 'http://x/v1', model: m, n_ctx: 4096}",
         "teacher.n_ctx: unknown key"),
        ("{backend: openai, model: m}", "teacher.base_url: Field required"),
        ("{backend: embedded, max_concurrency: 8}", "teacher.max_concurrency: unknown key"),
        ("{n_ctx: 100}", "teacher.n_ctx: Input should be greater than or equal to 256"),
        ("{backend: tensorrt_llm}", "teacher.model: Field required"),
    ],
)
def test_teacher_keys_belong_to_their_backend(tmp_path: Path, teacher: str, expected: str) -> None:
    assert config_error(tmp_path, teacher) == expected


def test_seed_mapping_keys_belong_to_their_parser(tmp_path: Path) -> None:
    message = config_error(tmp_path, "{}", "{parser: jinja, question: q}")
    assert message.startswith("train.mapping.text_template: Field required")
    message = config_error(tmp_path, "{}", "{parser: regex}")
    assert message.startswith("train.mapping.parser: unknown parser")
    assert isinstance(parse_mapping({"question": "q"}), FieldsMapping)
    assert isinstance(parse_mapping({"parser": "jinja", "text_template": "x"}), JinjaMapping)


def test_transport_settings_keep_the_fingerprint_and_the_model_changes_it() -> None:
    def fingerprint(**teacher: Any) -> str:
        cfg = OpenAIConfig(base_url="http://127.0.0.1:1/v1", model="m", **teacher)
        return GenerateStage(GenerateParams(), cfg).fingerprint()

    same = fingerprint()
    assert fingerprint(max_concurrency=7, timeout_s=3, max_retries=9, api_key_env="K",
                       cache_dir="/elsewhere") == same
    assert fingerprint(structured_output=False) != same
    assert GenerateStage(GenerateParams(), OpenAIConfig(base_url="http://127.0.0.1:1/v1",
                                                        model="other")).fingerprint() != same


# --- teacher stages share one policy --------------------------------------------------------


@pytest.mark.parametrize("stage", [GenerateStage(GenerateParams(), EmbeddedConfig(model="smollm2")),
                                   EnrichStage(EnrichParams(), EmbeddedConfig(model="smollm2"))],
                         ids=["generate", "enrich"])
def test_a_changed_prompt_is_a_different_stage(stage, tmp_path: Path, monkeypatch) -> None:
    before = stage.fingerprint()
    copy = tmp_path / "prompts"
    shutil.copytree(prompts.PROMPT_DIR, copy)
    monkeypatch.setattr(prompts, "PROMPT_DIR", copy)
    prompts.prompts_hash.cache_clear()
    try:
        assert stage.fingerprint() == before
        template = copy / stage.templates[0]
        template.write_text(template.read_text() + "\nBe brief.\n")
        prompts.prompts_hash.cache_clear()
        assert stage.fingerprint() != before
        monkeypatch.setattr(type(stage), "system_prompt", stage.system_prompt + " Be brief.")
        template.write_text(template.read_text().removesuffix("\nBe brief.\n"))
        prompts.prompts_hash.cache_clear()
        assert stage.fingerprint() != before
    finally:
        prompts.prompts_hash.cache_clear()


def test_enrich_asks_again_with_a_new_seed_after_an_unusable_reply() -> None:
    seeds: list[int] = []

    def reply(body: dict[str, Any]) -> str:
        seeds.append(body["seed"])
        if len(seeds) == 1:
            return '{"reasoning": "cut'
        required = body["response_format"]["json_schema"]["schema"]["required"]
        return json.dumps({f: f"The {f} behind the answer." for f in required})

    with FakeOpenAIServer(responder=reply) as server:
        cfg = OpenAIConfig(base_url=server.base_url, model="fake", max_retries=1)
        stage = EnrichStage(EnrichParams(max_attempts=2), cfg)
        result = stage.process([record()], shard=0)
        stage.teardown()
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    assert result.counters["retried"] == 1 and result.counters["enriched"] == 1
    assert result.items[0].knowledge == "The knowledge behind the answer."


# --- the reply check is a full JSON Schema validator ------------------------------------------


def test_schema_check_enforces_what_our_prompts_send() -> None:
    schema = answer_format(Format.MULTIPLE_CHOICE).reply_schema(3, with_context=False)
    good = {"question": "Which is a fruit?", "choices": ["apple", "stone", "glass"],
            "answer_index": 0}
    assert schema_error(good, schema) is None
    assert schema_error({**good, "question": ""}, schema) is not None  # minLength
    assert schema_error({**good, "choices": ["a", "b", "c", "d"]}, schema) is not None  # maxItems
    assert schema_error({**good, "extra": 1}, schema) is not None  # additionalProperties
    assert schema_error({**good, "answer_index": 3}, schema) is not None  # enum


# --- formats in one place -------------------------------------------------------------------


def test_every_format_is_defined_once_with_its_template() -> None:
    assert RecordFormat is Format
    assert [f.value for f in Format] == list(DEFINITIONS)
    for name, definition in DEFINITIONS.items():
        assert definition.name == name
        assert (prompts.PROMPT_DIR / definition.template).is_file(), name
    assert answer_format(Format.MULTIPLE_CHOICE).mix == "multiple_choice"
    assert {answer_format(f).mix for f in Format if f is not Format.MULTIPLE_CHOICE} == {
        "generative"}


def test_a_reply_becomes_a_record_that_renders_and_passes_its_format() -> None:
    definition = answer_format(Format.MULTIPLE_CHOICE)
    fields = definition.parse_reply({"question": " Which is a fruit? ",
                                     "choices": ["apple ", "stone"], "answer_index": 0})
    rec = record(format=Format.MULTIPLE_CHOICE, question=fields.question,
                 choices=fields.choices, answer=fields.answer, answer_label=fields.answer_label)
    assert (rec.answer, rec.answer_label) == ("apple", "A")
    assert definition.check(rec) == KEEP
    assert render_text(rec) == "Question: Which is a fruit?\nA. apple\nB. stone\n" \
                               "Answer: A. apple\n"
    code = answer_format(Format.CODE)
    assert code.check(record(format=Format.CODE)).reason == "code_without_tests"
    assert render_text(record(format=Format.CODE, answer="def f():\n    return 1")).endswith(
        "Answer:\n```python\ndef f():\n    return 1\n```\n")


# --- the filter contract --------------------------------------------------------------------


class LongAnswers(FilterStage[StageParams]):
    name = "long_answers"

    def judge(self, batch: list[Record], shard: int, counters) -> list[Verdict]:
        counters["judged"] += len(batch)
        return [KEEP if len(r.answer) > 3 else drop("short", r.answer) for r in batch]


def test_a_batch_filter_keeps_and_rejects_with_reasons() -> None:
    batch = [record(answer="Paris"), record(answer="Rome"), record(answer="Oz")]
    result = LongAnswers(StageParams()).process(batch, 0)
    assert result.items == batch[:2] and result.counters["judged"] == 3
    [reject] = result.rejects
    assert (reject.stage, reject.reason, reject.detail, reject.item_id) == (
        "long_answers", "short", "Oz", batch[2].id)


def test_export_rejects_left_out_seeds_with_a_reason() -> None:
    seed, made = record(), record(question="What is the capital of Peru?",
                                  origin=Origin.GENERATED)
    result = ExportStage(ExportParams()).process([seed, made], 0)
    assert result.items == [made]
    assert [(r.reason, r.item_id) for r in result.rejects] == [("seed", seed.id)]
    assert result.counters == {"mix:generative": 1}
    kept = ExportStage(ExportParams(include_seeds=True)).process([seed, made], 0)
    assert kept.items == [seed, made] and kept.rejects == []


def test_stage_params_are_validated_per_stage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size: Input should be greater than or equal"):
        validate(EnrichParams, {"batch_size": 0}, tmp_path / "x.yaml")
