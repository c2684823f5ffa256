"""Request and token caps for a run and per named model, and the cost of model usage."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from taskseed.curation.errors import TaskseedError

SPEND_KEYS = ("teacher_calls", "prompt_tokens", "completion_tokens")


class ModelBudget(BaseModel):
    """Caps and prices of one named model (`budget.models.<name>`); unset prices are the
    run's."""

    model_config = ConfigDict(extra="forbid")

    max_requests: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    usd_per_1m_prompt_tokens: float | None = Field(None, ge=0)
    usd_per_1m_completion_tokens: float | None = Field(None, ge=0)


class BudgetConfig(BaseModel):
    """Caps over the whole run directory (every invocation counts) and per-token prices,
    for all models together and per named model (`models: {judge: {max_requests: ...}}`)."""

    model_config = ConfigDict(extra="forbid")

    max_requests: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    usd_per_1m_prompt_tokens: float = Field(0.0, ge=0)
    usd_per_1m_completion_tokens: float = Field(0.0, ge=0)
    models: dict[str, ModelBudget] = Field(default_factory=dict)

    @property
    def capped(self) -> bool:
        """Whether any request or token cap is set (the run's or a model's)."""
        lines = [self, *self.models.values()]
        return any(b.max_requests is not None or b.max_tokens is not None for b in lines)

    def cost(self, prompt_tokens: float, completion_tokens: float, model: str = "") -> float:
        """USD for the tokens of a model, at its own prices where it has them."""
        line = self.models.get(model)
        prompt = line.usd_per_1m_prompt_tokens if line else None
        completion = line.usd_per_1m_completion_tokens if line else None
        if prompt is None:
            prompt = self.usd_per_1m_prompt_tokens
        if completion is None:
            completion = self.usd_per_1m_completion_tokens
        return (prompt_tokens * prompt + completion_tokens * completion) / 1e6

    def check(self, spent: Mapping[str, int], model: str = "",
              model_spent: Mapping[str, int] | None = None) -> None:
        """Raise when the run's spend, or `model`'s own, reaches a cap."""
        _check(spent, self.max_requests, self.max_tokens, "")
        line = self.models.get(model)
        if line is not None:
            _check(model_spent or {}, line.max_requests, line.max_tokens, f"model '{model}' ")


def _check(spent: Mapping[str, int], max_requests: int | None, max_tokens: int | None,
           who: str) -> None:
    requests = spent.get("teacher_calls", 0)
    tokens = spent.get("prompt_tokens", 0) + spent.get("completion_tokens", 0)
    if max_requests is not None and requests >= max_requests:
        raise BudgetExceeded(f"{who}request cap reached: {requests} of max_requests "
                             f"{max_requests}")
    if max_tokens is not None and tokens >= max_tokens:
        raise BudgetExceeded(f"{who}token cap reached: {tokens} of max_tokens {max_tokens}")


class BudgetExceeded(TaskseedError):
    """The run stopped at a budget cap; finished shards are kept and a rerun resumes."""
