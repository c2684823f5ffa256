"""Verification, the cheapest exact judge: checks that need no model.

- math: the final answer must follow from the worked solution; its arithmetic is
  recomputed with a safe evaluator (`math_check`);
- code: the solution runs against its own tests in a sandboxed subprocess (`sandbox`);
  where no sandbox can be set up the shard fails with the reason: code never runs bare;
- extractive: the answer is a span of the passage, and not given away by the question.

Other formats pass through (self-consistency and the LLM judge check them).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pydantic import Field
from taskseed.curation.formats import answer_format
from taskseed.curation.record import Record
from taskseed.curation.stage import KEEP, FilterStage, StageParams, Verdict, drop
from taskseed.curation.text import normalize_text
from taskseed.judges.checks.math_check import check_math
from taskseed.judges.checks.sandbox import SandboxLimits, run_python


class VerifyParams(StageParams):
    rel_tol: float = Field(1e-4, ge=0)
    code_seconds: float = Field(10.0, gt=0)
    code_memory_mb: int = Field(512, ge=64)
    code_workers: int = Field(2, ge=1)  # sandboxed programs run at once


def code_program(record: Record) -> str:
    """The solution followed by its tests, as one script."""
    return record.answer.rstrip() + "\n\n" + "\n".join(t.strip() for t in record.tests) + "\n"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def check_code(record: Record, limits: SandboxLimits) -> Verdict:
    """Run the solution against its tests in the sandbox (the format's rule first: it has
    tests)."""
    rule = answer_format(record.format).check_answer(record)
    if not rule.keep:
        return rule
    result = run_python(code_program(record), limits)
    if result.status == "passed":
        return KEEP
    if result.status == "timeout":
        return drop("code_timeout", f"killed after {limits.seconds:g} s")
    return drop("code_fails_tests", last_line(result.stderr) or f"exit {result.returncode}")


def check_extractive(record: Record) -> Verdict:
    """The answer is a span of the passage (the format's rule), and the question does not
    already contain it."""
    rule = answer_format(record.format).check_answer(record)
    if not rule.keep:
        return rule
    if len(record.answer) * 2 > len(record.context):
        return drop("answer_is_whole_context", "the answer is most of the passage")
    answer = normalize_text(record.answer)
    if answer and f" {answer} " in f" {normalize_text(record.question)} ":
        return drop("answerable_without_context", "the question contains the answer")
    return KEEP


class VerifyStage(FilterStage[VerifyParams]):
    """Drops math whose answer its own solution contradicts, code that fails its tests, and
    extractive answers that are not spans of their passage."""

    name = "verify"
    params_model = VerifyParams

    @property
    def limits(self) -> SandboxLimits:
        p = self.params
        return SandboxLimits(seconds=p.code_seconds, memory_mb=p.code_memory_mb)

    def check(self, record: Record) -> Verdict:
        kind = answer_format(record.format).verifier
        if kind == "math":
            return check_math(record.reasoning, record.answer, rel_tol=self.params.rel_tol)
        if kind == "code":
            return check_code(record, self.limits)
        if kind == "extractive":
            return check_extractive(record)
        return KEEP

    def judge(self, batch: list[Record], shard: int, counters: Counter[str]) -> list[Verdict]:
        """Code runs in parallel sandboxes; the rest is checked in line."""
        with ThreadPoolExecutor(self.params.code_workers) as pool:
            verdicts = list(pool.map(self.check, batch))
        for record in batch:
            counters[f"verified:{record.format}"] += 1
        return verdicts
