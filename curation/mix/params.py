"""Parameters of the `mix` stage."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from taskseed.curation.mix.templates import TEMPLATES
from taskseed.curation.mix.tokens import EstimateTokenizer, TokenizerConfig
from taskseed.curation.stage import FrameParams, StageParams

MAX_WEIGHT = 100  # copies of one record; the budget order packs the copy number in 8 bits
DEFAULT_SHARD_RECORDS = 100_000

Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT)]
Budget = Annotated[int, Field(ge=0)]


class Weights(StageParams):
    """Multipliers by task and by family (a record's weight is their product).

    Below 1 keeps that fraction of the records, chosen by hash; above 1 repeats each record
    (2.5: every record twice, half of them three times), each copy under another template.
    """

    tasks: dict[str, Weight] = Field(default_factory=dict)
    families: dict[str, Weight] = Field(default_factory=dict)


class TokenBudgets(StageParams):
    """Most tokens per task and per family; task budgets apply first."""

    tasks: dict[str, Budget] = Field(default_factory=dict)
    families: dict[str, Budget] = Field(default_factory=dict)


class MixParams(FrameParams):
    """`include_seeds`: seed records join the mix too. `seed`: the hash seed of every choice
    (which records a weight keeps, budget order, templates, shuffle). `shard_records` or
    `shard_tokens`: the size of the output files (default 100,000 records).
    `commercial_subset`: also write `commercial/<dataset>/` with commercial records only."""

    include_seeds: bool = False
    seed: int = 0
    weights: Weights = Field(default_factory=Weights)
    token_budgets: TokenBudgets = Field(default_factory=TokenBudgets)
    tokenizer: TokenizerConfig = Field(default_factory=EstimateTokenizer)
    templates: list[str] = Field(default_factory=lambda: list(TEMPLATES), min_length=1)
    shard_records: int | None = Field(None, ge=1)
    shard_tokens: int | None = Field(None, ge=1)
    commercial_subset: bool = False

    @field_validator("templates")
    @classmethod
    def _known_templates(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in TEMPLATES]
        if unknown:
            raise ValueError(f"unknown template '{unknown[0]}' (known: {', '.join(TEMPLATES)})")
        if len(set(names)) != len(names):
            raise ValueError("a template is listed twice")
        return names

    @model_validator(mode="after")
    def _one_shard_size(self) -> MixParams:
        if self.shard_records is not None and self.shard_tokens is not None:
            raise ValueError("give shard_records or shard_tokens, not both")
        if self.shard_records is None and self.shard_tokens is None:
            self.shard_records = DEFAULT_SHARD_RECORDS
        return self
