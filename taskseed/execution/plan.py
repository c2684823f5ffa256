"""`taskseed plan`: planned model requests per stage (teacher, judges, reward model), token
and cost estimates, before a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from taskseed.config.pipeline import LoadedConfig, load_config
from taskseed.curation.record import Record
from taskseed.curation.stage import Stage
from taskseed.execution.pipeline import build_engine
from taskseed.generation.model_stage import TeacherStage

CHARS_PER_TOKEN = 4.0
ANSWER_PROMPT_TOKENS = 150  # instructions around one example in a per-record prompt
SCORE_COMPLETION_TOKENS = 32  # a reward model's reply: a few `name:score` pairs


@dataclass
class StagePlan:
    """Planned requests of one teacher stage, with token estimates."""

    name: str
    model: str = "teacher"
    requests: int = 0
    max_requests: int = 0
    prompt_tokens: float = 0.0
    max_completion_tokens: int = 0
    by_task: Counter[str] = field(default_factory=Counter)


def _tokens(messages: list[dict[str, str]]) -> float:
    return sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN


def _record_tokens(record: Record) -> float:
    """A record's text as a scoring model reads it (context, question, options, answer)."""
    parts = [record.context or "", record.question, *record.choices, record.reasoning or "",
             record.answer]
    return sum(len(p) for p in parts) / CHARS_PER_TOKEN


def _add_scoring(plan: StagePlan, stage: Stage, records: int, tokens: float) -> None:
    """A stage that scores each record once (a reward model): `records` requests."""
    attempts = int(getattr(stage.params, "max_attempts", 1))
    plan.requests += records
    plan.max_requests += records * attempts
    plan.prompt_tokens += tokens
    plan.max_completion_tokens += records * attempts * SCORE_COMPLETION_TOKENS


def plan_run(
    config: Path, overlays: list[Path] | None = None, sets: list[str] | None = None
) -> tuple[list[StagePlan], LoadedConfig]:
    """Run the stages before the first model stage in memory, then plan its requests.

    The first model stage's requests are exact (the same shards and asks as a run). A
    later teacher stage is bounded by one request per record it can receive, each about as
    long as one example of the first stage's prompts plus its instructions; a reward model
    by one request per record.
    """
    loaded = load_config(config, overlays, sets=sets)
    runs = build_engine(loaded).prepare(write=False)
    plans: list[StagePlan] = []
    downstream = 0
    per_record_tokens = 0.0
    first: int | None = None
    for shard in range(runs[0].shards):
        items = runs[0].preview(None, shard).items
        for position, run in enumerate(runs[1:], start=1):
            stage = run.stage
            if stage.calls_models and not isinstance(stage, TeacherStage):
                first = position
                tokens = sum(_record_tokens(r) for r in items)
                _add_scoring(_plan_of(plans, stage), stage, len(items), tokens)
                per_record_tokens = max([per_record_tokens, *(_record_tokens(r) for r in items)])
                downstream += len(items)
                break
            if isinstance(stage, TeacherStage):
                first = position
                asks = stage.plan_requests(items, shard)
                plan = _plan_of(plans, stage)
                attempts = stage.params.max_attempts
                plan.requests += len(asks)
                plan.max_requests += len(asks) * attempts
                plan.max_completion_tokens += len(asks) * attempts * stage.params.max_tokens
                for ask in asks:
                    tokens = _tokens(ask.request.messages)
                    plan.prompt_tokens += tokens
                    plan.by_task[ask.task] += 1
                    per_record_tokens = max(per_record_tokens, tokens / ask.examples)
                downstream += stage.planned_outputs(items, asks)
                break
            result = run.preview(items, shard)
            if result is None:
                break
            items = result.items
    for run in runs[(first or len(runs)) + 1:]:
        if isinstance(run.stage, TeacherStage):
            plan = _plan_of(plans, run.stage)
            plan.requests = plan.max_requests = downstream
            plan.prompt_tokens = downstream * (per_record_tokens + ANSWER_PROMPT_TOKENS)
            plan.max_completion_tokens = downstream * run.stage.params.max_tokens
        elif run.stage.calls_models:
            _add_scoring(_plan_of(plans, run.stage), run.stage, downstream,
                         downstream * per_record_tokens)
    return plans, loaded


def _plan_of(plans: list[StagePlan], stage: Stage) -> StagePlan:
    for plan in plans:
        if plan.name == stage.name:
            return plan
    plans.append(StagePlan(stage.name, str(getattr(stage.params, "model", "teacher"))))
    return plans[-1]


def format_plan(plans: list[StagePlan], loaded: LoadedConfig) -> str:
    """A table of planned requests, tokens and cost, and whether it fits the budget."""
    budget = loaded.config.budget
    teacher = loaded.config.teacher
    model = getattr(teacher, "model", None)
    label = f"{teacher.backend} {model}" if model else teacher.backend
    lines = [f"plan for {loaded.path} (teacher: {label})"]
    lines.append(f"{'stage':10} {'requests':>9} {'with retries':>13} {'prompt tok':>11} "
                 f"{'max completion tok':>19} {'max cost USD':>13}")
    total_requests = total_tokens = 0.0
    total_cost = 0.0
    for p in plans:
        cost = budget.cost(p.prompt_tokens * p.max_requests / max(1, p.requests),
                           p.max_completion_tokens, p.model)
        total_requests += p.requests
        total_tokens += p.prompt_tokens + p.max_completion_tokens
        total_cost += cost
        lines.append(f"{p.name:10} {p.requests:>9} {p.max_requests:>13} "
                     f"{p.prompt_tokens:>11.0f} {p.max_completion_tokens:>19} {cost:>13.2f}")
        for task, n in sorted(p.by_task.items()):
            lines.append(f"  {task}: {n} requests")
    lines.append(f"total: {total_requests:.0f} requests, at most {total_tokens:.0f} tokens, "
                 f"at most ${total_cost:.2f}")
    if budget.max_requests is not None:
        verdict = "fits" if total_requests <= budget.max_requests else "exceeds"
        lines.append(f"budget: {verdict} max_requests {budget.max_requests}")
    if budget.max_tokens is not None:
        verdict = "fits" if total_tokens <= budget.max_tokens else "may exceed"
        lines.append(f"budget: {verdict} max_tokens {budget.max_tokens}")
    lines.append(f"(prompt tokens estimated at {CHARS_PER_TOKEN:.0f} characters per token)")
    return "\n".join(lines)
