"""The reward filter against the loopback FakeOpenAIServer: real HTTP, real records, faults."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Format, Record, Source
from taskseed.curation.stage import BuildContext, StageResult
from taskseed.generation.backends.catalog import RewardConfig
from taskseed.generation.backends.openai import OpenAIConfig
from taskseed.generation.backends.reward import (
    MISSING_TRTLLM,
    NIMRewardConfig,
    TensorRTLLMRewardConfig,
    TensorRTLLMRewardModel,
    VLLMRewardConfig,
    nim_scores,
    parse_pairs,
    pooled_values,
    reward_request,
)
from taskseed.generation.servers.fake import FakeOpenAIServer, Fault
from taskseed.judges.filters.reward import (
    NEMOTRON_WEIGHTS,
    RewardParams,
    RewardStage,
    RewardUnavailable,
    reward_answer,
    reward_question,
)

KEY_ENV = "TASKSEED_TEST_REWARD_KEY"
SECRET = "nvapi-test-4b1d93c7e0a2-do-not-log"
GOOD = {"helpfulness": 3.5, "correctness": 3.75, "coherence": 3.875, "complexity": 1.25,
        "verbosity": 1.0}
BAD = {**GOOD, "correctness": 0.5}


def rec(i: int = 0, answer: str = "whale", **over: Any) -> Record:
    fields: dict[str, Any] = dict(
        task="t", family="f", format=Format.MULTIPLE_CHOICE,
        question=f"Which animal number {i} is a mammal?", choices=["whale", "shark", "trout"],
        answer=answer, license="MIT", source=Source("d", row=i))
    fields.update(over)
    return Record(**fields)


def by_answer(question: str, answer: str) -> dict[str, float]:
    """GOOD scores, except BAD for answers ending in `shark`."""
    return dict(BAD if answer.endswith("shark") else GOOD)


def nim(server: FakeOpenAIServer, **over: Any) -> NIMRewardConfig:
    fields: dict[str, Any] = {"base_url": server.base_url, "model": "fake-reward",
                              "api_key_env": KEY_ENV, "max_retries": 3, "timeout_s": 5}
    fields.update(over)
    return NIMRewardConfig(**fields)


def stage(backend: Any, run_dir: Path, **params: Any) -> RewardStage:
    context = BuildContext(specs={}, seeds_root=run_dir, run_dir=run_dir,
                           models={"reward": backend})
    return RewardStage.build(RewardParams(**params), context)


def run(reward: RewardStage, batch: list[Record], shard: int = 0) -> StageResult:
    try:
        return reward.process_shard(batch, shard)
    finally:
        reward.teardown()


def weighted(scores: dict[str, float]) -> float:
    return round(sum(w * scores[k] for k, w in NEMOTRON_WEIGHTS.items()), 6)


# --- NIM reward endpoints ------------------------------------------------------------------


def test_nim_scores_from_content(tmp_path: Path) -> None:
    batch = [rec(0), rec(1, context="Sea animals.", reasoning="Whales breathe air.")]
    with FakeOpenAIServer(reward_fn=by_answer) as server:
        result = run(stage(nim(server), tmp_path), batch)
    assert result.items == batch and not result.rejects
    for record in batch:
        assert record.scores == {**{f"reward.{k}": v for k, v in GOOD.items()},
                                 "reward.score": weighted(GOOD)}
    bodies = sorted((r.body for r in server.requests), key=lambda b: "Sea" in str(b))
    assert bodies[0] == {"model": "fake-reward", "messages": [
        {"role": "user", "content": "Which animal number 0 is a mammal?\n\n"
                                    "A) whale\nB) shark\nC) trout"},
        {"role": "assistant", "content": "whale"}]}
    assert bodies[1]["messages"][0]["content"].startswith("Sea animals.\n\nWhich animal number 1")
    assert bodies[1]["messages"][1]["content"] == "Whales breathe air.\n\nwhale"
    assert all(r.path == "/v1/chat/completions" for r in server.requests)
    counters = result.counters
    assert (counters["teacher_calls"], counters["reward_cached"]) == (2, 0)
    assert (counters["planned"], counters["accepted"]) == (2, 2)


def test_nim_scores_from_logprobs(tmp_path: Path) -> None:
    with FakeOpenAIServer(reward_fn=by_answer, reward_in_content=False) as server:
        reward = stage(nim(server, logprobs=True), tmp_path, thresholds={"correctness": 2})
        result = run(reward, [rec(0), rec(1, "shark")])
    assert server.requests[0].body["logprobs"] is True
    assert [r.scores["reward.correctness"] for r in result.items] == [3.75]
    [reject] = result.rejects
    assert json.loads(reject.item)["scores"]["reward.correctness"] == 0.5


def test_reply_parsing_tolerates_layout() -> None:
    assert parse_pairs(" helpfulness: 1.6,\ncorrectness :1.8 ;coherence=3\n") == {
        "helpfulness": 1.6, "correctness": 1.8, "coherence": 3.0}
    assert parse_pairs("reward:-25.5") == {"reward": -25.5}
    with pytest.raises(ValueError, match="not a name:score pair"):
        parse_pairs("helpfulness:1.6, this is great")
    entries = [{"token": "helpfulness", "logprob": 1.6171875}, {"token": "verbosity",
                                                                "logprob": 0.515625}]
    reply = {"choices": [{"message": {"content": None}, "logprobs": {"content": entries}}]}
    assert nim_scores(reply) == {"helpfulness": 1.6171875, "verbosity": 0.515625}
    assert pooled_values({"data": [[0.1], [0.2], [-1.5]]}) == [-1.5]
    assert pooled_values({"data": [0.3, 0.7]}) == [0.3, 0.7]
    assert pooled_values({"data": [0.3, 0.7]}, per_token=True) == [0.7]
    assert pooled_values({"probs": [2.0]}) == [2.0]


@pytest.mark.parametrize("on_failure", ["keep", "drop"])
def test_an_unreadable_reply_is_a_failure_of_its_record_only(tmp_path: Path,
                                                              on_failure: str) -> None:
    def plan(index: int, body: dict[str, Any]) -> Fault | None:
        return Fault("wrong_schema") if "number 1 " in body["messages"][0]["content"] else None

    with FakeOpenAIServer(fault_plan=plan) as server:
        result = run(stage(nim(server), tmp_path, on_failure=on_failure),
                     [rec(0), rec(1), rec(2)])
    [failure] = result.failures
    assert failure.reason == "reward_unscored" and failure.stage == "reward"
    assert failure.detail.startswith("unparsable: not a name:score pair: 'I would rate")
    assert json.loads(failure.item)["about"] == rec(1).id
    if on_failure == "keep":  # the default: never dropped for want of a score
        assert [r.source.row for r in result.items] == [0, 1, 2] and result.rejects == []
        assert "reward.score" not in result.items[1].scores
        assert result.counters["kept_ungraded"] == 1
    else:
        assert [r.source.row for r in result.items] == [0, 2]
        [reject] = result.rejects
        assert reject.reason == "reward_unscored" and reject.detail == failure.detail
    assert server.count == 5  # an unreadable reply is asked again, three tries in all
    assert result.counters["retried"] == 2
    assert (result.counters["planned"], result.counters["accepted"]) == (3, 2)


# --- vLLM's pooling API --------------------------------------------------------------------


def single(question: str, answer: str) -> dict[str, float]:
    return {"reward": -2.0 if answer.endswith("shark") else 1.25}


def test_vllm_pooling_single_score(tmp_path: Path) -> None:
    with FakeOpenAIServer(reward_fn=single) as server:
        backend = VLLMRewardConfig(base_url=server.base_url, model="rm",
                                   task="token_classify", api_key_env=KEY_ENV)
        reward = stage(backend, tmp_path, weights={"reward": 1.0}, min_score=0.0)
        result = run(reward, [rec(0), rec(1, "shark")])
    [kept] = result.items
    assert kept.scores == {"reward.reward": 1.25, "reward.score": 1.25}
    [reject] = result.rejects
    assert (reject.reason, reject.detail) == ("low_reward", "score -2 is below min_score 0")
    assert json.loads(reject.item)["scores"] == {"reward.reward": -2.0, "reward.score": -2.0}
    [request] = [r for r in server.requests if r.body["messages"][1]["content"] == "whale"]
    assert request.path == "/pooling"
    assert request.body == {"model": "rm", "task": "token_classify", "messages": [
        {"role": "user", "content": reward_question(rec(0))},
        {"role": "assistant", "content": "whale"}]}


def test_vllm_classify_with_named_labels(tmp_path: Path) -> None:
    with FakeOpenAIServer(reward_fn=lambda q, a: {"bad": 0.2, "good": 0.8}) as server:
        backend = VLLMRewardConfig(base_url=server.root_url, model="rm", endpoint="classify",
                                   score_names=["bad", "good"], use_activation=False)
        result = run(stage(backend, tmp_path, weights={"good": 1.0, "bad": -1.0}), [rec(0)])
    assert result.items[0].scores == {"reward.bad": 0.2, "reward.good": 0.8, "reward.score": 0.6}
    assert server.requests[0].path == "/classify"
    assert server.requests[0].body["use_activation"] is False


def test_vllm_value_count_mismatch_is_unscored(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:  # the default scores have five values
        backend = VLLMRewardConfig(base_url=server.root_url, model="rm")
        result = run(stage(backend, tmp_path, weights={"reward": 1.0}), [rec(0)])
    [failure] = result.failures
    assert failure.reason == "reward_unscored" and result.items == [rec(0)]
    assert "gave 5 values for 1 score names (reward)" in failure.detail


# --- weights and thresholds ----------------------------------------------------------------


def test_thresholds_drop_low_records_and_keep_their_scores(tmp_path: Path) -> None:
    batch = [rec(0), rec(1, "shark"), rec(2)]
    with FakeOpenAIServer(reward_fn=by_answer) as server:
        reward = stage(nim(server), tmp_path, thresholds={"correctness": 2.0})
        result = run(reward, batch)
    assert [r.source.row for r in result.items] == [0, 2]
    [reject] = result.rejects
    assert (reject.reason, reject.item_id) == ("low_reward", batch[1].id)
    assert reject.detail == "correctness 0.5 is below its threshold 2"
    kept = json.loads(reject.item)["scores"]
    assert kept["reward.correctness"] == 0.5 and kept["reward.score"] == weighted(BAD)


def test_custom_weights_and_min_score(tmp_path: Path) -> None:
    weights = {"correctness": 1.0, "verbosity": -0.5}
    with FakeOpenAIServer(reward_fn=by_answer) as server:
        reward = stage(nim(server), tmp_path, weights=weights, min_score=1.0)
        result = run(reward, [rec(0), rec(1, "shark")])
    assert result.items[0].scores["reward.score"] == 3.25
    [reject] = result.rejects
    assert reject.detail == "score 0 is below min_score 1"


def test_a_weight_the_reply_lacks_makes_the_record_unscored(tmp_path: Path) -> None:
    with FakeOpenAIServer(reward_fn=lambda q, a: {"helpfulness": 3.0}) as server:
        result = run(stage(nim(server), tmp_path, on_failure="drop"), [rec(0)])
    [reject] = result.rejects
    assert reject.reason == "reward_unscored"
    assert reject.detail.startswith("the reply has no coherence, complexity, correctness")
    assert json.loads(reject.item)["scores"] == {}
    assert [f.detail for f in result.failures] == [reject.detail]


# --- outages, retries and the cache ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_down_mid_run_raises_and_a_rerun_resumes(tmp_path: Path) -> None:
    port = free_port()
    first, rest = [rec(0), rec(1)], [rec(2), rec(3)]
    with FakeOpenAIServer(port=port, reward_fn=by_answer) as server:
        backend = nim(server, max_retries=2)
        assert not run(stage(backend, tmp_path, batch_size=2), first).rejects
    # The server is gone: the cached records need nothing, the others cannot be scored.
    with pytest.raises(RewardUnavailable) as err:
        run(stage(backend, tmp_path, batch_size=2), first + rest)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("stage 'reward' shard 0: 2 of 2 records got no answer from the "
                              f"reward model http://127.0.0.1:{port}/v1 (reward model "
                              "fake-reward): connection")
    assert message.endswith("rerunning the same command resumes")

    with FakeOpenAIServer(port=port, reward_fn=by_answer) as server:
        result = run(stage(backend, tmp_path, batch_size=2), first + rest)
    assert len(result.items) == 4 and server.count == 2
    assert (result.counters["teacher_calls"], result.counters["reward_cached"]) == (2, 2)


def test_an_overloaded_server_raises_with_its_message(tmp_path: Path) -> None:
    def plan(index: int, body: dict[str, Any]) -> Fault | None:
        text = body["messages"][0]["content"]
        return Fault("503", message="model is overloaded") if "number 3" in text else None

    with FakeOpenAIServer(fault_plan=plan, reward_fn=by_answer) as server:
        reward = stage(nim(server, max_retries=2), tmp_path, batch_size=2)
        with pytest.raises(RewardUnavailable, match="1 of 2 records got no answer .*: "
                                                    "http_503: model is overloaded;"):
            run(reward, [rec(i) for i in range(6)])
    assert server.count == 2 + 3  # the stage stops at the failing batch; 503 asked twice


def test_503_with_retry_after_is_retried(tmp_path: Path) -> None:
    faults = [Fault("503", times=2, retry_after=0.3, message="warming up")]
    with FakeOpenAIServer(faults=faults, reward_fn=by_answer) as server:
        start = time.monotonic()
        result = run(stage(nim(server), tmp_path), [rec(0)])
        elapsed = time.monotonic() - start
    assert len(result.items) == 1 and elapsed >= 0.6
    assert [r.fault for r in server.requests] == ["503", "503", None]
    assert result.counters["teacher_calls"] == 1  # one request, sent until answered


def test_the_cache_makes_a_second_run_send_nothing(tmp_path: Path) -> None:
    batch = [rec(0), rec(1), rec(0)]  # the same record twice is sent once
    with FakeOpenAIServer(reward_fn=by_answer) as server:
        backend = nim(server)
        first = run(stage(backend, tmp_path), batch)
        sent = server.count
        again = [rec(0), rec(1), rec(0)]
        second = run(stage(backend, tmp_path), again)
    assert sent == 2 and server.count == 2
    assert first.counters["teacher_calls"] == 2
    assert (second.counters["teacher_calls"], second.counters["reward_cached"]) == (0, 2)
    assert [r.scores for r in second.items] == [r.scores for r in first.items]
    assert list((tmp_path / "cache").glob("reward-00000.jsonl"))


def test_the_cache_is_per_model(tmp_path: Path) -> None:
    with FakeOpenAIServer(reward_fn=by_answer, reward_model="other") as server:
        unread = run(stage(nim(server), tmp_path), [rec(0)])
        scored = run(stage(nim(server, model="other"), tmp_path), [rec(0)])
    # the server scores only "other": the first model's reply is unreadable, so it is asked
    # three times and never cached; the other model's request is not answered from it
    assert server.count == 3 + 1
    assert unread.counters["kept_ungraded"] == 1 and "reward.score" in scored.items[0].scores


# --- configuration, secrets and readiness -----------------------------------------------------


def test_a_missing_api_key_sends_no_header_and_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    fault = Fault("401", times=9, message="Authentication required")
    with FakeOpenAIServer(faults=[fault]) as server, pytest.raises(RewardUnavailable) as err:
        run(stage(nim(server), tmp_path), [rec(0)])
    assert "Authorization" not in server.requests[0].headers and server.count == 1
    message = str(err.value)
    assert (f"http_401: Authentication required (the API key comes from ${KEY_ENV}, which is "
            "not set);") in message


def test_the_api_key_is_sent_and_never_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    faults = [Fault("500", times=2), Fault("403", times=9, message="key refused")]
    with FakeOpenAIServer(faults=faults) as server:
        reward = stage(nim(server), tmp_path)
        reward.setup()
        texts = [repr(reward.model_cfg), reward.fingerprint(), repr(reward._client),
                 repr(vars(reward._client._cached.inner)), str(pickle.dumps(reward))]
        with pytest.raises(RewardUnavailable) as err:
            run(reward, [rec(0)])
    assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    texts += [str(err.value), caplog.text]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    assert "comes from $" + KEY_ENV + ")" in str(err.value)
    assert all(SECRET not in text for text in texts)


def test_probe_reports_an_unreachable_server_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    reward = stage(NIMRewardConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m"), tmp_path)
    with pytest.raises(TaskseedError, match=f"^reward server http://127.0.0.1:{port}/v1 is "
                                            "unreachable: "):
        reward.check_ready()
    with FakeOpenAIServer(port=port) as server:
        reward.check_ready()
        stage(VLLMRewardConfig(base_url=server.root_url, model="m"), tmp_path,
              weights={"reward": 1}).check_ready()
    assert server.requests == []  # probes ask /models, which is not a request


def test_build_errors_name_the_stage(tmp_path: Path) -> None:
    with pytest.raises(TaskseedError, match="^stage 'reward': no model named 'judge' "
                                            r"\(known: reward, teacher\)$"):
        stage(NIMRewardConfig(base_url="http://x/v1", model="m"), tmp_path, model="judge")
    teacher = OpenAIConfig(base_url="http://x/v1", model="m")
    with pytest.raises(TaskseedError, match="^stage 'reward': model 'reward' is a openai "
                                            "backend, not a reward model"):
        stage(teacher, tmp_path)
    with pytest.raises(TaskseedError, match="^stage 'reward': weights and thresholds name "
                                            "coherence, .*gives only: reward; set e.g. "):
        stage(VLLMRewardConfig(base_url="http://x", model="m"), tmp_path)


def test_reward_config_is_a_tagged_union() -> None:
    adapter = TypeAdapter(RewardConfig)
    cfg = adapter.validate_python({"backend": "vllm_reward", "base_url": "http://h:8000/v1",
                                   "model": "m"})
    assert isinstance(cfg, VLLMRewardConfig) and cfg.describe() == (
        "http://h:8000/pooling (reward model m)")
    assert isinstance(adapter.validate_python({"backend": "tensorrt_llm_reward", "model": "m"}),
                      TensorRTLLMRewardConfig)
    with pytest.raises(ValidationError, match="unknown backend"):
        adapter.validate_python({"backend": "nope", "model": "m"})
    with pytest.raises(ValidationError, match="extra"):
        adapter.validate_python({"backend": "nim_reward", "base_url": "u", "model": "m",
                                 "temperature": 0.1})


def test_transport_settings_stay_out_of_the_fingerprint(tmp_path: Path) -> None:
    base = NIMRewardConfig(base_url="http://x/v1", model="m")
    same = base.model_copy(update={"max_concurrency": 3, "timeout_s": 1.0, "logprobs": True})
    other = base.model_copy(update={"model": "n"})
    print_of = [stage(c, tmp_path).fingerprint() for c in (base, same, other)]
    assert print_of[0] == print_of[1] != print_of[2]
    assert stage(base, tmp_path).model_cfg.cache_dir == str((tmp_path / "cache").resolve())


def test_reward_text_shows_options_and_reasoning() -> None:
    record = rec(0, context="Animals.", reasoning="Whales breathe air.")
    assert reward_question(record) == ("Animals.\n\nWhich animal number 0 is a mammal?\n\n"
                                       "A) whale\nB) shark\nC) trout")
    assert reward_answer(record) == "Whales breathe air.\n\nwhale"
    free = rec(1, format=Format.FREE_FORM, choices=[], answer="a whale")
    assert (reward_question(free), reward_answer(free)) == (
        "Which animal number 1 is a mammal?", "a whale")


# --- TensorRT-LLM ----------------------------------------------------------------------------


def test_tensorrt_llm_missing_is_a_one_line_error(tmp_path: Path) -> None:
    try:
        import tensorrt_llm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt_llm is installed here")
    reward = stage(TensorRTLLMRewardConfig(model="nvidia/Llama-3.1-Nemotron-70B-Reward-HF"),
                   tmp_path, weights={"reward": 1.0})
    with pytest.raises(TaskseedError) as err:
        reward.setup()
    assert str(err.value) == MISSING_TRTLLM and "\n" not in MISSING_TRTLLM


@dataclass(slots=True, kw_only=True)
class Params:
    """The fields of TensorRT-LLM's SamplingParams the reward backend sets."""

    max_tokens: int = 32
    return_context_logits: bool = False
    add_special_tokens: bool = True


