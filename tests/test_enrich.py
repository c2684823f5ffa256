"""EnrichStage against the loopback fake server (real HTTP) and the embedded model."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.record import Format, Lineage, ModelText, Origin, Record, Sampling, Source
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.servers.fake import FakeOpenAIServer, Fault, last_user_message
from taskseed.generation.stages.enrich import (
    EnrichParams,
    EnrichStage,
    enrich_schema,
    parse_enrichment,
    render_enrich,
    request_seed,
)

REASONING = "Water boils at 100 degrees Celsius at sea level, so the answer is 100."
KNOWLEDGE = "The boiling point of a liquid depends on the surrounding air pressure."


def record(question: str, answer: str, fmt: Format = Format.FREE_FORM, **extra: Any) -> Record:
    return Record(
        task="demo_task",
        family="demo",
        format=fmt,
        question=question,
        answer=answer,
        license="cc-by-4.0",
        source=Source(dataset="demo", row=-1),
        origin=Origin.GENERATED,
        lineage=Lineage(
            seed_ids=["s1", "s2"], teacher_model="fake", prompt_template=f"{fmt.value}.j2",
            prompt_hash="abc", sampling=Sampling(0.8, 0.95, 384, 7), stage="generate",
        ),
        **extra,
    )


def fixed_reply(body: dict[str, Any]) -> str:
    """Answers with exactly the fields the request's schema asks for."""
    schema = body["response_format"]["json_schema"]["schema"]
    values = {"reasoning": REASONING, "knowledge": KNOWLEDGE}
    return json.dumps({f: values[f] for f in schema["required"]})


def stage_for(server: FakeOpenAIServer, cache_dir: Path | None = None,
              **params: Any) -> EnrichStage:
    teacher = OpenAIConfig(model="fake", base_url=server.base_url,
                            api_key_env="TASKSEED_NO_KEY", max_retries=2, timeout_s=10,
                            cache_dir=str(cache_dir) if cache_dir else None)
    return EnrichStage(EnrichParams(**params), teacher)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=fixed_reply) as srv:
        yield srv


def batch() -> list[Record]:
    return [
        record("At what temperature in Celsius does water boil at sea level?", "100"),
        record("Which planet is known as the red planet?", "Mars", Format.MULTIPLE_CHOICE,
               choices=["Venus", "Mars", "Jupiter"], answer_label="B"),
        record("Tom has 3 apples and buys 4 more. How many does he have?", "7", Format.MATH,
               reasoning="3 + 4 = 7"),
    ]


def test_fills_fields_and_keeps_answer(server: FakeOpenAIServer) -> None:
    records = batch()
    stage = stage_for(server)
    result = stage.process(records, shard=0)
    stage.teardown()
    assert result.rejects == []
    assert [r.id for r in result.items] == [r.id for r in records]
    for before, after in zip(records, result.items, strict=True):
        assert after.answer == before.answer and after.question == before.question
        assert after.answer_label == before.answer_label and after.choices == before.choices
        assert after.lineage.seed_ids == before.lineage.seed_ids
        assert after.lineage.teacher_model == before.lineage.teacher_model
        # the enricher's text is in the record: its model (unknown terms) is in lineage
        assert after.lineage.models == [*before.lineage.models,
                                         ModelText("enrich", stage.model, "unknown")]
        assert before.commercial and not after.commercial
        assert after.id == after.content_hash()
        assert after.knowledge == KNOWLEDGE
    assert result.items[0].reasoning == REASONING
    assert result.items[1].reasoning == REASONING
    assert result.items[2].reasoning == "3 + 4 = 7"
    assert result.counters["enriched"] == 3 and result.counters["teacher_calls"] == 3
    assert isinstance(stage.model, str)
    assert result.counters["completion_tokens"] > 0
    assert result.counters["enrich_failed"] == 0
    bodies = [r.body for r in server.requests]
    asked = sorted(tuple(b["response_format"]["json_schema"]["schema"]["required"])
                   for b in bodies if b)
    assert asked == [("knowledge",), ("reasoning", "knowledge"), ("reasoning", "knowledge")]
    prompts = [last_user_message(b) for b in bodies if b]
    assert any("B) Mars" in p for p in prompts)
    assert any("Solution: 3 + 4 = 7" in p for p in prompts)
    seeds = {b["seed"] for b in bodies if b}
    assert seeds == {request_seed(r.id) for r in records}


def test_rerun_is_answered_from_the_cache(server: FakeOpenAIServer, tmp_path: Path) -> None:
    first = stage_for(server, cache_dir=tmp_path)
    before = first.process(batch(), shard=3)
    first.teardown()
    sent = server.count
    again = stage_for(server, cache_dir=tmp_path)
    after = again.process(batch(), shard=3)
    again.teardown()
    assert server.count == sent == 3
    assert after.items == before.items
    assert after.counters["cache_hits"] == 3 and after.counters["teacher_calls"] == 0


def test_fields_limit_what_the_model_writes(server: FakeOpenAIServer) -> None:
    records = batch()
    stage = stage_for(server, fields=["reasoning"])
    result = stage.process(records, shard=0)
    stage.teardown()
    asked = [tuple(r.body["response_format"]["json_schema"]["schema"]["required"])
             for r in server.requests if r.body]
    assert asked == [("reasoning",), ("reasoning",)]  # the math record has its reasoning
    assert [r.reasoning for r in result.items] == [REASONING, REASONING, "3 + 4 = 7"]
    assert all(r.knowledge is None for r in result.items)
    assert result.counters["enrich_skipped"] == 1
    with pytest.raises(ValueError):
        EnrichParams(fields=[])


