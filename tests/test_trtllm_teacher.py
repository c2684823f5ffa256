"""TensorRTLLMTeacher on CPU: the import guard, sampling arguments and output mapping.

The LLM API is stood in for by plain objects with the documented attributes
(`LLM.generate_async(prompt, sampling_params=...)` returning a future whose `result()` is a
`RequestOutput` with `outputs[0].text/.finish_reason/.token_ids` and `prompt_token_ids`).
`SamplingParams` and `GuidedDecodingParams` are keyword-only dataclasses, as in
`tensorrt_llm/sampling_params.py`, so an unknown field is a TypeError here as it is there.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Sampling
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.catalog import make_teacher
from taskseed.generation.backends.tensorrt_llm import (
    MISSING_EXTRA,
    SINGLE_PROCESS_ENV,
    TensorRTLLMConfig,
    TensorRTLLMTeacher,
    collect,
    sampling_kwargs,
    to_response,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1}},
    "required": ["answer"],
    "additionalProperties": False,
}


@dataclass(slots=True, kw_only=True)
class Guided:
    json: Any = None
    regex: str | None = None
    grammar: str | None = None
    json_object: bool = False
    structural_tag: str | None = None


@dataclass(slots=True, kw_only=True)
class Params:
    """The fields of TensorRT-LLM's SamplingParams that taskseed may set."""

    end_id: int | None = None
    max_tokens: int = 32
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    temperature: float | None = None
    return_context_logits: bool = False
    guided_decoding: Guided | None = None
    add_special_tokens: bool = True


def output(text: str, finish: str | None = "stop", prompt_tokens: int = 5,
           tokens: int = 3) -> SimpleNamespace:
    completion = SimpleNamespace(text=text, finish_reason=finish, token_ids=list(range(tokens)))
    return SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(prompt_tokens)))


class Tokenizer:
    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool,
                            add_generation_prompt: bool) -> str:
        assert tokenize is False and add_generation_prompt is True
        if any(m["role"] == "tool" for m in messages):
            raise ValueError("roles must alternate")
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


