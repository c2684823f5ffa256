"""The exact math judge: safe arithmetic, the keep rate on GSM8K, planted defects."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from taskseed.judges.checks.math_check import UnsafeExpression, check_math, evaluate, parse_number

ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>=]*)>>(\d[\d,]*(?:\.\d+)?)?")
SAMPLE = 2000

Item = tuple[str, str]


def split_marker(solution: str) -> Item:
    """(reasoning, answer) as seed normalization makes them from a GSM8K answer field."""
    worked, _, final = solution.rpartition("####")
    return worked.strip(), final.strip()


def plain(reasoning: str) -> str:
    """The solution without calculator annotations, as an LLM would write it."""
    return re.sub(r"<<[^<>]*>>", "", reasoning)


def fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.10g}"


def other_number(value: float, rng: random.Random) -> float:
    """A wrong value: off by a small amount or by a factor."""
    if rng.random() < 0.7:
        new = value + rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])
    else:
        new = value * rng.choice([2, 3, 10, 0.5])
    return new if new != value else value + 1


def plant_equation(reasoning: str, rng: random.Random) -> str | None:
    """The solution with one computed result changed, in the annotation and in the prose."""
    sites = [
        m
        for m in ANNOTATION.finditer(reasoning)
        if re.search(r"\d\s*[-+*/]", m[1]) and parse_number(m[2]) is not None
    ]
    if not sites:
        return None
    site = rng.choice(sites)
    new = fmt(other_number(parse_number(site[2]) or 0.0, rng))
    planted = f"<<{site[1]}={new}>>{new if site[3] else ''}"
    return reasoning[: site.start()] + planted + reasoning[site.end() :]


def intermediate_answer(reasoning: str, answer: str, rng: random.Random) -> str | None:
    """An earlier computed result that is not the final answer, as an early-stopping error."""
    final = parse_number(answer)
    values = (parse_number(m[2]) for m in ANNOTATION.finditer(reasoning))
    results = sorted({v for v in values if v is not None and v != final})
    return fmt(rng.choice(results)) if results else None


@pytest.fixture(scope="module")
def train_items(seeds_root: Path) -> list[Item]:
    lines = (seeds_root / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [split_marker(json.loads(line)["answer"]) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def train_reasons(train_items: list[Item]) -> list[str]:
    return [check_math(*item).reason or "kept" for item in train_items]


@pytest.fixture(scope="module")
def kept_sample(train_items: list[Item], train_reasons: list[str]) -> list[Item]:
    """Items the judge keeps as they are, so a planted defect is the only one."""
    pairs = zip(train_items, train_reasons, strict=True)
    kept = [item for item, reason in pairs if reason == "kept"]
    return random.Random(7).sample(kept, SAMPLE)


def recall(
    items: list[Item], plant: Callable[[Item, random.Random], Item | None], reason: str
) -> tuple[float, int, Counter[str]]:
    rng = random.Random(11)
    verdicts = Counter()
    for item in items:
        planted = plant(item, rng)
        if planted is not None:
            verdicts[check_math(*planted).reason or "kept"] += 1
    total = sum(verdicts.values())
    return verdicts[reason] / total, total, verdicts


# --- evaluate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 / 4", 2.5),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("2 ^ 3", 8),
        ("-3 + +2", -1),
        ("-(4 - 6)", 2),
        ("3 × 4 ÷ 2", 6),
        ("5 − 7", -2),
        (".5 * 8", 4),
        ("1.25e2", 125),
        ("  48/2 ", 24),
    ],
)
def test_evaluate_computes_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "abs(-1)",
        "x + 1",
        "'a' * 3",
        "b'1'",
        "[1, 2]",
        "{1: 2}",
        "1 if 1 else 2",
        "lambda: 1",
        "1 == 1",
        "~1",
        "1 << 100",
        "True + 1",
        "1j * 2",
        "2**10**10",
        "9**9**9",
        "10**99 * 10**99",
        "1e400",
        "1 / 0",
        "5 % 0",
        "(-8) ** 0.5",
        "(" * 300 + "1" + ")" * 300,
        "-" * 400 + "1",
        "1" * 600,
        "1; 2",
        "",
    ],
)
def test_evaluate_refuses_everything_else(expression: str) -> None:
    start = time.perf_counter()
    with pytest.raises(UnsafeExpression):
        evaluate(expression)
    assert time.perf_counter() - start < 0.5


def test_unsafe_expression_is_a_value_error() -> None:
    assert issubclass(UnsafeExpression, ValueError)


# --- parse_number -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("72", 72),
        (" 72 ", 72),
        ("$1,200", 1200),
        ("-3.5", -3.5),
        ("−3.5", -3.5),
        ("-$5", -5),
        ("$-5", -5),
        ("12.", 12),
        (".75", 0.75),
        ("3/4", 0.75),
        ("1 1/2", 1.5),
        ("50%", 50),
        ("1,234,567.89", 1234567.89),
        ("2.5e3", 2500),
        ("€20", 20),
    ],
)
def test_parse_number_reads_numbers(text: str, value: float) -> None:
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text", ["", "  ", "twelve", "12 apples", "1,2", "3/0", "1.2.3", "nan", "inf", "$", "-"]
)
def test_parse_number_refuses_non_numbers(text: str) -> None:
    assert parse_number(text) is None


# --- check_math on simple cases ---------------------------------------------------------


@pytest.mark.parametrize("reasoning", [None, "", "  \n "])
def test_missing_solution_is_dropped(reasoning: str | None) -> None:
    assert check_math(reasoning, "5").reason == "solution_missing"


def test_non_numeric_answer_is_dropped() -> None:
    verdict = check_math("3 + 4 = 7", "about seven")
    assert (verdict.keep, verdict.reason) == (False, "answer_not_numeric")


def test_arithmetic_error_quotes_the_equation_and_its_value() -> None:
    verdict = check_math("Natalia sold 48/2 = <<48/2=25>>25 clips in May.", "25")
    assert verdict.reason == "arithmetic_error"
    assert "48/2=25" in verdict.detail and "24" in verdict.detail


def test_contradiction_names_both_numbers() -> None:
    verdict = check_math("She has 3 + 4 = 7 apples.", "8")
    assert verdict.reason == "answer_contradicts_solution"
    assert "8" in verdict.detail and "7" in verdict.detail


def test_raw_gsm8k_form_uses_the_marker_line() -> None:
    raw = "She sold 48/2 = <<48/2=24>>24 clips.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert check_math(raw, "72").keep
    assert check_math(raw, "72.0").keep
    assert check_math(raw, "24").reason == "answer_contradicts_solution"


# --- hand-written LLM-style solutions ---------------------------------------------------

LLM_SOLUTIONS = [
    (
        "Tom has 3 boxes with 4 apples each, so he has 3 * 4 = 12 apples. He eats 2, so "
        "12 - 2 = 10 apples remain. So the answer is 10.",
        "10",
        "",
    ),
    (
        "The shirt costs $25 and is 20% off. The discount is 20% of $25 = $5. So she pays "
        "$25 - $5 = $20.\nThe answer is $20.",
        "20",
        "",
    ),
    (
        "Each ticket is $12.50. For 4 tickets: 12.50 × 4 = 50. With a $5 coupon: 50 − 5 = 45.\n"
        "Final answer: 45",
        "45",
        "",
    ),
    ("She reads 120 ÷ 8 = 15 pages a day, so in 3 days she reads 15 x 3 = 45 pages.", "45", ""),
    ("**Step 1:** 5 + 7 = 12\n**Step 2:** 12 × 3 = 36\n\n**Answer:** 36", "36", ""),
    (r"We need $3 \times 4 = 12$ eggs, so $\frac{12}{2} = 6$ per cake. $\boxed{6}$", "6", ""),
    ("The train covers 60 * 2.5 = 150 miles in 2.5 hours.\nSo the answer is 150.", "150", ""),
    ("Let x be the cats. Then 2x + 3 = 11, so 2x = 8 and x = 4.\nThe answer is 4.", "4", ""),
    ("She had $1,200 and spent $450, leaving $1,200 - $450 = $750.", "750", ""),
    ("Split evenly, 10 / 3 = 3.33 dollars each, so each pays $3.33.", "3.33", ""),
    ("Half of the 30 students are girls, so there are fifteen girls.", "15", ""),
    ("It takes 1 hour + 30 minutes = 90 minutes to bake, so she bakes 3 * 12 = 36.", "36", ""),
    ("The pool holds 2 * 3 = 6 buckets, or 6 * 5 = 30 liters. So 30 liters.", "30", ""),
    ("1. 3 + 4 = 7\n2. 7 * 2 = 14\nSo the answer is 14.", "14", ""),
    ("It is 5 - 8 = -3 degrees at night, so it drops to -3.", "-3", ""),
    ("She leaves at 3:30 + 2 hours later; the ride is 2 * 45 = 90 minutes.", "90", ""),
    ("The mix is 3:4 = 0.75, so 0.75 * 100 = 75 percent is water.", "75", ""),
    ("1. 3 + 4 = 8\n2. 8 * 2 = 16\nSo the answer is 16.", "16", "arithmetic_error"),
    (
        "He buys 6 packs of 8 pencils: 6 x 8 = 46 pencils. He gives away 10, leaving "
        "46 - 10 = 36. The answer is 36.",
        "36",
        "arithmetic_error",
    ),
    ("**Step 1:** 5 + 7 = 13\n**Step 2:** 13 × 3 = 39\n\n**Answer:** 39", "39", "arithmetic_error"),
    ("20% of 50 = 12, so she keeps 50 - 12 = 38.", "38", "arithmetic_error"),
    (r"We need $3 \times 4 = 12$ eggs, so $\frac{12}{2} = 5$ per cake. $\boxed{5}$", "5",
     "arithmetic_error"),
    (
        "Tom has 3 boxes with 4 apples each, so he has 3 * 4 = 12 apples. He eats 2, so "
        "12 - 2 = 10 apples remain. So the answer is 10.",
        "12",
        "answer_contradicts_solution",
    ),
    ("The discount is $5, so she pays 25 - 5 = 20 dollars.", "25", "answer_contradicts_solution"),
    ("Then 2x + 3 = 11, so 2x = 8 and x = 4.\nThe answer is 4.", "5",
     "answer_contradicts_solution"),
]


@pytest.mark.parametrize(("reasoning", "answer", "reason"), LLM_SOLUTIONS)
def test_llm_style_solutions(reasoning: str, answer: str, reason: str) -> None:
    verdict = check_math(reasoning, answer)
    assert verdict.reason == reason, verdict.detail
    assert verdict.keep == (not reason)


# --- real GSM8K -------------------------------------------------------------------------


def test_keeps_correct_gsm8k_train_items(train_items: list[Item], train_reasons: list[str]) -> None:
    reasons = Counter(train_reasons)
    rate = reasons["kept"] / len(train_items)
    message = f"kept {reasons['kept']}/{len(train_items)} = {rate:.4f}; {dict(reasons)}"
    assert len(train_items) >= 7000, message
    assert rate >= 0.98, message


def test_keeps_raw_gsm8k_solutions(seeds_root: Path) -> None:
    lines = (seeds_root / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in random.Random(3).sample(lines, SAMPLE)]
    reasons = Counter(
        check_math(row["answer"], split_marker(row["answer"])[1]).reason or "kept" for row in rows
    )
    rate = reasons["kept"] / len(rows)
    assert rate >= 0.98, f"kept {rate:.4f} of raw solutions; {dict(reasons)}"


def test_changed_equation_result_is_an_arithmetic_error(kept_sample: list[Item]) -> None:
    def plant(item: Item, rng: random.Random) -> Item | None:
        planted = plant_equation(item[0], rng)
        return None if planted is None else (planted, item[1])

    rate, total, verdicts = recall(kept_sample, plant, "arithmetic_error")
    assert total >= 0.9 * len(kept_sample)
    assert rate >= 0.95, f"arithmetic_error recall {rate:.4f} over {total}: {dict(verdicts)}"


def test_changed_equation_result_in_plain_prose(kept_sample: list[Item]) -> None:
    def plant(item: Item, rng: random.Random) -> Item | None:
        planted = plant_equation(item[0], rng)
        return None if planted is None else (plain(planted), item[1])

    rate, total, verdicts = recall(kept_sample, plant, "arithmetic_error")
    dropped = 1 - verdicts["kept"] / total
    message = f"plain prose: arithmetic_error {rate:.4f}, any drop {dropped:.4f}: {dict(verdicts)}"
    assert rate >= 0.85, message
    assert dropped >= 0.9, message


@pytest.mark.parametrize("form", ["annotated", "plain"])
def test_replaced_answer_contradicts_solution(kept_sample: list[Item], form: str) -> None:
    def plant(item: Item, rng: random.Random) -> Item | None:
        reasoning = item[0] if form == "annotated" else plain(item[0])
        return reasoning, fmt(other_number(parse_number(item[1]) or 0.0, rng))

    rate, total, verdicts = recall(kept_sample, plant, "answer_contradicts_solution")
    assert rate >= 0.95, f"{form}: contradiction recall {rate:.4f} over {total}: {dict(verdicts)}"


def test_intermediate_result_as_answer_contradicts_solution(kept_sample: list[Item]) -> None:
    def plant(item: Item, rng: random.Random) -> Item | None:
        wrong = intermediate_answer(item[0], item[1], rng)
        return None if wrong is None else (item[0], wrong)

    rate, total, verdicts = recall(kept_sample, plant, "answer_contradicts_solution")
    assert rate >= 0.9, f"intermediate answers: recall {rate:.4f} over {total}: {dict(verdicts)}"