def test_complete_records_are_not_sent(server: FakeOpenAIServer) -> None:
    done = record("Q?", "A", reasoning="because", knowledge="facts")
    stage = stage_for(server)
    result = stage.process([done], shard=0)
    stage.teardown()
    assert result.items == [done] and server.count == 0
    assert result.counters["enrich_skipped"] == 1 and result.counters["teacher_calls"] == 0


def test_server_fault_keeps_record_by_default() -> None:
    with FakeOpenAIServer(responder=fixed_reply, fault_plan=lambda i, body: (
        Fault("malformed") if "red planet" in last_user_message(body) else None
    )) as srv:
        stage = stage_for(srv)
        records = batch()
        result = stage.process(records, shard=0)
        stage.teardown()
    assert result.rejects == []
    assert len(result.items) == 3
    failed = result.items[1]
    assert failed == records[1]
    assert failed.reasoning is None and failed.knowledge is None
    assert result.items[0].knowledge == KNOWLEDGE
    assert result.counters["enrich_failed"] == 1 and result.counters["enriched"] == 2


def test_drop_rejects_with_reason() -> None:
    with FakeOpenAIServer(responder=fixed_reply, fault_plan=lambda i, body: (
        Fault("malformed") if "red planet" in last_user_message(body) else None
    )) as srv:
        stage = stage_for(srv, on_failure="drop")
        records = batch()
        result = stage.process(records, shard=0)
        stage.teardown()
    assert [r.id for r in result.items] == [records[0].id, records[2].id]
    [reject] = result.rejects
    assert reject.stage == "enrich" and reject.reason == "teacher_error"
    assert reject.item_id == records[1].id
    assert json.loads(reject.item)["answer"] == "Mars"
    assert result.counters["enrich_failed"] == 1


def test_unusable_reply_is_a_failure() -> None:
    with FakeOpenAIServer(responder=lambda body: json.dumps({"reasoning": " ", "knowledge": "x"})
                          ) as srv:
        stage = stage_for(srv, on_failure="drop")
        result = stage.process(batch()[:1], shard=0)
        stage.teardown()
    assert result.items == []
    assert [r.reason for r in result.rejects] == ["missing_field"]


def test_truncated_reply_is_a_failure() -> None:
    with FakeOpenAIServer(responder=fixed_reply, faults=[Fault("truncated", times=5)]) as srv:
        stage = stage_for(srv)
        records = batch()[:1]
        result = stage.process(records, shard=0)
        stage.teardown()
    assert result.items == records and result.counters["enrich_failed"] == 1


def test_parse_and_schema() -> None:
    assert parse_enrichment('{"knowledge": " k "}', ["knowledge"]) == {"knowledge": "k"}
    for text, reason in (("nope", "unparsable"), ("[1]", "unparsable"),
                         ('{"reasoning": 3}', "missing_field")):
        with pytest.raises(Exception) as info:
            parse_enrichment(text, ["reasoning"])
        assert getattr(info.value, "reason", None) == reason
    schema = enrich_schema(["reasoning", "knowledge"])
    assert schema["required"] == ["reasoning", "knowledge"]
    assert schema["additionalProperties"] is False
    messages = render_enrich(record("Q1?", "A1"), ["knowledge"])
    assert '"knowledge"' in messages[1]["content"] and '"reasoning"' not in messages[1]["content"]


def test_params_and_pickling() -> None:
    with pytest.raises(ValueError):
        EnrichParams(on_failure="retry")
    with pytest.raises(ValueError):
        EnrichParams(seed=1)
    stage = EnrichStage(EnrichParams(), EmbeddedConfig(model="smollm2"))
    stage._client = object()  # type: ignore[assignment]
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._client is None and clone.fingerprint() == stage.fingerprint()
    other = EnrichStage(EnrichParams(temperature=0.5), EmbeddedConfig(model="smollm2"))
    assert other.fingerprint() != stage.fingerprint()


@pytest.mark.slow
def test_embedded_teacher_enriches() -> None:
    stage = EnrichStage(EnrichParams(max_tokens=160), EmbeddedConfig(model="smollm2"))
    records = [
        record("What is the capital of France?", "Paris"),
        record("Is the sun a star?", "yes", Format.YES_NO),
    ]
    try:
        result = stage.process(records, shard=0)
    finally:
        stage.teardown()
    assert result.counters["teacher_calls"] == 2
    assert [r.answer for r in result.items] == ["Paris", "yes"]
    assert result.counters["enriched"] == 2 and result.rejects == []
    for r in result.items:
        assert isinstance(r.reasoning, str) and r.reasoning.strip()
        assert isinstance(r.knowledge, str) and r.knowledge.strip()


def test_a_reply_that_echoes_the_instructions_is_not_used():
    from taskseed.generation.stages.enrich import echoes

    instructions = ("The answer above is correct and final: do not change it or argue for "
                    "another one. Write \"knowledge\": the background facts someone needs.")
    assert echoes("Do not change it or argue for another one.", instructions)
    assert not echoes("Plants take in carbon dioxide through their leaves.", instructions)
    assert not echoes("do not change", instructions)  # shorter than the 5-word window
