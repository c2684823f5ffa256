"""`taskseed plan`: planned teacher requests, token and cost estimates, before a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curation.stage import BatchStage, SourceStage
from generation.enrich import EnrichStage
from generation.generate import GenerateStage
from generation.teacher_stage import TeacherStage
from taskseed.config import load_config
from taskseed.pipeline import build_stages

CHARS_PER_TOKEN = 4.0


@dataclass
class StagePlan:
    """Planned requests of one teacher stage, with token estimates."""

    name: str
    requests: int = 0
    max_requests: int = 0
    prompt_tokens: float = 0.0
    max_completion_tokens: int = 0
    by_task: Counter[str] = field(default_factory=Counter)


def _tokens(messages: list[dict[str, str]]) -> float:
    return sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN


def plan_run(config: Path, overlays: list[Path] | None = None) -> tuple[list[StagePlan], object]:
    """Read and normalize the seeds in this process, then render every generate request.

    Generate requests are exact (same shards and grouping as a run); enrichment is bounded
    by one request per generated example.
    """
    loaded = load_config(config, overlays)
    stages = build_stages(loaded)
    source = stages[0]
    assert isinstance(source, SourceStage)
    plans: list[StagePlan] = []
    generated = 0
    per_example_tokens = 0.0
    shards = source.plan()
    for shard, spec in enumerate(shards):
        items = source.read(spec).items
        for stage in stages[1:]:
            if isinstance(stage, GenerateStage):
                plan = _plan_of(plans, stage.name)
                requests = stage.plan_requests(items, shard)
                attempts = stage.params.max_attempts
                plan.requests += len(requests)
                plan.max_requests += len(requests) * attempts
                for group, request in requests:
                    plan.prompt_tokens += _tokens(request.messages)
                    plan.by_task[group[0].task] += 1
                    per_example_tokens = max(per_example_tokens, _tokens(request.messages)
                                             / max(1, len(group)))
                plan.max_completion_tokens += len(requests) * attempts * stage.params.max_tokens
                generated += len(requests)
                break
            if not isinstance(stage, BatchStage) or isinstance(stage, TeacherStage):
                break
            items = stage.process(items, shard).items
    for stage in stages:
        if isinstance(stage, EnrichStage):
            plan = _plan_of(plans, stage.name)
            plan.requests = plan.max_requests = generated
            plan.prompt_tokens = generated * (per_example_tokens + 150)
            plan.max_completion_tokens = generated * stage.params.max_tokens
    return plans, loaded


def _plan_of(plans: list[StagePlan], name: str) -> StagePlan:
    for plan in plans:
        if plan.name == name:
            return plan
    plans.append(StagePlan(name))
    return plans[-1]


def format_plan(plans: list[StagePlan], loaded) -> str:
    """A table of planned requests, tokens and cost, and whether it fits the budget."""
    budget = loaded.config.budget
    lines = [f"plan for {loaded.path} (teacher: {loaded.config.teacher.backend}"
             f" {loaded.config.teacher.model or ''})".replace(" )", ")")]
    lines.append(f"{'stage':10} {'requests':>9} {'with retries':>13} {'prompt tok':>11} "
                 f"{'max completion tok':>19} {'max cost USD':>13}")
    total_requests = total_tokens = 0.0
    total_cost = 0.0
    for p in plans:
        cost = budget.cost(p.prompt_tokens * p.max_requests / max(1, p.requests),
                           p.max_completion_tokens)
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