@dataclass
class Future:
    value: Any = None
    error: Exception | None = None

    def result(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class FakeLLM:
    """Answers each prompt with a JSON echo; TOO_LONG is refused when it is submitted (as
    `_check_arguments` does) and CRASH fails in its own future."""

    def __init__(self) -> None:
        self.tokenizer = Tokenizer()
        self.submitted: list[tuple[str, Params]] = []
        self.shut = False

    def generate_async(self, prompt: str, sampling_params: Params) -> Future:
        assert isinstance(sampling_params, Params)
        if "TOO_LONG" in prompt:
            raise ValueError("prompt length exceeds max_seq_len\nmore detail")
        self.submitted.append((prompt, sampling_params))
        if "CRASH" in prompt:
            return Future(error=RuntimeError("executor failed this request"))
        if sampling_params.max_tokens < 8:
            cut = output('{"answer": "tru', "length", tokens=sampling_params.max_tokens)
            return Future(cut)
        return Future(output(json.dumps({"answer": prompt[-20:]}), "stop",
                             prompt_tokens=len(prompt)))

    def shutdown(self) -> None:
        self.shut = True


def request(text: str, temperature: float = 0.7, seed: int | None = 11,
            schema: dict[str, Any] | None = SCHEMA, max_tokens: int = 64) -> TeacherRequest:
    return TeacherRequest(
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": text}],
        sampling=Sampling(temperature, 0.9, max_tokens, seed),
        json_schema=schema,
    )


def test_import_guard_says_how_to_get_tensorrt_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    monkeypatch.delenv(SINGLE_PROCESS_ENV, raising=False)
    with pytest.raises(TaskseedError) as info:
        TensorRTLLMTeacher("some/model")
    assert str(info.value) == MISSING_EXTRA
    assert "container" in str(info.value) and "Python 3.12" in str(info.value)
    with pytest.raises(TaskseedError, match="NVIDIA's TensorRT-LLM container"):
        make_teacher(TensorRTLLMConfig(model="some/model"))
    assert os.environ[SINGLE_PROCESS_ENV] == "1"  # one GPU: no MPI worker in a Dask worker


def test_stand_ins_reject_unknown_fields_like_the_real_classes() -> None:
    with pytest.raises(TypeError):
        Params(max_new_tokens=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Guided({"type": "object"})  # type: ignore[misc]
    for req in (request("q"), request("q", temperature=0, seed=None, schema=None)):
        Params(**sampling_kwargs(req, Guided))


def test_sampling_kwargs_per_request() -> None:
    kwargs = sampling_kwargs(request("q", temperature=0.7, seed=11), Guided)
    assert kwargs == {"max_tokens": 64, "add_special_tokens": False, "temperature": 0.7,
                      "top_p": 0.9, "seed": 11, "guided_decoding": Guided(json=SCHEMA)}
    greedy = sampling_kwargs(request("q", temperature=0.0, seed=None, schema=None), Guided)
    assert greedy == {"max_tokens": 64, "add_special_tokens": False, "top_k": 1}
    assert "guided_decoding" not in sampling_kwargs(request("q"), None)


def test_to_response_maps_finish_reason_usage_and_schema() -> None:
    ok = to_response(output('{"answer": "x"}', "stop", 7, 4), SCHEMA)
    assert ok.ok and ok.text == '{"answer": "x"}' and ok.finish_reason == "stop"
    assert (ok.usage.prompt_tokens, ok.usage.completion_tokens) == (7, 4)
    assert to_response(output("free text", None), None).finish_reason == "stop"
    cut = to_response(output('{"answer": "x', "length"), SCHEMA)
    assert cut.ok and cut.finish_reason == "length"
    timeout = to_response(output("", "timeout"), SCHEMA)
    assert timeout.error == "timeout" and not timeout.ok
    assert to_response(output("not json"), SCHEMA).error == "invalid_json"
    assert to_response(output('{"other": 1}'), SCHEMA).error == "schema_mismatch"


def test_each_prompt_is_submitted_with_its_own_params() -> None:
    llm = FakeLLM()
    teacher = TensorRTLLMTeacher.wrap(llm, "fake-model", Params, Guided)
    requests = [request("first", seed=1), request("second", temperature=0, seed=2),
                request("third", schema=None, max_tokens=4)]
    seen: list[int] = []
    responses = teacher.generate(requests, on_response=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2]
    prompts = [p for p, _ in llm.submitted]
    params = [p for _, p in llm.submitted]
    assert prompts[0] == "<system>sys<user>first<assistant>"
    assert [p.seed for p in params] == [1, 2, 11]
    assert params[1].top_k == 1 and params[1].temperature is None
    assert params[0].guided_decoding == Guided(json=SCHEMA)
    assert params[2].guided_decoding is None and params[0].add_special_tokens is False
    assert json.loads(responses[0].text)["answer"].endswith("first<assistant>")
    assert json.loads(responses[1].text)["answer"].endswith("second<assistant>")
    assert responses[2].finish_reason == "length" and responses[2].usage.completion_tokens == 4
    assert teacher.requests_sent == 3
    assert teacher.completion_tokens == sum(r.usage.completion_tokens for r in responses)
    assert teacher.generate([]) == []
    teacher.close()
    assert llm.shut


def test_one_bad_request_fails_alone_and_nothing_is_resent() -> None:
    llm = FakeLLM()
    teacher = TensorRTLLMTeacher.wrap(llm, "fake-model", Params, Guided)
    bad_template = TeacherRequest(messages=[{"role": "tool", "content": "x"}])
    responses = teacher.generate([request("a"), request("TOO_LONG"), bad_template,
                                  request("CRASH"), request("b")])
    assert [r.ok for r in responses] == [True, False, False, False, True]
    assert responses[1].error == "rejected: prompt length exceeds max_seq_len"
    assert responses[2].error is not None and "chat template" in responses[2].error
    assert responses[3].error == "rejected: executor failed this request"
    assert json.loads(responses[4].text)["answer"].endswith("<user>b<assistant>")
    assert len(llm.submitted) == 3  # a, CRASH and b: each submitted once


def test_collect_with_nothing_to_submit() -> None:
    def never(prompt: str, params: Any) -> Any:
        raise AssertionError("nothing may be submitted")

    [response] = collect(never, [None], [None], [None], ["rejected: chat template"])
    assert response.error == "rejected: chat template"
