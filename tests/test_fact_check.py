"""The fact check: closed-book records whose key the judge model calls incorrect are dropped.

Mechanics against the loopback server; what the packaged default model catches (marked
slow): the false keys it wrote itself in the quickstart, and the true ones it keeps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.record import Format, Record, Source
from taskseed.curation.stage import BuildContext, StageResult
from taskseed.generation.backends.base import BackendConfig
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.servers.fake import FakeOpenAIServer
from taskseed.judges.filters.fact_check import FactCheckParams, FactCheckStage, checked


def rec(question: str, answer: str, fmt: str = "free_form", **over: Any) -> Record:
    return Record(task="t", family="f", format=Format(fmt), question=question, answer=answer,
                  license="MIT", source=Source("d"), **over)


def run(model: BackendConfig, batch: list[Record]) -> StageResult:
    context = BuildContext(specs={}, seeds_root=Path("."), run_dir=Path("."),
                           models={"judge": model})
    stage = FactCheckStage.build(FactCheckParams(), context)
    try:
        return stage.process_shard(batch, 0)
    finally:
        stage.teardown()


def fake(server: FakeOpenAIServer) -> OpenAIConfig:
    return OpenAIConfig(base_url=server.base_url, model="fake-judge", max_retries=1,
                        timeout_s=10)


def test_a_key_called_incorrect_is_dropped_with_its_reason() -> None:
    def reply(body: dict[str, Any]) -> str:
        wrong = "Proposed answer: Sahara" in body["messages"][-1]["content"]
        return json.dumps({"verdict": "false" if wrong else "true"})

    batch = [rec("What is the largest desert in North America?", "Sahara"),
             rec("What is the capital of France?", "Paris"),
             rec("Is ice cold?", "yes", "yes_no"),
             rec("Which is a mammal?", "whale", "multiple_choice", choices=["whale", "trout"]),
             rec("Where is the tower?", "Paris", "extractive", context="The tower is in Paris."),
             rec("What is 2 + 3?", "5", "math")]
    with FakeOpenAIServer(responder=reply) as server:
        result = run(fake(server), batch)
        asked = len(server.requests)
    assert asked == 3  # free-form and yes/no only: options, passages and math pass through
    assert [r.reason for r in result.rejects] == ["fact_check_false"]
    assert "'Sahara' is not correct" in result.rejects[0].detail
    assert [r.answer for r in result.items] == ["Paris", "yes", "whale", "Paris", "5"]
    assert result.items[0].scores["fact_check.correct"] == 1.0
    assert result.counters["not_applicable"] == 3


def test_a_record_with_no_usable_verdict_is_kept_ungraded() -> None:
    with FakeOpenAIServer(responder=lambda body: '{"verdict": "maybe"}') as server:
        result = run(fake(server), [rec("What is the capital of Peru?", "Lima")])
    assert [r.answer for r in result.items] == ["Lima"]
    assert result.counters["kept_ungraded"] == 1


def test_only_closed_book_short_keys_are_checked() -> None:
    assert checked(rec("q?", "a")) and checked(rec("q?", "no", "yes_no"))
    assert not checked(rec("q?", "a", "extractive", context="a b"))
    assert not checked(rec("q?", "4", "math"))


@pytest.mark.slow
def test_the_packaged_model_catches_false_keys_it_wrote() -> None:
    false = [rec("What is the largest desert in North America?", "Sahara"),
             rec("What is the boiling point of water at sea level in degrees Celsius?", "50")]
    true = [rec("What is the capital of France?", "Paris"),
            rec("What is the largest planet in our solar system?", "Jupiter")]
    result = run(EmbeddedConfig(model="qwen2.5-coder-1.5b"), false + true)
    assert sorted(json.loads(r.item)["answer"] for r in result.rejects) == ["50", "Sahara"]
    assert [r.answer for r in result.items] == ["Paris", "Jupiter"]
