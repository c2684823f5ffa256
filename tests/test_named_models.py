"""Named models: a judge on a server of its own, with its own request cache and budget line.

Two loopback FakeOpenAIServers: the teacher (generate) and the judge (llm_judge and
self_consistency, `model: judge`). One run directory is run twice: first under a judge
request cap that stops it, then with the cap raised.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.errors import ConfigError
from taskseed.generation.prompts import SYSTEM_PROMPT
from taskseed.generation.servers.fake import FakeOpenAIServer
from taskseed.judges.judge_prompts import system_prompt
from workspace import write_task

from taskseed.cli.main import main
from taskseed.config.pipeline import load_config
from taskseed.execution.pipeline import build_stages

PIPE = """name: named-models
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {teacher}, model: teacher-model, max_retries: 1}}
models:
  judge: {{backend: openai, base_url: {judge}, model: judge-model, max_retries: 1,
           structured_output: json_schema}}
budget: {{models: {{judge: {{max_requests: {cap}}}}}}}
stages:
  - {{name: seeds}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 1}}
  - {{name: heuristics}}
  - {{name: llm_judge, model: judge}}
  - {{name: self_consistency, model: judge, samples: 3}}
"""
SEEDS = [{"q": f"Is thing number {i} red?", "a": "yes" if i % 2 else "no"} for i in range(4)]
GENERATE = SYSTEM_PROMPT
JUDGE = system_prompt("judge_system.j2")
ANSWER = system_prompt("answer_system.j2")


def teacher_reply(body: dict[str, Any]) -> str:
    """A new yes/no item per seed; item 3 opens with meta-text (heuristics drop it)."""
    n = int(re.search(r"thing number (\d+)", body["messages"][-1]["content"]).group(1))
    question = f"Is new item {n} heavier than a car?"
    if n == 3:
        question = "Here is a new question: " + question.lower()
    return json.dumps({"question": question, "answer": "yes" if n in (0, 3) else "no"})


def judge_reply(body: dict[str, Any]) -> str:
    """Rubric scores of 5 (clarity 2 for item 1); every self-consistency vote is `yes`."""
    required = body["response_format"]["json_schema"]["schema"]["required"]
    if required == ["answer"]:
        return json.dumps({"answer": "yes"})
    item = re.search(r"new item (\d+)", body["messages"][-1]["content"]).group(1)
    return json.dumps({k: 2 if (k, item) == ("clarity", "1") else 5 for k in required})


def system(server: FakeOpenAIServer) -> list[str]:
    """The system prompt of each request a server received."""
    return [r.body["messages"][0]["content"] for r in server.requests]


@dataclass
class Invocation:
    code: int
    stdout: str
    stderr: str
    teacher: list[str]  # system prompts received by the teacher server during this run
    judge: list[str]  # ... and by the judge server
    done: dict[str, int]  # done shards per stage folder after this run
    summary: dict[str, Any]


@dataclass
class Scenario:
    folder: Path
    capped: Invocation
    raised: Invocation
    judge_requests: list[dict[str, Any]]

    @property
    def run(self) -> Path:
        return self.folder / "run"


def invoke(config: Path, teacher: FakeOpenAIServer, judge: FakeOpenAIServer) -> Invocation:
    before = len(teacher.requests), len(judge.requests)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["run", str(config)])
    run = Path(load_config(config).config.run_dir)
    done = {d.name: len(list(d.glob("*.done"))) for d in sorted((run / "stages").iterdir())}
    return Invocation(code, out.getvalue(), err.getvalue(), system(teacher)[before[0]:],
                      system(judge)[before[1]:], done,
                      json.loads((run / "summary.json").read_text()))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    folder = tmp_path_factory.mktemp("named")
    write_task(folder, "qa", "yes_no", SEEDS, "{question: q, answer: a}")
    config = folder / "pipe.yaml"
    with FakeOpenAIServer(responder=teacher_reply) as teacher, \
            FakeOpenAIServer(responder=judge_reply) as judge:
        def write(cap: int) -> Path:
            config.write_text(PIPE.format(run=folder / "run", teacher=teacher.base_url,
                                          judge=judge.base_url, cap=cap))
            return config

        capped = invoke(write(2), teacher, judge)
        raised = invoke(write(100), teacher, judge)
        yield Scenario(folder, capped, raised, [r.body for r in judge.requests])


def test_each_stage_asks_the_server_of_its_model(scenario: Scenario) -> None:
    capped, raised = scenario.capped, scenario.raised
    assert capped.teacher == [GENERATE] * 4 and raised.teacher == []
    assert capped.judge == [JUDGE] * 3 and raised.judge == [ANSWER] * 6
    assert {b["model"] for b in scenario.judge_requests} == {"judge-model"}
    shown = [b["messages"][-1]["content"] for b in scenario.judge_requests[:3]]
    for text in shown:
        assert text.startswith('Examples of the task "qa":')
        assert re.search(r"Question: Is thing number \d red\?\n  Answer: (yes|no)\n", text)


def test_the_summary_shows_drops_per_stage(scenario: Scenario) -> None:
    assert scenario.raised.code == 0, scenario.raised.stderr[-2000:]
    summary = scenario.raised.summary
    assert summary["status"] == "complete" and summary["error"] is None
    stages = {s["name"]: s for s in summary["stages"]}
    assert [(n, s["inputs"], s["outputs"], s["rejects"]) for n, s in stages.items()] == [
        ("seeds", 4, 4, {}), ("normalize", 4, 4, {}), ("generate", 4, 4, {}),
        ("heuristics", 4, 3, {"meta_text": 1}), ("llm_judge", 3, 2, {"judge_clarity": 1}),
        ("self_consistency", 2, 1, {"inconsistent_answer": 1})]
    assert stages["llm_judge"]["counters"]["teacher_calls"] == 3
    assert stages["self_consistency"]["counters"]["teacher_calls"] == 6
    for line in ("drop heuristics/meta_text: 1", "drop llm_judge/judge_clarity: 1",
                 "drop self_consistency/inconsistent_answer: 1"):
        assert line in scenario.raised.stdout


def test_a_judge_cap_stops_the_run_at_the_judge_and_not_generate(scenario: Scenario) -> None:
    capped = scenario.capped
    assert capped.code == 2
    assert capped.stderr.strip().splitlines()[-1] == (
        "taskseed: error: model 'judge' request cap reached: 3 of max_requests 2")
    assert "Traceback" not in capped.stderr
    assert capped.summary["status"] == "error"
    assert capped.summary["error"] == "model 'judge' request cap reached: 3 of max_requests 2"
    assert len(capped.teacher) == 4  # generate spent more than the judge's cap allows
    assert capped.done == {"01-seeds": 1, "02-normalize": 1, "03-generate": 1,
                           "04-heuristics": 1, "05-llm_judge": 1, "06-self_consistency": 0}
    assert scenario.raised.done["06-self_consistency"] == 1


def test_a_rerun_with_a_raised_cap_resumes_without_generating_again(scenario: Scenario) -> None:
    raised = scenario.raised
    assert raised.code == 0 and raised.teacher == [] and JUDGE not in raised.judge
    ran = {s["name"]: s["shards_run"] for s in raised.summary["stages"]}
    assert ran == {"seeds": 0, "normalize": 0, "generate": 0, "heuristics": 0, "llm_judge": 0,
                   "self_consistency": 1}
    assert "teacher calls this run: 6" in raised.stdout


def test_a_named_models_request_cache_is_its_own_folder(scenario: Scenario) -> None:
    cache = scenario.run / "cache"
    assert sorted(p.name for p in cache.glob("*.jsonl")) == ["generate-00000.jsonl"]
    judge = cache / "judge"
    assert sorted(p.name for p in judge.iterdir()) == ["llm_judge-00000.jsonl",
                                                       "self_consistency-00000.jsonl"]
    lines = [json.loads(line) for p in judge.glob("*.jsonl") for line in p.open()]
    assert len(lines) == 3 + 6 == len(scenario.judge_requests)


# --- config errors --------------------------------------------------------------------------

CONFIG = """name: errors
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
models:
  judge: {{backend: openai, base_url: 'http://127.0.0.1:9/v1', model: j}}
  reward: {{backend: nim_reward, base_url: 'http://127.0.0.1:9/v1', model: r}}
{extra}stages:
  - name: seeds
  - name: normalize
  - name: heuristics
  - {{name: llm_judge{judge}}}
