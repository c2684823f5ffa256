"""TensorRTLLMTeacher on CPU: the import guard, sampling arguments and output mapping.

The LLM API is stood in for by plain objects with the documented attributes
(`RequestOutput.outputs[0].text/.finish_reason/.token_ids`, `prompt_token_ids`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Sampling
from taskseed.generation.backends import make_teacher
from taskseed.generation.teacher import TeacherRequest
from taskseed.generation.trtllm_teacher import (
    MISSING_EXTRA,
    TensorRTLLMConfig,
    TensorRTLLMTeacher,
    run_batch,
    sampling_kwargs,
    to_response,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1}},
    "required": ["answer"],
    "additionalProperties": False,
}


@dataclass
class Guided:
    json: Any = None


@dataclass
class Params:
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, **kwargs: Any) -> Params:
        return cls(kwargs)


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


class FakeLLM:
    """Answers each prompt with a JSON echo; a prompt with TOO_LONG fails its whole call."""

    def __init__(self) -> None:
        self.tokenizer = Tokenizer()
        self.calls: list[tuple[list[str], list[Params]]] = []
        self.shut = False

    def generate(self, prompts: list[str], sampling_params: list[Params],
                 use_tqdm: bool = True) -> list[SimpleNamespace]:
        assert use_tqdm is False and len(prompts) == len(sampling_params)
        self.calls.append((prompts, sampling_params))
        if any("TOO_LONG" in p for p in prompts):
            raise ValueError("prompt length exceeds max_seq_len\nmore detail")
        outs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            if params.kwargs["max_tokens"] < 8:
                outs.append(output('{"answer": "tru', "length", tokens=params.kwargs["max_tokens"]))
            else:
                outs.append(output(json.dumps({"answer": prompt[-20:]}), "stop",
                                   prompt_tokens=len(prompt)))
        return outs

    def shutdown(self) -> None:
        self.shut = True


def request(text: str, temperature: float = 0.7, seed: int | None = 11,
            schema: dict[str, Any] | None = SCHEMA, max_tokens: int = 64) -> TeacherRequest:
    return TeacherRequest(
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": text}],
        sampling=Sampling(temperature, 0.9, max_tokens, seed),
        json_schema=schema,
    )


def test_import_guard_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    with pytest.raises(TaskseedError) as info:
        TensorRTLLMTeacher("some/model")
    assert str(info.value) == MISSING_EXTRA
    assert "pip install 'taskseed[trtllm]'" in str(info.value)
    with pytest.raises(TaskseedError, match="trtllm extra"):
        make_teacher(TensorRTLLMConfig(model="some/model"))


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


def test_generate_batches_in_order_with_per_request_params() -> None:
    llm = FakeLLM()
    teacher = TensorRTLLMTeacher.wrap(llm, "fake-model", Params.make, Guided)
    requests = [request("first", seed=1), request("second", temperature=0, seed=2),
                request("third", schema=None, max_tokens=4)]
    seen: list[int] = []
    responses = teacher.generate(requests, on_response=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2]
    assert len(llm.calls) == 1
    prompts, params = llm.calls[0]
    assert prompts[0] == "<system>sys<user>first<assistant>"
    assert [p.kwargs.get("seed") for p in params] == [1, 2, 11]
    assert params[1].kwargs["top_k"] == 1 and "temperature" not in params[1].kwargs
    assert params[0].kwargs["guided_decoding"] == Guided(json=SCHEMA)
    assert "guided_decoding" not in params[2].kwargs
    assert json.loads(responses[0].text)["answer"].endswith("first<assistant>")
    assert json.loads(responses[1].text)["answer"].endswith("second<assistant>")
    assert responses[2].finish_reason == "length" and responses[2].usage.completion_tokens == 4
    assert teacher.requests_sent == 3
    assert teacher.completion_tokens == sum(r.usage.completion_tokens for r in responses)
    assert teacher.generate([]) == []
    teacher.close()
    assert llm.shut


def test_one_bad_request_does_not_fail_the_batch() -> None:
    llm = FakeLLM()
    teacher = TensorRTLLMTeacher.wrap(llm, "fake-model", Params.make, Guided)
    bad_template = TeacherRequest(messages=[{"role": "tool", "content": "x"}])
    responses = teacher.generate([request("a"), request("TOO_LONG"), bad_template, request("b")])
    assert [r.ok for r in responses] == [True, False, False, True]
    assert responses[1].error == "rejected: prompt length exceeds max_seq_len"
    assert responses[2].error is not None and "chat template" in responses[2].error
    assert json.loads(responses[3].text)["answer"].endswith("<user>b<assistant>")
    assert [len(p) for p, _ in llm.calls] == [3, 1, 1, 1]


def test_run_batch_with_nothing_to_send() -> None:
    def never(prompts: list[str], params: list[Any]) -> list[Any]:
        raise AssertionError("generate must not be called")

    [response] = run_batch(never, [None], [None], [None], ["rejected: chat template"])
    assert response.error == "rejected: chat template"