class Future:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class StandInLLM:
    """`LLM` as the reward backend uses it: a tokenizer's chat template and `generate_async`
    whose output has `context_logits` ([positions, vocab]) and `prompt_token_ids`."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.tokenizer = SimpleNamespace(apply_chat_template=self.template)

    def template(self, messages: list[dict[str, str]], tokenize: bool,
                 add_generation_prompt: bool) -> str:
        assert tokenize is False and add_generation_prompt is False
        return "".join(f"<{m['role']}>{m['content']}" for m in messages)

    def generate_async(self, prompt: str, sampling_params: Params) -> Future:
        assert sampling_params == Params(max_tokens=1, return_context_logits=True,
                                         add_special_tokens=False)
        self.prompts.append(prompt)
        if "boom" in prompt:
            return Future(RuntimeError("CUDA error: an illegal memory access"))
        last = [float(len(prompt)), -1.0, 2.5]
        return Future(SimpleNamespace(context_logits=[[0.0, 0.0, 0.0], last],
                                      prompt_token_ids=list(range(7))))


def test_tensorrt_llm_scores_the_last_position_logit() -> None:
    llm = StandInLLM()
    scorer = TensorRTLLMRewardModel.wrap(llm, "rm", Params)
    good, bad = reward_request("q", "a"), reward_request("q", "boom")
    responses = scorer.generate([good, bad])
    assert json.loads(responses[0].text) == {"reward": float(len("<user>q<assistant>a"))}
    assert responses[0].usage.prompt_tokens == 7
    assert (responses[1].error, responses[1].fatal) == ("rejected", False)
    assert "illegal memory access" in responses[1].detail
    picked = TensorRTLLMRewardModel.wrap(StandInLLM(), "rm", Params, "head", logit_index=2)
    assert json.loads(picked.generate([good])[0].text) == {"head": 2.5}