"""


def config_error(tmp_path: Path, judge: str = "", extra: str = "") -> str:
    write_task(tmp_path, "qa", "yes_no", SEEDS, "{question: q, answer: a}")
    path = tmp_path / "pipe.yaml"
    path.write_text(CONFIG.format(run=tmp_path / "run", judge=judge, extra=extra))
    with pytest.raises(ConfigError) as info:
        build_stages(load_config(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_the_config_builds_with_a_known_judge(tmp_path: Path) -> None:
    write_task(tmp_path, "qa", "yes_no", SEEDS, "{question: q, answer: a}")
    path = tmp_path / "pipe.yaml"
    path.write_text(CONFIG.format(run=tmp_path / "run", judge=", model: judge", extra=""))
    judge = build_stages(load_config(path))[-1]
    assert judge.model_cfg.model == "j"
    assert judge.model_cfg.cache_dir == str((tmp_path / "run" / "cache" / "judge").resolve())


def test_an_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    assert config_error(tmp_path, ", model: grader") == (
        "stages[3].model: no model named 'grader' (known: judge, reward, teacher)")


def test_a_reward_model_cannot_judge(tmp_path: Path) -> None:
    assert config_error(tmp_path, ", model: reward") == (
        "stages[3].model: model 'reward' is not a chat model (backend 'nim_reward')")


def test_the_teacher_is_not_a_named_model(tmp_path: Path) -> None:
    extra = "  teacher: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: t}\n"
    message = config_error(tmp_path, ", model: judge", extra=extra)
    assert message == "models.teacher: the generator is configured under `teacher:`"


def test_a_budget_line_for_an_unknown_model_is_an_error(tmp_path: Path) -> None:
    extra = "budget: {models: {jduge: {max_requests: 5}}}\n"
    message = config_error(tmp_path, ", model: judge", extra=extra)
    assert message.startswith("budget.models.jduge: ")
