"""The judge cascade: heuristics, the LLM judge and self-consistency on real records.

The judge model is the loopback FakeOpenAIServer (or, marked slow, the embedded SmolLM2).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from taskseed.curation.errors import ConfigError, TaskseedError
from taskseed.curation.formats.base import LETTERS
from taskseed.curation.record import Format, Record, Reject, Source
from taskseed.curation.stage import BuildContext, StageResult
from taskseed.generation.backends.base import BackendConfig
from taskseed.generation.backends.embedded import EmbeddedConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.servers.fake import FakeOpenAIServer, Fault
from taskseed.judges.filters.heuristics import HeuristicParams, HeuristicsStage
from taskseed.judges.filters.llm_judge import JudgeParams, LLMJudgeStage
from taskseed.judges.filters.self_consistency import ConsistencyParams, SelfConsistencyStage
from taskseed.judges.judge_prompts import load_rubric

from taskseed.config.pipeline import load_config
from taskseed.execution.pipeline import build_stages

CRITERIA = list(load_rubric("default").criteria)
OPTIONS = ["whale", "shark", "trout"]


def rec(question: str = "What is the capital city of France?", answer: str = "Paris",
        fmt: str = "free_form", **over: Any) -> Record:
    """A hand-written record of task `t`."""
    return Record(task="t", family="f", format=Format(fmt), question=question, answer=answer,
                  license="MIT", source=Source("d"), **over)


def mc(n: int, answer: str = "whale") -> Record:
    """A multiple-choice record numbered `n` whose key is `answer`."""
    return rec(f"Which animal number {n} is a mammal?", answer, "multiple_choice",
               choices=list(OPTIONS))


def rejected(result: StageResult) -> dict[str, Reject]:
    """The rejects of a result by the question of their record."""
    return {json.loads(r.item)["question"]: r for r in result.rejects}


def user_text(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def schema_of(body: dict[str, Any]) -> dict[str, Any]:
    return body["response_format"]["json_schema"]["schema"]


def openai(server: FakeOpenAIServer, cache: Path | None = None, **over: Any) -> OpenAIConfig:
    """The fake server as a named model (`backend: openai`, `json_schema` output)."""
    fields: dict[str, Any] = {"base_url": server.base_url, "model": "fake-judge",
                              "structured_output": "json_schema", "max_retries": 1,
                              "timeout_s": 10, "cache_dir": str(cache) if cache else None}
    fields.update(over)
    return OpenAIConfig(**fields)


def judge_stage(model: BackendConfig, **params: Any) -> LLMJudgeStage:
    context = BuildContext(specs={}, seeds_root=Path("."), run_dir=Path("."),
                           models={"judge": model})
    return LLMJudgeStage.build(JudgeParams(**params), context)


def consistency_stage(model: BackendConfig, **params: Any) -> SelfConsistencyStage:
    context = BuildContext(specs={}, seeds_root=Path("."), run_dir=Path("."),
                           models={"judge": model})
    return SelfConsistencyStage.build(ConsistencyParams(model="judge", **params), context)


def run(stage: LLMJudgeStage | SelfConsistencyStage, batch: list[Record]) -> StageResult:
    try:
        return stage.process_shard(batch, 0)
    finally:
        stage.teardown()


# --- heuristics -----------------------------------------------------------------------------

MC_OPTIONS = {"choices": ["Paris", "Rome", "Madrid"]}
DROPPED = {
    "refusal": rec(answer="I'm sorry, but I cannot help with that request."),
    "refusal_option": rec("Which reply ends the talk politely?", "Goodbye.", "multiple_choice",
                          choices=["Goodbye.", "I'm sorry, but I cannot answer that."]),
    "placeholder": rec("What is {topic} best known for in history?"),
    "placeholder_file": rec("What does the file questions.jsonl contain?", "Questions"),
    "meta_question": rec("Here is a new question: what is the capital of Spain?", "Madrid"),
    "meta_answer": rec(answer="The answer is Paris."),
    "meta_reasoning": rec(reasoning="This answer is correct and final, and the answer is"),
    "truncated_reasoning": rec(reasoning="The seat of the French government is in the city of"),
    "label_only_answer": rec("Which city is the capital of France?", "B", "multiple_choice",
                             choices=["A", "B", "C"]),
    "label_only_free_form": rec(answer="Option B"),
    "answer_is_question": rec(answer="What is the capital city of France?"),
    "answer_inside_question": rec(
        "Why did the old sailor tie the rope around the tall wooden mast twice?",
        "the old sailor tie the rope around the tall wooden mast"),
    "math_without_number": rec("Tom buys some apples at the market and eats a few of them.",
                               "3", "math", reasoning="He ate three of them."),
    "mc_statement": rec("Paris is the capital of France.", "Paris", "multiple_choice",
                        **MC_OPTIONS),
    "yes_no_statement": rec("Paris is the capital city of France.", "yes", "yes_no"),
    "free_form_statement": rec("The weather in Paris was very nice yesterday."),
    "repetitive": rec(answer=" ".join(["the cat sat on the mat"] * 4)),
    "spanish": rec("¿Cuál es la capital de Francia y por qué es tan famosa en el mundo?"),
    "german": rec("Was ist die Hauptstadt von Frankreich und warum ist sie so berühmt?"),
    "too_short": rec("Capital?"),
    "too_long": rec("What " + "is the capital of France and " * 80 + "why?"),
    "answer_too_long": rec(answer="Paris " * 401),
    "enrichment_about_the_item": rec("Does water boil faster on a high mountain?", "yes",
                                     "yes_no", reasoning="The answer to the question",
                                     knowledge="the answer to the question"),
}
REASONS = {
    "refusal": "refusal", "refusal_option": "refusal", "placeholder": "placeholder",
    "placeholder_file": "placeholder", "meta_question": "meta_text",
    "meta_answer": "meta_text", "meta_reasoning": "meta_text",
    "truncated_reasoning": "truncated_text", "label_only_answer": "label_only_answer",
    "label_only_free_form": "label_only_answer", "answer_is_question": "answer_repeats_question",
    "answer_inside_question": "answer_repeats_question",
    "math_without_number": "not_a_question", "mc_statement": "not_a_question",
    "yes_no_statement": "not_a_question", "free_form_statement": "not_a_question",
    "repetitive": "repetitive", "spanish": "wrong_language", "german": "wrong_language",
    "too_short": "question_too_short", "too_long": "question_too_long",
    "answer_too_long": "answer_too_long", "enrichment_about_the_item": "thin_enrichment",
}
KEPT = {
    "free_form": rec(),
    "multiple_choice": rec("Which city is the capital of France?", "Paris", "multiple_choice",
                           **MC_OPTIONS),
    "mc_stem": rec("Plants make their food from", "sunlight", "multiple_choice",
                   choices=["sunlight", "rocks", "sand"]),
    "yes_no": rec("Is Paris the capital of France?", "yes", "yes_no"),
    "math": rec("Tom has 3 apples and buys 4 more. How many apples does he have now?", "7",
                "math", reasoning="He has 3 + 4 = 7 apples."),
    "extractive": rec("Which city is the capital of France?", "Paris", "extractive",
                      context="Paris is the capital and the largest city of France."),
    "code": rec("Write a function add(a, b) that returns the sum of two numbers.",
                "def add(a, b):\n    return a + b", "code", tests=["assert add(1, 2) == 3"]),
    "completion": rec("A man pours cold water into a glass. He", "drinks it slowly.",
                      "completion", choices=["drinks it slowly.", "throws the glass at the moon.",
                                             "turns into a small bird."]),
    "quoted_apology": rec('Why did Anna say "I\'m sorry, but I must go" to her friend?',
                          "She was late for her train."),
}


@pytest.mark.parametrize("case", list(DROPPED))
def test_heuristics_drop_each_failure_with_its_reason(case: str) -> None:
    record = DROPPED[case]
    result = HeuristicsStage(HeuristicParams()).process([record], 0)
    assert result.items == []
    [reject] = result.rejects
    assert (reject.stage, reject.reason, reject.item_id) == ("heuristics", REASONS[case],
                                                             record.id)
    assert reject.detail


@pytest.mark.parametrize("case", list(KEPT))
def test_heuristics_keep_a_good_record_of_each_format(case: str) -> None:
    record = KEPT[case]
    result = HeuristicsStage(HeuristicParams()).process([record], 0)
    assert result.rejects == [] and result.items == [record]


def test_heuristics_bounds_are_parameters() -> None:
    spanish, short = DROPPED["spanish"], rec("France's capital?")
    assert HeuristicsStage(HeuristicParams(languages=[])).process([spanish], 0).items == [spanish]
    assert HeuristicsStage(HeuristicParams(languages=["es"])).process([spanish], 0).items
    loose = HeuristicsStage(HeuristicParams(min_question_words=2)).process([short], 0)
    assert loose.items == [short]
    strict = HeuristicsStage(HeuristicParams()).process([short], 0)
    assert [r.reason for r in strict.rejects] == ["question_too_short"]


def test_heuristics_drop_an_im_unable_to_refusal() -> None:
    record = rec(answer="I'm unable to help with that.")
    result = HeuristicsStage(HeuristicParams()).process([record], 0)
    assert [r.reason for r in result.rejects] == ["refusal"]


# --- the LLM judge --------------------------------------------------------------------------

def number(body: dict[str, Any]) -> int:
    """The number of the record a request is about (`... number N ...`)."""
    found = re.search(r"number (\d+)", user_text(body))
    return int(found.group(1)) if found else -1


def grader(low: dict[int, dict[str, int]], picks: dict[int, int] | None = None) -> Any:
    """A judge reply: every criterion 5 except the `low` scores of record N; records with
    options get the pick in `picks` (default: option 0)."""
    def reply(body: dict[str, Any]) -> str:
        n = number(body)
        scores: dict[str, Any] = {}
        for name in schema_of(body)["required"]:
            if name == "answer":
                scores[name] = LETTERS[(picks or {}).get(n, 0)]
            else:
                scores[name] = low.get(n, {}).get(name, 5)
        return json.dumps(scores)
    return reply


def free(n: int) -> Record:
    return rec(f"What is the name of the planet number {n} from the sun?", f"Planet {n}")


def test_judge_scores_land_on_kept_and_dropped_records() -> None:
    reply = grader({2: {"clarity": 2}, 3: {"difficulty": 2}})
    batch = [free(1), free(2), free(3)]
    with FakeOpenAIServer(responder=reply) as server:
        result = run(judge_stage(openai(server), thresholds={"difficulty": 3}), batch)
    assert server.count == 3
    assert result.items == [batch[0]]
    assert batch[0].scores == {f"judge.{n}": 5.0 for n in CRITERIA}
    drops = rejected(result)
    assert {q: r.reason for q, r in drops.items()} == {
        batch[1].question: "judge_clarity", batch[2].question: "judge_difficulty"}
    assert drops[batch[1].question].detail == "clarity 2 < 3"
    assert drops[batch[2].question].detail == "difficulty 2 < 3"
    for record in batch[1:]:
        scores = json.loads(drops[record.question].item)["scores"]
        assert set(scores) == {f"judge.{n}" for n in CRITERIA}
        assert scores == record.scores and all(1 <= v <= 5 for v in scores.values())
    assert result.counters["accepted"] == 3 and result.counters["planned"] == 3


def test_default_thresholds_come_from_the_rubric() -> None:
    reply = grader({1: {"difficulty": 1}, 2: {"safety": 3}})
    with FakeOpenAIServer(responder=reply) as server:
        result = run(judge_stage(openai(server)), [free(1), free(2)])
    assert [r.question for r in result.items] == [free(1).question]
    assert [r.reason for r in result.rejects] == ["judge_safety"]


def test_the_judge_is_not_shown_the_key_of_a_multiple_choice_record() -> None:
    record = mc(1, answer="shark")
    with FakeOpenAIServer(responder=grader({}, picks={1: 1})) as server:
        result = run(judge_stage(openai(server)), [record])
    [request] = server.requests
    text = "\n".join(m["content"] for m in request.body["messages"])
    assert "A) whale\nB) shark\nC) trout\n" in text
    assert "Answer" not in text and not re.search(r"^\s*Answer\s*:", text, re.MULTILINE)
    assert text.count("shark") == 1  # only as an option, never marked as the key
    schema = schema_of(request.body)
    assert schema["required"][0] == "answer" and "correctness" not in schema["required"]
    assert schema["properties"]["answer"]["enum"] == ["A", "B", "C"]
    assert result.items == [record]
    assert record.scores["judge.correctness"] == 5.0 and record.scores["judge.agrees"] == 1.0


def test_a_free_form_record_is_scored_with_its_answer_and_correctness() -> None:
    with FakeOpenAIServer(responder=grader({})) as server:
        run(judge_stage(openai(server)), [free(1)])
    [request] = server.requests
    assert "Answer: Planet 1\n" in user_text(request.body)
    schema = schema_of(request.body)
    assert schema["required"] == CRITERIA and "answer" not in schema["properties"]


def test_the_judge_is_not_shown_a_solution_that_names_the_key() -> None:
    record = mc(1, answer="shark")
    record.reasoning = "Sharks are fish that breathe with gills, so the answer is shark."
    with FakeOpenAIServer(responder=grader({})) as server:
        run(judge_stage(openai(server)), [record])
    [request] = server.requests
    assert user_text(request.body).count("shark") == 1


def test_a_judge_that_picks_another_option_drops_the_record() -> None:
    agrees, disagrees = mc(1, answer="whale"), mc(2, answer="shark")
    # no responder: the server answers with its schema instance, which picks option A and
    # scores every criterion 1; the disagreement is the reason before any threshold
    with FakeOpenAIServer() as server:
        result = run(judge_stage(openai(server)), [agrees, disagrees])
    drops = rejected(result)
    assert drops[disagrees.question].reason == "judge_disagrees"
    assert drops[disagrees.question].detail == "judge picked A, the key is B"
    scores = json.loads(drops[disagrees.question].item)["scores"]
    assert scores["judge.agrees"] == 0.0 and scores["judge.correctness"] == 1.0
    assert drops[agrees.question].reason == "judge_answerability"
    assert agrees.scores["judge.agrees"] == 1.0 and agrees.scores["judge.correctness"] == 5.0


def test_without_required_agreement_a_disagreement_is_a_low_correctness() -> None:
    record = mc(1, answer="shark")
    with FakeOpenAIServer(responder=grader({}, picks={1: 2})) as server:
        result = run(judge_stage(openai(server), require_agreement=False), [record])
        kept = run(judge_stage(openai(server), require_agreement=False,
                               thresholds={"correctness": 1}), [mc(1, answer="shark")])
    assert [(r.reason, r.detail) for r in result.rejects] == [
        ("judge_correctness", "correctness 1 < 3")]
    assert len(kept.items) == 1 and kept.items[0].scores["judge.agrees"] == 0.0


def test_an_unparsable_reply_is_asked_again_then_kept_ungraded_or_dropped() -> None:
    seeds: dict[int, list[int]] = {}

    def reply(body: dict[str, Any]) -> str:
        seeds.setdefault(number(body), []).append(body["seed"])
        return "The example looks fine to me." if number(body) == 2 else grader({})(body)

    with FakeOpenAIServer(responder=reply) as server:
        result = run(judge_stage(openai(server), on_failure="drop"), [free(1), free(2)])
        kept = run(judge_stage(openai(server), max_attempts=2), [free(2)])
    assert len(seeds[2]) == 3 + 2 and len(set(seeds[2][:3])) == 3 and len(seeds[1]) == 1
    [reject] = result.rejects
    assert (reject.reason, reject.detail) == ("judge_failed", "response: invalid_json")
    assert json.loads(reject.item)["scores"] == {}
    assert result.counters["retried"] == 2 and result.counters["judge_failed"] == 1
    assert result.counters["accepted"] == 1 and result.counters["planned"] == 2
    # the default keeps a record its judge gave no verdict on; the request is a failure
    assert [r.question for r in kept.items] == [free(2).question] and kept.items[0].scores == {}
    assert kept.counters["retried"] == 1 and kept.counters["judge_failed"] == 1
    assert kept.counters["kept_ungraded"] == 1 and kept.rejects == []
    [failure] = kept.failures
    assert (failure.reason, failure.stage) == ("unparsable", "llm_judge")
    assert failure.detail == f"{free(2).task}: response: invalid_json"
    assert json.loads(failure.item) == {"about": free(2).id,
                                        "response": "The example looks fine to me."}


def test_a_rerun_on_the_same_cache_makes_no_request(tmp_path: Path) -> None:
    reply = grader({2: {"clarity": 1}}, picks={3: 1})
    batch = [free(1), free(2), mc(3)]
    with FakeOpenAIServer(responder=reply) as server:
        first = run(judge_stage(openai(server, tmp_path / "cache")), batch)
        sent = server.count
        again = [Record.from_dict({**r.to_dict(), "scores": {}}) for r in batch]
        second = run(judge_stage(openai(server, tmp_path / "cache")), again)
        assert server.count == sent == 3
    assert first.counters["teacher_calls"] == 3 and first.counters["cache_hits"] == 0
    assert second.counters["teacher_calls"] == 0 and second.counters["cache_hits"] == 3
    assert [r.id for r in second.items] == [r.id for r in first.items]
    assert [(r.reason, r.item) for r in second.rejects] == [
        (r.reason, r.item) for r in first.rejects]
    assert list((tmp_path / "cache").glob("*.jsonl"))


def test_a_threshold_for_an_unknown_criterion_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(
        "name: demo\nfamily: demo\nformat: free_form\nlicense: MIT\n"
        "source: {dataset: demo/demo}\nscored_split: test\n"
        "train: {split: train, files: [demo.jsonl], mapping: {question: q, answer: a}}\n")
    path = tmp_path / "pipe.yaml"
    path.write_text(
        "name: demo\nrun_dir: run\nseeds_root: .\ntasks: [demo.yaml]\n"
        "models: {judge: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: j}}\n"
        "stages:\n  - name: seeds\n  - name: normalize\n  - name: heuristics\n"
        "  - {name: llm_judge, thresholds: {clarity: 4, fluency: 3}}\n")
    with pytest.raises(ConfigError) as info:
        build_stages(load_config(path))
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"{path}: stages[3]: thresholds name criteria the rubric 'default' "
                       "lacks: fluency")


def test_judge_params_are_validated() -> None:
    with pytest.raises(TaskseedError, match="rubric 'strict' not found"):
        judge_stage(EmbeddedConfig(model="smollm2"), rubric="strict")
    with pytest.raises(ValueError, match="on_failure"):
        JudgeParams(on_failure="retry")  # type: ignore[arg-type]


def test_a_threshold_outside_the_score_range_is_refused() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        JudgeParams(thresholds={"clarity": 9})


def test_an_unreachable_judge_server_is_named_as_the_judge() -> None:
    cfg = OpenAIConfig(base_url="http://127.0.0.1:9/v1", model="j", timeout_s=2)
    with pytest.raises(TaskseedError) as info:
        judge_stage(cfg).check_ready()
    assert "teacher" not in str(info.value)


# --- self-consistency -----------------------------------------------------------------------

def voter(picks: dict[int, list[int]]) -> Any:
    """Votes for record N: the letters of the option positions in `picks[N]` in turn
    (default 0); yes/no records get `yes`."""
    seen: Counter[int] = Counter()

    def reply(body: dict[str, Any]) -> str:
        n = number(body)
        if schema_of(body)["properties"]["answer"].get("enum", [""])[0] == "A":
            options = picks.get(n, [0])
            vote = options[seen[n] % len(options)]
            seen[n] += 1
            return json.dumps({"answer": LETTERS[vote]})
        return json.dumps({"answer": "yes"})
    return reply


def test_self_consistency_asks_k_times_per_option_and_yes_no_record() -> None:
    long_answer = "The seventh planet from the sun is named after a god of the sky."
    batch = [mc(1, "whale"), rec("Is the planet number 5 a gas giant?", "yes", "yes_no"),
             rec("What is the name of the planet number 7 from the sun?", long_answer)]
    with FakeOpenAIServer(responder=voter({})) as server:
        result = run(consistency_stage(openai(server), samples=4), batch)
    by_record = Counter(number(r.body) for r in server.requests)
    assert by_record == {1: 4, 5: 4}
    for n in (1, 5):
        assert len({r.body["seed"] for r in server.requests if number(r.body) == n}) == 4
    mc_request = next(r.body for r in server.requests if number(r.body) == 1)
    assert "Answer" not in user_text(mc_request).replace('Answer with "answer"', "")
    assert schema_of(mc_request)["properties"]["answer"]["enum"] == ["A", "B", "C"]
    assert result.items == batch and result.rejects == []
    assert result.counters["not_applicable"] == 1
    assert result.counters["planned"] == 8 and result.counters["accepted"] == 8
    assert batch[0].scores == {"consistency.agreement": 1.0}
    assert batch[1].scores == {"consistency.agreement": 1.0} and batch[2].scores == {}


def solver(answers: dict[int, list[str]]) -> Any:
    """Math and short-answer votes for record N: the answers in `answers[N]` in turn."""
    seen: Counter[int] = Counter()

    def reply(body: dict[str, Any]) -> str:
        n = number(body)
        vote = answers[n][seen[n] % len(answers[n])]
        seen[n] += 1
        if "reasoning" in schema_of(body)["required"]:
            return json.dumps({"reasoning": "Work it out step by step.", "answer": vote})
        return json.dumps({"answer": vote})
    return reply


def test_math_and_short_answers_are_worked_out_and_voted_on() -> None:
    right = rec("A farmer has 12 rows of 15 plants and adds 5 to each row; number 1 asks "
                "how many plants there are.", "240", "math")
    wrong = rec("Farm number 2: 12 rows of 15 plants, 5 more per row; how many plants?", "120",
                "math")
    capital = rec("What is the capital of country number 3?", "Paris")
    largest = rec("What is the largest country number 4 in the world?", "China")
    answers = {1: ["240", "240.0", "230"], 2: ["240", "240", "120"],
               3: ["paris.", "The Paris", "Lyon"], 4: ["Russia", "Russia", "China"]}
    with FakeOpenAIServer(responder=solver(answers)) as server:
        result = run(consistency_stage(openai(server), samples=3), [right, wrong, capital,
                                                                    largest])
    math_request = next(r.body for r in server.requests if number(r.body) == 1)
    assert schema_of(math_request)["required"] == ["reasoning", "answer"]
    assert "step by step" in user_text(math_request) and "240" not in user_text(math_request)
    assert math_request["max_tokens"] == 320
    assert result.items == [right, capital]
    assert right.scores == {"consistency.agreement": 0.6667}
    assert {r.reason for r in result.rejects} == {"inconsistent_answer"}
    assert sorted(r.detail for r in result.rejects) == [
        "the key got 1 of 3 votes; most: 240", "the key got 1 of 3 votes; most: russia"]


def test_a_key_that_does_not_win_the_vote_is_dropped() -> None:
    lost, tied_out, majority = mc(1, "shark"), mc(2, "whale"), mc(3, "trout")
    picks = {1: [0, 0, 1], 2: [0, 1, 1], 3: [2, 2, 0]}
    no = rec("Is the planet number 4 made of cheese?", "no", "yes_no")
    with FakeOpenAIServer(responder=voter(picks)) as server:
        result = run(consistency_stage(openai(server), samples=3),
                     [lost, tied_out, majority, no])
    assert server.count == 12
    assert result.items == [majority] and majority.scores["consistency.agreement"] == 0.6667
    drops = rejected(result)
    assert {q: r.reason for q, r in drops.items()} == {
        lost.question: "inconsistent_answer", tied_out.question: "inconsistent_answer",
        no.question: "inconsistent_answer"}
    assert drops[lost.question].detail == "the key got 1 of 3 votes; most: A. whale"
    assert drops[no.question].detail == "the key got 0 of 3 votes; most: yes"
    for record, share in ((lost, 0.3333), (tied_out, 0.3333), (no, 0.0)):
        scores = json.loads(drops[record.question].item)["scores"]
        assert scores == {"consistency.agreement": share}


def test_min_agreement_is_the_share_the_key_needs() -> None:
    record = mc(1, "whale")
    with FakeOpenAIServer(responder=voter({1: [0, 1, 2, 0]})) as server:
        kept = run(consistency_stage(openai(server), samples=4, min_agreement=0.5), [record])
        dropped = run(consistency_stage(openai(server), samples=4, min_agreement=0.75),
                      [mc(1, "whale")])
    assert kept.items == [record] and record.scores["consistency.agreement"] == 0.5
    assert [r.reason for r in dropped.rejects] == ["inconsistent_answer"]


def test_votes_that_stay_unusable_keep_the_record_ungraded_or_drop_it() -> None:
    with FakeOpenAIServer(responder=lambda body: '{"answer": "Z"}') as server:
        kept = run(consistency_stage(openai(server), samples=2), [mc(1)])
        result = run(consistency_stage(openai(server), samples=2, on_failure="drop"), [mc(1)])
    assert server.count == 12  # two votes, each asked three times (the default max_attempts)
    assert kept.items == [mc(1)] and kept.counters["kept_ungraded"] == 1
    assert [f.reason for f in kept.failures] == ["schema_mismatch"] * 2
    assert [r.reason for r in result.rejects] == ["no_votes"]
    assert result.counters["retried"] == 4 and result.counters["accepted"] == 0


def test_a_judge_outage_names_the_judge_not_the_teacher() -> None:
    with FakeOpenAIServer(responder=grader({}), faults=[Fault("503", times=100)]) as server, \
            pytest.raises(TaskseedError) as info:
        run(judge_stage(openai(server)), [free(1)])
    message = str(info.value)
    assert "1 of 1 requests got no answer from the judge" in message
    assert f"{server.base_url} (model fake-judge): http_503" in message


# --- the real embedded model ----------------------------------------------------------------

@pytest.mark.slow
def test_the_cascade_on_the_embedded_model() -> None:
    batch = [rec("What is the largest planet in the solar system?",
                 "Jupiter, the fifth planet from the sun, is the largest of them."),
             rec("Which animal is a mammal?", "whale", "multiple_choice",
                 choices=list(OPTIONS))]
    heuristics = HeuristicsStage(HeuristicParams()).process(batch, 0)
    assert heuristics.items == batch

    votes = run(consistency_stage(EmbeddedConfig(model="smollm2"), samples=2), heuristics.items)
    counters = votes.counters
    assert counters["planned"] == 2 and counters["not_applicable"] == 1
    assert counters["teacher_calls"] == 2 + counters["retried"]
    assert batch[1].scores["consistency.agreement"] in (0.0, 0.5, 1.0)
    assert batch[0] in votes.items and "consistency.agreement" not in batch[0].scores

    result = run(judge_stage(EmbeddedConfig(model="smollm2")), votes.items)
    counters = result.counters
    assert counters["planned"] == len(votes.items)
    assert counters["teacher_calls"] == len(votes.items) + counters["retried"]
    assert counters["accepted"] == len(votes.items) and counters["judge_failed"] == 0
    judged = [*result.items, *(Record.from_dict(json.loads(r.item)) for r in result.rejects)]
    assert sorted(r.id for r in judged) == sorted(r.id for r in votes.items)
    for record in judged:
        scores = {k: v for k, v in record.scores.items() if k.startswith("judge.")}
        scores.pop("judge.agrees", None)
        assert set(scores) == {f"judge.{n}" for n in CRITERIA}
        assert all(v in (1.0, 2.0, 3.0, 4.0, 5.0) for v in scores.values())


def test_an_enrichment_that_names_the_task_id_is_meta_text() -> None:
    record = rec("I ate a big lunch, and I was ...", "full", "completion",
                 choices=["still hungry", "full"],
                 knowledge="The quickstart_completion task involves answering questions.")
    record = dataclasses.replace(record, task="quickstart_completion")
    result = HeuristicsStage(HeuristicParams()).process([record], 0)
    assert [(r.reason, r.detail) for r in result.rejects] == [
        ("meta_text", "knowledge: names the task id 'quickstart_completion'")]
