"""Overlays and `--set`: backend switches replace, stages patch by name, the hash follows the
effective config, and every scale overlay applies over every shipped base config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from taskseed.curation.errors import ConfigError
from workspace import write_task

from taskseed.cli.main import main
from taskseed.config.pipeline import apply_sets, load_config, merge_config, parse_set

SCALES = ["nano", "super", "ultra"]
BASES = ["quickstart", "real-small"]

PIPE = """name: tiny
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: embedded, model: smollm2, n_ctx: 1024}}
models:
  judge: {{backend: embedded, model: smollm2, n_ctx: 1024}}
stages:
  - {{name: seeds, rows_per_shard: 4}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, temperature: 0.5}}
  - {{name: heuristics, max_question_words: 50}}
  - {{name: llm_judge, model: judge, thresholds: {{correctness: 1, safety: 1}}}}
  - {{name: heuristics}}
"""
ROWS = [{"q": f"Is thing number {i} red?", "a": "yes" if i % 2 else "no"} for i in range(6)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_task(tmp_path, "qa", "yes_no", ROWS, "{question: q, answer: a}")
    (tmp_path / "pipe.yaml").write_text(PIPE.format(run=tmp_path / "run"))
    return tmp_path


def overlay(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def stages_named(resolved: dict, name: str) -> list[dict]:
    return [s for s in resolved["stages"] if s["name"] == name]


# merging rules


def test_a_teacher_whose_backend_changes_is_replaced(folder: Path) -> None:
    openai = {"backend": "openai", "base_url": "http://localhost:9/v1", "model": "big"}
    extra = overlay(folder, "big.yaml", {"teacher": openai, "models": {"judge": openai}})
    loaded = load_config(folder / "pipe.yaml", [extra])
    for cfg in (loaded.config.teacher, loaded.config.models["judge"]):
        assert (cfg.backend, cfg.model, cfg.base_url) == ("openai", "big", "http://localhost:9/v1")
    assert "n_ctx" not in loaded.resolved["teacher"]


def test_the_same_backend_merges_key_by_key() -> None:
    base = {"teacher": {"backend": "embedded", "n_ctx": 1024}, "models": {"judge": {"n_ctx": 512}}}
    patch = {"teacher": {"n_threads": 2}, "models": {"judge": {"backend": "embedded"}}}
    merged = merge_config(base, patch, "over.yaml")
    assert merged["teacher"] == {"backend": "embedded", "n_ctx": 1024, "n_threads": 2}
    assert merged["models"]["judge"] == {"n_ctx": 512, "backend": "embedded"}  # the default
    assert base["teacher"] == {"backend": "embedded", "n_ctx": 1024}  # inputs are not changed


def test_other_mappings_with_a_backend_key_still_merge() -> None:
    base = {"executor": {"backend": "pandas", "workers": 4}}
    merged = merge_config(base, {"executor": {"backend": "cudf"}}, "over.yaml")
    assert merged["executor"] == {"backend": "cudf", "workers": 4}


def test_a_stage_mapping_patches_every_stage_of_that_name(folder: Path) -> None:
    extra = overlay(folder, "patch.yaml", {"stages": {
        "heuristics": {"max_answer_words": 9},
        "llm_judge": {"thresholds": {"safety": 4}},
        "generate": {"temperature": 0.9},
    }})
    resolved = load_config(folder / "pipe.yaml", [extra]).resolved
    assert [s["name"] for s in resolved["stages"]] == [
        "seeds", "normalize", "generate", "heuristics", "llm_judge", "heuristics"]
    first, second = stages_named(resolved, "heuristics")
    assert first == {"name": "heuristics", "max_question_words": 50, "max_answer_words": 9}
    assert second == {"name": "heuristics", "max_answer_words": 9}
    assert stages_named(resolved, "llm_judge")[0]["thresholds"] == {"correctness": 1,
                                                                     "safety": 4}
    assert stages_named(resolved, "generate")[0] == {"name": "generate", "exemplars": 2,
                                                     "temperature": 0.9}
    assert stages_named(resolved, "seeds")[0] == {"name": "seeds", "rows_per_shard": 4}


def test_a_stage_list_replaces_the_whole_list(folder: Path) -> None:
    extra = overlay(folder, "list.yaml", {"stages": [{"name": "seeds"}, {"name": "normalize"}]})
    resolved = load_config(folder / "pipe.yaml", [extra]).resolved
    assert resolved["stages"] == [{"name": "seeds"}, {"name": "normalize"}]


@pytest.mark.parametrize(("stages", "key", "words"), [
    ({"dedupe": {"shards": 2}}, "stages.dedupe", "no stage 'dedupe' in the stage list"),
    ({"generate": 3}, "stages.generate", "a stage patch is a mapping"),
    ({"generate": {"name": "enrich"}}, "stages.generate.name", "cannot rename"),
])
def test_a_bad_stage_patch_names_the_overlay_and_key(
    folder: Path, stages: dict, key: str, words: str
) -> None:
    extra = overlay(folder, "bad.yaml", {"stages": stages})
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", [extra])
    assert (err.value.path, err.value.key) == (str(extra), key)
    assert words in err.value.message and "\n" not in str(err.value)


def test_an_invalid_value_is_blamed_on_the_overlay_that_gave_it(folder: Path) -> None:
    extra = overlay(folder, "zero.yaml", {"accept": {"target": 0, "max_candidates": 5}})
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", [extra])
    assert str(err.value).startswith(f"{extra}: accept.target: ")


# --set


@pytest.mark.parametrize(("item", "expected"), [
    ("accept.target=50", {"accept": {"target": 50}}),
    ("stages.generate.temperature=0.9", {"stages": {"generate": {"temperature": 0.9}}}),
    ("teacher.model=x", {"teacher": {"model": "x"}}),
    ("slurm.resources.generate.gpus=2", {"slurm": {"resources": {"generate": {"gpus": 2}}}}),
    ("mix.commercial_subset=false", {"mix": {"commercial_subset": False}}),
    ("tasks=[a.yaml, b.yaml]", {"tasks": ["a.yaml", "b.yaml"]}),
    ("teacher={backend: openai, model: m}", {"teacher": {"backend": "openai", "model": "m"}}),
    ("accept=", {"accept": None}),
    ("accept=null", {"accept": None}),
    ("slurm.resources.default.time=4:00:00", {"slurm": {"resources": {"default": {
        "time": "4:00:00"}}}}),
    ("name=2025-01-31", {"name": "2025-01-31"}),
    (" budget.max_tokens = 1000", {"budget": {"max_tokens": 1000}}),
    ("teacher.base_url=http://h:8000/v1?a=b", {"teacher": {"base_url": "http://h:8000/v1?a=b"}}),
])
def test_set_items_become_nested_yaml_values(item: str, expected: dict) -> None:
    assert parse_set(item) == expected


@pytest.mark.parametrize(("item", "start", "words"), [
    ("foo", "--set foo: ", "expected KEY=VALUE"),
    ("=3", "--set =3: ", "expected KEY=VALUE"),
    ("a..b=1", "--set a..b: ", "expected KEY=VALUE"),
    ("accept.target=[1", "--set accept.target: ", "invalid YAML value"),
])
def test_malformed_set_items_are_one_line_errors(item: str, start: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_set(item)
    assert str(err.value).startswith(start) and words in str(err.value)
    assert "\n" not in str(err.value)


def test_sets_apply_in_order_with_the_overlay_rules() -> None:
    base = {"teacher": {"backend": "embedded", "n_ctx": 1024},
            "stages": [{"name": "generate", "exemplars": 2}, {"name": "mix"}]}
    out = apply_sets(base, ["teacher.backend=openai", "teacher.base_url=http://h/v1",
                            "stages.generate.exemplars=3", "stages.generate.exemplars=4"])
    assert out["teacher"] == {"backend": "openai", "base_url": "http://h/v1"}
    assert out["stages"] == [{"name": "generate", "exemplars": 4}, {"name": "mix"}]
    with pytest.raises(ConfigError, match=r"^--set stages.nope.x: stages.nope: no stage"):
        apply_sets(base, ["stages.nope.x=1"])


def test_sets_apply_after_overlays(folder: Path) -> None:
    extra = overlay(folder, "o.yaml", {"stages": {"generate": {"temperature": 0.9}}})
    loaded = load_config(folder / "pipe.yaml", [extra],
                         sets=["stages.generate.temperature=0.3"])
    assert stages_named(loaded.resolved, "generate")[0]["temperature"] == 0.3


@pytest.mark.parametrize(("item", "message"), [
    ("teacher.bogus=x", "--set teacher.bogus: unknown key"),
    ("teacher.model=x", "--set teacher.model: unknown packaged model 'x' "
                        "(known: qwen2.5-coder-1.5b, smollm2)"),
    ("accept.target=0", "--set accept.target: Input should be greater than or equal to 1"),
    ("teacher.backend=openai", "--set teacher.backend: teacher.base_url: Field required"),
])
def test_an_invalid_set_is_reported_against_the_set(folder: Path, item: str,
                                                    message: str) -> None:
    sets = [item] if not item.startswith("accept") else [item, "accept.max_candidates=3"]
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", sets=sets)
    assert str(err.value) == message


# hash and provenance


def test_the_hash_depends_on_the_settings_not_on_how_they_were_given(folder: Path) -> None:
    pipe = folder / "pipe.yaml"
    extra = overlay(folder, "scale.yaml", {"accept": {"target": 5, "max_candidates": 9},
                                           "stages": {"generate": {"temperature": 0.9}}})
    copy = overlay(folder, "elsewhere.yaml", yaml.safe_load(extra.read_text()))
    sets = ["accept={target: 5, max_candidates: 9}", "stages.generate.temperature=0.9"]
    by_file = load_config(pipe, [extra])
    by_copy = load_config(pipe, [copy])
    by_set = load_config(pipe, sets=sets)
    by_both = load_config(pipe, [extra], sets=["accept.target=5"])
    assert by_file.hash == by_copy.hash == by_set.hash == by_both.hash
    assert load_config(pipe).hash != by_file.hash
    assert load_config(pipe, sets=[*sets, "accept.target=6"]).hash != by_file.hash
    assert by_file.resolved["provenance"] == {"config": str(pipe), "overlays": [str(extra)],
                                              "sets": []}
    assert by_set.resolved["provenance"] == {"config": str(pipe), "overlays": [],
                                             "sets": sets}
    assert by_both.resolved["provenance"]["sets"] == ["accept.target=5"]


# the CLI and the scale overlays


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("base", BASES)
def test_each_scale_overlay_checks_over_each_base_config(
    repo: Path, base: str, scale: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, extra = repo / "configs" / f"{base}.yaml", repo / "configs" / "scales" / f"{scale}.yaml"
    assert extra.read_text().startswith("# ")
    assert main(["check", str(config), "--overlay", str(extra)]) == 0, capsys.readouterr().err
    assert ": ok, " in capsys.readouterr().out
    loaded = load_config(config, [extra])
    cfg = loaded.config
    assert cfg.teacher.backend in ("openai", "tensorrt_llm")
    assert cfg.models["judge"].backend == "openai"
    assert cfg.accept is not None and cfg.accept.target >= 1000
    assert cfg.budget.max_requests and cfg.budget.models["judge"].max_requests
    assert {"default", "cpu", "model", "frame", "generate"} <= set(cfg.slurm.resources)
    generate = stages_named(loaded.resolved, "generate")[0]
    assert generate["samples_per_group"] >= 2 and generate["groups_per_shard"] is None
    assert "max_per_task" in stages_named(loaded.resolved, "seeds")[0]


def test_scales_grow_from_nano_to_ultra(repo: Path) -> None:
    base = repo / "configs" / "real-small.yaml"
    loaded = [load_config(base, [repo / "configs" / "scales" / f"{s}.yaml"]) for s in SCALES]
    targets = [c.config.accept.target for c in loaded]
    samples = [stages_named(c.resolved, "generate")[0]["samples_per_group"] for c in loaded]
    caps = [c.config.budget.max_requests for c in loaded]
    assert targets == sorted(targets) and samples == sorted(samples) and caps == sorted(caps)
    assert len(set(targets)) == len(set(samples)) == len(set(caps)) == 3


def test_check_and_plan_take_sets(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = str(folder / "pipe.yaml")
    assert main(["check", pipe, "--set", "slurm.resources.generate.gpus=2"]) == 0
    assert "--set slurm.resources.generate.gpus=2: ok" in capsys.readouterr().out
    assert main(["check", pipe, "--set", "slurm.resources.dedupe.gpus=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "slurm.resources.dedupe: neither" in err and "\n" not in err
    assert main(["check", pipe, "--set", "foo"]) == 2
    assert capsys.readouterr().err.strip() == (
        "taskseed: error: --set foo: expected KEY=VALUE with a dotted KEY (a.b.c=value)")
    teacher = "teacher={backend: openai, base_url: 'http://127.0.0.1:9/v1', model: big}"
    assert main(["plan", pipe, "--set", teacher, "--set", "budget.max_requests=1"]) == 0
    out = capsys.readouterr().out
    assert "(teacher: openai big)" in out and "budget: exceeds max_requests 1" in out


def test_run_with_set_writes_the_value_into_the_run_config(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = folder / "pipe.yaml"
    sets = ["stages=[{name: seeds, rows_per_shard: 4}, {name: normalize}]",
            "stages.seeds.rows_per_shard=2", "budget.max_tokens=12345"]
    assert main(["run", str(pipe), "--set", sets[0], "--set", sets[1], "--set", sets[2]]) == 0
    run = folder / "run"
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written["stages"] == [{"name": "seeds", "rows_per_shard": 2}, {"name": "normalize"}]
    assert written["budget"]["max_tokens"] == 12345
    assert written["provenance"] == {"config": str(pipe), "overlays": [], "sets": sets}
    assert len(list((run / "stages" / "01-seeds").glob("*.parquet"))) == 3  # 6 rows, 2 a shard
    same = overlay(folder, "same.yaml", {"budget": {"max_tokens": 12345}, "stages": [
        {"name": "seeds", "rows_per_shard": 2}, {"name": "normalize"}]})
    assert (run / "config.hash").read_text().strip() == load_config(pipe, [same]).hash
    assert json.loads((run / "summary.json").read_text())["config_hash"] == load_config(
        pipe, [same]).hash
