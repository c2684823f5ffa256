"""`taskseed plan` counts exactly what a run sends; budget caps stop a run and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from taskseed.generation.servers.fake import FakeOpenAIServer
from workspace import write_task

from taskseed.config.budget import BudgetExceeded
from taskseed.execution.plan import format_plan, plan_run
from taskseed.execution.run import run_pipeline

PIPE = """name: budget
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: fake, max_retries: 1, max_concurrency: 1}}
budget: {{max_requests: {cap}, usd_per_1m_prompt_tokens: 2.0, usd_per_1m_completion_tokens: 8.0}}
stages:
  - {{name: seeds, rows_per_shard: 10}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 2, samples_per_group: 2, max_attempts: 1}}
"""


def workspace(tmp_path: Path, url: str, cap: int) -> Path:
    rows = [{"q": f"What is item number {i} called?", "a": f"item {i}"} for i in range(40)]
    write_task(tmp_path, "qa", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", url=url, cap=cap))
    return config


def quiet(line: str) -> None:
    pass


def test_plan_counts_exactly_what_the_run_sends(tmp_path):
    with FakeOpenAIServer() as server:
        config = workspace(tmp_path, server.base_url, cap=1000)
        plans, loaded = plan_run(config)
        assert [p.name for p in plans] == ["generate"]
        assert plans[0].requests == 40  # 4 shards x 5 groups of 2 x 2 samples
        assert plans[0].by_task == {"qa": 40}
        text = format_plan(plans, loaded)
        assert "total: 40 requests" in text and "budget: fits max_requests 1000" in text
        assert server.count == 0
        summary = run_pipeline(config, progress=quiet)
        assert server.count == 40 == summary["teacher_calls_this_run"]
    cost = loaded.config.budget.cost(plans[0].prompt_tokens, plans[0].max_completion_tokens)
    assert cost > 0 and f"{cost:.2f}" in text


def test_request_cap_stops_the_run_and_a_rerun_resumes(tmp_path):
    with FakeOpenAIServer(latency_s=0.1) as server:
        config = workspace(tmp_path, server.base_url, cap=15)
        with pytest.raises(BudgetExceeded, match="request cap reached"):
            run_pipeline(config, progress=quiet)
        stopped_at = server.count
        assert 10 <= stopped_at <= 30  # at most the shard in flight runs past the cap
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["status"] == "error" and "request cap" in summary["error"]

        config.write_text(config.read_text().replace("max_requests: 15", "max_requests: 100"))
        summary = run_pipeline(config, progress=quiet)
        assert summary["status"] == "complete"
        assert server.count == 40  # finished shards and cached replies were not sent again
    generate = summary["stages"][-1]
    assert generate["outputs"] + sum(generate["rejects"].values()) == 40


REWARD_PIPE = """name: reward-plan
run_dir: {run}
seeds_root: .
tasks: [qa.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: {url}, model: fake, max_retries: 1}}
models:
  reward: {{backend: nim_reward, base_url: {url}, model: fake-reward, max_retries: 1}}
budget:
  usd_per_1m_prompt_tokens: 2.0
  usd_per_1m_completion_tokens: 8.0
  models: {{reward: {{usd_per_1m_prompt_tokens: 20.0, usd_per_1m_completion_tokens: 0.0}}}}
stages:
{stages}
"""


def reward_workspace(tmp_path: Path, url: str, stages: list[str]) -> Path:
    rows = [{"q": f"What is item number {i} called?", "a": f"item {i}"} for i in range(40)]
    write_task(tmp_path, "qa", "free_form", rows, "{question: q, answer: a}")
    config = tmp_path / "pipe.yaml"
    config.write_text(REWARD_PIPE.format(run=tmp_path / "run", url=url,
                                         stages="\n".join(f"  - {s}" for s in stages)))
    return config


def test_plan_counts_the_reward_model_after_generate(tmp_path):
    stages = ["{name: seeds, rows_per_shard: 10}", "{name: normalize}",
              "{name: generate, exemplars: 2, samples_per_group: 2, max_attempts: 1}",
              "{name: reward, min_score: -100}"]
    with FakeOpenAIServer() as server:
        plans, loaded = plan_run(reward_workspace(tmp_path, server.base_url, stages))
        assert server.count == 0
    generate, reward = plans
    assert (reward.name, reward.model) == ("reward", "reward")
    assert reward.requests == generate.requests == 40  # one score per record generated
    assert reward.max_requests == 40 * 3 and reward.prompt_tokens > 0
    text = format_plan(plans, loaded)
    assert text.splitlines()[2].startswith("generate") and "reward" in text.splitlines()[4]
    assert "total: 80 requests" in text
    cost = loaded.config.budget.cost(reward.prompt_tokens * 3, reward.max_completion_tokens,
                                     "reward")
    assert f"{cost:.2f}" in text.splitlines()[4]  # at the reward model's own prices


def test_plan_of_a_reward_model_first_counts_records_and_sends_nothing(tmp_path):
    stages = ["{name: seeds, rows_per_shard: 10}", "{name: normalize}",
              "{name: reward, min_score: -100}"]
    with FakeOpenAIServer() as server:
        config = reward_workspace(tmp_path, server.base_url, stages)
        (plan,), _ = plan_run(config)
        assert server.count == 0
        assert plan.requests == 40
        summary = run_pipeline(config, progress=quiet)
        assert server.count == plan.requests
    assert summary["stages"][-1]["counters"]["planned"] == 40
