"""Request and token caps for a run, and the cost of teacher usage."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from taskseed.curation.errors import TaskseedError

SPEND_KEYS = ("teacher_calls", "prompt_tokens", "completion_tokens")


class BudgetConfig(BaseModel):
    """Caps over the whole run directory (every invocation counts) and per-token prices."""

    model_config = ConfigDict(extra="forbid")

    max_requests: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    usd_per_1m_prompt_tokens: float = Field(0.0, ge=0)
    usd_per_1m_completion_tokens: float = Field(0.0, ge=0)

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.usd_per_1m_prompt_tokens
                + completion_tokens * self.usd_per_1m_completion_tokens) / 1e6

    def check(self, spent: Mapping[str, int]) -> None:
        """Raise when the spent requests or tokens reach a cap."""
        requests = spent.get("teacher_calls", 0)
        tokens = spent.get("prompt_tokens", 0) + spent.get("completion_tokens", 0)
        if self.max_requests is not None and requests >= self.max_requests:
            raise BudgetExceeded(f"request cap reached: {requests} of max_requests "
                                 f"{self.max_requests}")
        if self.max_tokens is not None and tokens >= self.max_tokens:
            raise BudgetExceeded(f"token cap reached: {tokens} of max_tokens {self.max_tokens}")


class BudgetExceeded(TaskseedError):
    """The run stopped at a budget cap; finished shards are kept and a rerun resumes."""
