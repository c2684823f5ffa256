"""Judge prompt templates and rubrics: files under `judges/prompts/` and `judges/rubrics/`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.yamlconf import read_yaml, validate
from taskseed.curation.record import Record
from taskseed.generation.prompts import environment

PROMPT_DIR = Path(__file__).parent / "prompts"
RUBRIC_DIR = Path(__file__).parent / "rubrics"


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    min: int = Field(1, ge=1, le=5)


class Rubric(BaseModel):
    """Criteria scored 1-5 by a judge, each with a default threshold."""

    model_config = ConfigDict(extra="forbid")

    criteria: dict[str, Criterion] = Field(min_length=1)


def rubric_path(name: str) -> Path:
    """A shipped rubric by name (`default`), or a YAML file path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return RUBRIC_DIR / f"{name}.yaml"


@functools.cache
def load_rubric(name: str) -> Rubric:
    path = rubric_path(name)
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RUBRIC_DIR.glob("*.yaml")))
        raise TaskseedError(f"rubric '{name}' not found (shipped: {shipped}; or a .yaml path)")
    return validate(Rubric, read_yaml(path), path)


def system_prompt(name: str) -> str:
    return (PROMPT_DIR / name).read_text().strip()


def example_fields(record: Record) -> dict[str, Any]:
    """A record's fields as the templates show them."""
    return {"task": record.task, "context": record.context, "question": record.question,
            "choices": record.choices, "solution": record.reasoning, "answer": record.answer}


def render(template: str, system: str, **values: Any) -> list[dict[str, str]]:
    """Chat messages: the system prompt file and the rendered user template."""
    user = environment(PROMPT_DIR).get_template(template).render(**values)
    return [{"role": "system", "content": system_prompt(system)},
            {"role": "user", "content": user}]
