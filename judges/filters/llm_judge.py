"""LLM-as-a-judge: a rubric scored as JSON per record by a named model.

The judge sees the record and up to `seed_examples` of the seeds it came from (task
alignment is judged against them). For records with options it is not shown the key: it
names the option it believes correct, and a disagreement is the reason `judge_disagrees`;
its `correctness` is then 5 for agreement and 1 otherwise. Every score is kept on the
record as `judge.<criterion>`, on kept and dropped records alike; a criterion below its
threshold is the reason `judge_<criterion>`.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

import xxhash
from pydantic import Field
from taskseed.curation.errors import RowError, TaskseedError
from taskseed.curation.formats.base import LETTERS, letter_index, letter_schema
from taskseed.curation.record import Record, Sampling
from taskseed.curation.stage import KEEP, BuildContext, FilterStage, Verdict, drop
from taskseed.curation.verdict import ungraded
from taskseed.generation.backends.base import TeacherRequest
from taskseed.generation.backends.replies import json_object
from taskseed.generation.model_stage import Ask, TeacherParams, TeacherStage, chat_model
from taskseed.judges.judge_prompts import (
    PROMPT_DIR,
    example_fields,
    load_rubric,
    render,
    rubric_path,
)

TEMPLATE = "judge.j2"
SYSTEM = "judge_system.j2"


class JudgeParams(TeacherParams):
    model: str = "judge"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(160, ge=16)
    rubric: str = "default"
    thresholds: dict[str, Annotated[int, Field(ge=1, le=5)]] = Field(default_factory=dict)
    require_agreement: bool = True  # options: drop when the judge picks another option
    seed_examples: int = Field(2, ge=0, le=8)
    on_failure: Literal["keep", "drop"] = "keep"  # a record the judge gave no verdict on


def judge_schema(criteria: list[str], n_choices: int) -> dict[str, Any]:
    """The reply: the chosen option (records with options), then a 1-5 score per criterion."""
    props: dict[str, Any] = {}
    if n_choices:
        props["answer"] = letter_schema(n_choices)
    for name in criteria:
        props[name] = {"type": "integer", "enum": [1, 2, 3, 4, 5]}
    return {"type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def parse_scores(text: str, criteria: list[str], n_choices: int) -> dict[str, int]:
    """Scores (and the picked option's position as `picked`) from a reply; RowError names
    what is unusable."""
    data = json_object(text)
    out: dict[str, int] = {}
    if n_choices:
        out["picked"] = letter_index(data.get("answer"), n_choices)
    for name in criteria:
        value = data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise RowError("missing_field", name, f"expected an integer, got {value!r}")
        if not 1 <= value <= 5:
            raise RowError("label_out_of_range", name, f"{value} not in 1..5")
        out[name] = value
    return out


class LLMJudgeStage(TeacherStage[JudgeParams], FilterStage[JudgeParams]):
    """Scores each record against a rubric with a judge model and keeps those that pass."""

    name = "llm_judge"
    params_model = JudgeParams
    system_prompt = ""  # a template file, like the user prompt
    templates = (SYSTEM, TEMPLATE)
    prompt_dir = PROMPT_DIR
    outcome = "gave a verdict"

    def __init__(self, params: JudgeParams, teacher: Any, seeds: Any = None) -> None:
        super().__init__(params, teacher)
        self.seeds = seeds
        rubric = load_rubric(params.rubric)
        unknown = set(params.thresholds) - set(rubric.criteria)
        if unknown:
            raise TaskseedError(f"thresholds name criteria the rubric '{params.rubric}' lacks: "
                           f"{', '.join(sorted(unknown))}")
        self.criteria = rubric.criteria
        self.minimum = {n: params.thresholds.get(n, c.min) for n, c in rubric.criteria.items()}

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> LLMJudgeStage:
        return cls(params, chat_model(context, params.model), context.seeds)

    def fingerprint(self) -> str:
        rubric = rubric_path(self.params.rubric).read_bytes()
        return super().fingerprint() + xxhash.xxh3_64_hexdigest(rubric)

    def _criteria_for(self, record: Record) -> list[str]:
        return [n for n in self.criteria if not (record.choices and n == "correctness")]

    def plan_requests(self, batch: list[Record], shard: int) -> list[Ask[Record]]:
        p = self.params
        asks = []
        for record in batch:
            seeds = self.seeds.get(record.lineage.seed_ids[:p.seed_examples]) if (
                self.seeds is not None and p.seed_examples) else []
            fields = example_fields(record)
            if record.choices:  # the key is not shown, nor a solution that argues for it
                fields["answer"] = fields["solution"] = None
            criteria = self._criteria_for(record)
            messages = render(TEMPLATE, SYSTEM, seeds=seeds, criteria={
                n: self.criteria[n] for n in criteria}, **fields)
            seed = xxhash.xxh3_64_intdigest(f"judge:{record.id}".encode()) & 0x7FFFFFFF
            request = TeacherRequest(messages, Sampling(p.temperature, p.top_p, p.max_tokens, seed),
                                     judge_schema(criteria, len(record.choices)))
            asks.append(Ask(request, record, record.task))
        return asks

    def parse(self, ask: Ask[Record], text: str) -> dict[str, int]:
        record = ask.about
        return parse_scores(text, self._criteria_for(record), len(record.choices))

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        answers = self.ask_all(self.plan_requests(batch, shard), shard, counters)
        verdicts = []
        for record, answer in zip(batch, answers, strict=True):
            if answer.error is not None:
                counters["judge_failed"] += 1
                verdicts.append(ungraded(self.params.on_failure, "judge_failed", answer.error,
                                         counters))
                continue
            counters["accepted"] += 1
            verdicts.append(self._verdict(record, answer.value))
        return verdicts

    def _verdict(self, record: Record, scores: dict[str, int]) -> Verdict:
        verdict = KEEP
        if record.choices:
            picked = scores.pop("picked")
            key = record.choices.index(record.answer) if record.answer in record.choices else -1
            agrees = picked == key
            scores["correctness"] = 5 if agrees else 1
            record.scores["judge.agrees"] = float(agrees)
            if not agrees and self.params.require_agreement:
                verdict = drop("judge_disagrees",
                               f"judge picked {LETTERS[picked]}, the key is "
                               f"{LETTERS[key] if key >= 0 else '?'}")
        for name, value in scores.items():
            record.scores[f"judge.{name}"] = float(value)
        if verdict.keep:
            for name, value in scores.items():
                if value < self.minimum[name]:
                    return drop(f"judge_{name}", f"{name} {value} < {self.minimum[name]}")
        return verdict
