"""Config mistakes become one-line errors naming the file and the key."""

import subprocess
import sys
from pathlib import Path

import pytest
from taskseed.curation.errors import ConfigError

from taskseed.config.pipeline import load_config
from taskseed.execution.pipeline import build_stages

TASK = """name: demo
family: demo
format: free_form
license: MIT
source: {dataset: demo/demo}
scored_split: test
train: {split: train, files: [demo.jsonl], mapping: {question: q, answer: a}}
"""


def write_config(tmp_path: Path, body: str, task: str = TASK) -> Path:
    (tmp_path / "demo.yaml").write_text(task)
    path = tmp_path / "pipe.yaml"
    path.write_text(body)
    return path


BASE = """name: demo
run_dir: {run}
seeds_root: .
tasks: [demo.yaml]
stages:
  - name: seeds
  - name: normalize
  - name: generate
    exemplars: {exemplars}
"""


def load(path: Path):
    loaded = load_config(path)
    return build_stages(loaded)


def test_valid_config_builds_stages(tmp_path):
    path = write_config(tmp_path, BASE.format(run=tmp_path / "run", exemplars=2))
    assert [s.name for s in load(path)] == ["seeds", "normalize", "generate"]


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        (BASE.format(run="r", exemplars="many"), "stages[2].exemplars", "valid integer"),
        (BASE.format(run="r", exemplars=2) + "colour: red\n", "colour", "unknown key"),
        (BASE.format(run="r", exemplars=2).replace("name: normalize", "name: normalise"),
         "stages[1].name", "unknown stage 'normalise'"),
        (BASE.format(run="r", exemplars=2) + "teacher: {backend: gpt}\n", "teacher.backend",
         "embedded"),
        (BASE.format(run="r", exemplars=2).replace("tasks: [demo.yaml]", "tasks: [nope*.yaml]"),
         "tasks[0]", "no task spec matches"),
        ("name: [unclosed\n", "line 1", "invalid YAML"),
        (BASE.format(run="r", exemplars=2) + "teacher: {backend: openai, model: m, "
         "base_url: 'htp://x'}\n", "teacher.base_url", "'htp://x' is not an http:// or"),
        (BASE.format(run="r", exemplars=2) + "models: {judge: {backend: openai, model: m, "
         "base_url: 'localhost:8000/v1'}}\n", "models.judge.base_url", "not an http://"),
    ],
)
def test_mistakes_name_file_and_key(tmp_path, body, key, words):
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: ") or message.startswith(f"{path}: line")
    assert words in message


def test_stage_order_is_checked(tmp_path):
    body = BASE.format(run="r", exemplars=2).replace("  - name: normalize\n", "")
    with pytest.raises(ConfigError, match=r"stages\[1\]: 'generate' takes Record but 'seeds'"):
        load(write_config(tmp_path, body))


def test_task_spec_errors_name_the_spec_file(tmp_path):
    path = write_config(tmp_path, BASE.format(run="r", exemplars=2), TASK + "extra_field: 1\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == f"{tmp_path / 'demo.yaml'}: extra_field: unknown key"


def test_held_out_split_cannot_seed(tmp_path):
    leak = TASK.replace("train: {split: train", "train: {split: test")
    with pytest.raises(ConfigError, match="can never be a seed"):
        load(write_config(tmp_path, BASE.format(run="r", exemplars=2), leak))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    path = write_config(tmp_path, BASE.format(run="r", exemplars="many"))
    proc = subprocess.run(
        [sys.executable, "-m", "taskseed.cli.main", "check", str(path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"taskseed: error: {path}: stages[2].exemplars: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
    assert "Traceback" not in proc.stderr


def test_an_unset_api_key_variable_is_a_warning_naming_it(tmp_path, monkeypatch, capsys):
    from taskseed.cli.main import main

    body = BASE.format(run="r", exemplars=2) + (
        "teacher: {backend: openai, model: m, base_url: 'http://teacher.example:8000/v1',"
        " api_key_env: TASKSEED_TEST_UNSET_KEY}\n"
        "models: {judge: {backend: openai, model: m, base_url: 'http://127.0.0.1:9/v1',"
        " api_key_env: TASKSEED_TEST_UNSET_KEY}}\n")
    path = write_config(tmp_path, body)
    monkeypatch.delenv("TASKSEED_TEST_UNSET_KEY", raising=False)
    assert main(["check", str(path)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if "warning" in line and "API key" in line]
    assert warnings == [
        "taskseed: warning: teacher server http://teacher.example:8000/v1: "
        "$TASKSEED_TEST_UNSET_KEY is not set, so requests carry no API key (set it, or "
        "`api_key_env:` to the variable that holds the key)"]  # a local judge needs none
    monkeypatch.setenv("TASKSEED_TEST_UNSET_KEY", "secret-value")
    assert main(["check", str(path)]) == 0
    assert "API key" not in capsys.readouterr().err
