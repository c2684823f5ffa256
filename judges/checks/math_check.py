"""Exact judge for math word problems: recompute a worked solution's arithmetic.

`check_math` drops a record only on evidence, with these reasons:

- `solution_missing`: there is no worked solution.
- `answer_not_numeric`: the answer does not parse as a number (`parse_number`).
- `arithmetic_error`: an equation in the solution is false when recomputed. The equation is
  a GSM8K calculator annotation `<<48/2=24>>` or a prose chain such as `5 x 3 = 15 apples`
  or `$12/hour * 3 hours = $36`.
- `answer_contradicts_solution`: the final answer is not the solution's result.

The solution's result, first rule that applies:
1. the number on a `#### N` line (raw GSM8K);
2. the last explicit statement (`the answer is N`, `Answer: N`, `\\boxed{N}`), with any
   results computed after it on its line;
3. the last sentence that holds a number, clause by clause (`because`, `since`, `as`):
   the first number after each `=`, the last number before `= x`, all numbers after the
   last `=`, or every number of a clause without `=`; plus the result of the last equation.
The answer must match one of these, or be one of them times 100 (dollars and cents,
fractions and percents).

Whole numbers must agree exactly. Other numbers match within `rel_tol`/`abs_tol`, or when
the stated number is the computed one rounded, floored or ceiled to the decimals it is
written with (`10/3 = 3.33`, `25/2 = 12`). Prose that cannot be read is no evidence: an
equation is skipped when its edges touch words that change it (`half of 10 + 2 = 7`,
`Day 1 + 2`), when a sum mixes units, or when it is algebra (`2x = 8`). A percent sign may
mean /100 or be a unit, `a + b x c` may be meant left to right, `a / b/c` as `a / (b/c)`,
and `3 * 4 = 12 + 2 = 14` may carry a running total.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple

from taskseed.curation.verdict import KEEP, Verdict, drop

__all__ = ["UnsafeExpression", "check_math", "evaluate", "parse_number"]

MAX_EXPRESSION_CHARS = 500
MAX_DEPTH = 50
MAX_MAGNITUDE = 1e100
MAX_EXPONENT = 1000.0

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-", "⋅": "*", "·": "*"})


class UnsafeExpression(ValueError):
    """The text is not a bounded arithmetic expression over numeric literals."""


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression, never running code.

    Allowed: int and float literals, `+ - * / // % **` (`^` is read as `**`; `×`, `÷` and
    `−` as `*`, `/` and `-`), unary minus and plus, parentheses. Exponents are bounded by
    MAX_EXPONENT and every intermediate value by MAX_MAGNITUDE. Anything else, division by
    zero and non-real results raise UnsafeExpression.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpression(f"longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.translate(_SYMBOLS).replace("^", "**").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise UnsafeExpression(f"not an expression: {expression!r}") from err
    return _eval(tree.body, 0)


def _eval(node: ast.AST, depth: int) -> float:
    if depth > MAX_DEPTH:
        raise UnsafeExpression("nested too deeply")
    if isinstance(node, ast.Constant):
        return _literal(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise UnsafeExpression(f"exponent {right:g} exceeds {MAX_EXPONENT:g}")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except (ZeroDivisionError, OverflowError) as err:
            raise UnsafeExpression(str(err)) from err
    raise UnsafeExpression(f"{type(node).__name__} is not allowed")


def _literal(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsafeExpression(f"literal {value!r} is not a number")
    try:
        return _bounded(float(value))
    except OverflowError as err:
        raise UnsafeExpression("literal too large") from err


def _bounded(value: object) -> float:
    if not isinstance(value, float) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise UnsafeExpression(f"result {value!r} is not a bounded real number")
    return value


# --- numbers ----------------------------------------------------------------------------

_CURRENCY = "$€£¥"
_PLAIN = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+")
_FRACTION = re.compile(r"(\d+)\s*/\s*(\d+)")
_MIXED = re.compile(r"(\d+)\s+(\d+)\s*/\s*(\d+)")


def parse_number(text: str) -> float | None:
    """A number written as text, or None.

    Accepts a sign, currency symbols (`$1,200`, `-$5`), thousands separators, a trailing
    sentence period (`12.`), decimals and exponents, fractions (`3/4`) and mixed numbers
    (`1 1/2`). A trailing `%` is a unit: `50%` is 50.0, as final answers give percentages
    in percent. Words, units and empty text give None.
    """
    body = text.strip().translate(_SYMBOLS).replace("\u00a0", " ")
    body = body[:-1] if body.endswith(".") and not body.endswith("..") else body
    body = body.removesuffix("%").strip()
    sign = 1.0
    while body and body[0] in "+-" + _CURRENCY:
        sign = -sign if body[0] == "-" else sign
        body = body[1:].strip()
    body = body.rstrip(_CURRENCY).strip()
    value = _unsigned(body)
    return None if value is None else sign * value


def _unsigned(body: str) -> float | None:
    if _PLAIN.fullmatch(body):
        value = float(body.replace(",", ""))
        return value if math.isfinite(value) else None
    if (m := _FRACTION.fullmatch(body)) and int(m[2]):
        return int(m[1]) / int(m[2])
    if (m := _MIXED.fullmatch(body)) and int(m[3]):
        return int(m[1]) + int(m[2]) / int(m[3])
    return None


def _decimals(text: str) -> int | None:
    """Decimal places a stated number is written with; None when it is not a plain number."""
    m = re.fullmatch(r"\s*-?\d*(?:\.(\d*))?%?\s*", text)
    return None if m is None else len(m[1] or "")


def _matches(stated: float, places: int | None, computed: float, rel: float, tol: float) -> bool:
    """Whether a stated number is the computed one; whole numbers must agree exactly."""
    if places == 0 and _whole(computed):
        return stated == round(computed)
    if math.isclose(stated, computed, rel_tol=rel, abs_tol=tol):
        return True
    return places is not None and abs(stated - computed) < 10.0**-places - 1e-12


def _whole(value: float) -> bool:
    return abs(value - round(value)) <= 1e-9 * max(1.0, abs(value))


# --- equations in text ------------------------------------------------------------------

_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)%?"
_NOT_UNITS = (
    "x and of by times per dozens? hundreds? thousands? millions? billions? or is are was were "
    "so then which that if to in on at for the an as be because each every with than more less "
    "left total all after before plus minus over into from divided multiplied equals? gives "
    "makes means leaves"
)
_UNIT_WORD = rf"(?!(?:{'|'.join(_NOT_UNITS.split())})\b)[A-Za-z]{{2,}}"
_UNIT = (
    rf"(?:/[A-Za-z]{{2,}}\b)?"
    rf"(?:[ \t]*{_UNIT_WORD}(?:/[A-Za-z]{{2,}})?(?![ \t]*/[ \t]*[\d(]|\w|-\w)){{0,2}}"
)
_OPERAND = rf"(?:\([ \t]*)*-?{_NUM}{_UNIT}(?:[ \t]*\))*"
_OP = r"(?:\*\*|//|[-+*/])"
_SPAN = rf"{_OPERAND}(?:[ \t]*{_OP}[ \t]*{_OPERAND})*"
_EQ = r"[ \t]*(?<![<>!=])=(?![=>])[ \t]*"
_CHAIN = re.compile(rf"(?<![\w.,]){_SPAN}(?:{_EQ}{_SPAN})+")
_SEGMENT = re.compile(_EQ)
_WORDS = re.compile(r"/?[A-Za-z]+(?:/[A-Za-z]+)?")
_ANNOTATION = re.compile(r"<<([^<>\n]*)>>")
_OPERATOR_WORDS = frozenset(
    {
        "times", "twice", "double", "triple", "thrice", "half", "third", "quarter", "percent",
        "squared", "cubed", "plus", "minus", "multiplied", "divided", "x",
    }
)
_CONNECTORS = frozenset({"of", "by", "from", "than", "and", "into", "over", "per", "less", "more"})
_LABEL_WORDS = frozenset(
    {
        "day", "days", "week", "weeks", "month", "months", "year", "years", "step", "part",
        "round", "level", "chapter", "page", "grade", "room", "row", "line", "question",
        "problem", "case", "option", "item", "no", "number", "hour", "minute",
    }
)
_GROUPED = re.compile(r"(?<![\d.,])\d{1,3}(?: \d{3})+(?![-\w]|[.,]\d|\s?/\s?\d)")
_LOOSE_POINT = re.compile(r"(?:^|[-+*/(=\s])\.$")
_BULLET = re.compile(r"^[ \t]*[-*][ \t]*$")
_PERCENT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?|\.\d+)%(?![ \t]*[\d(.])")
_TIGHT_FRACTION = re.compile(r"(?<![\d./])(\d+/\d+)(?![\d./])")
_LATEX = (
    (r"\\times|\\cdot", "*"),
    (r"\\div", "/"),
    (r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))"),
    (r"\\left|\\right|\\[,;!()\[\]]", ""),
    (r"\\([$%])", r"\1"),
)


def _normalize(text: str) -> str:
    """Text with symbols, LaTeX, bold, currency, digit grouping and `x` made arithmetic."""
    for pattern, replacement in _LATEX:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"\*\*(?=[A-Za-z])|(?<=[A-Za-z:.])\*\*", "", text)
    text = text.translate(_SYMBOLS).replace("^", "**")
    text = re.sub(rf"[{_CURRENCY}]+[ \t]?(?=-?[\d.(])", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = _GROUPED.sub(lambda m: m[0].replace(" ", ""), text)
    text = re.sub(r"(?<=[\d)])[ \t]*[xX][ \t]*(?=[\d(.])", " * ", text)
    return re.sub(r"(?<=\d%)[ \t]+of[ \t]+(?=[\d(.])", " * ", text)


def _interpretations(span: str) -> list[str]:
    """Readings of a prose span: percent as /100 or as a unit, usual or left-to-right order."""
    readings = [_PERCENT.sub(r"(\1/100)", span), _PERCENT.sub(r"\1", span)]
    if re.search(r"(?:\s/|/\s)\s*\d+/\d", span):
        readings += [_TIGHT_FRACTION.sub(r"(\1)", r) for r in readings]
    mixed = re.search(r"\d\s*[-+]", span) and re.search(r"[*/]", span)
    if mixed and "(" not in span and ")" not in span and "**" not in span:
        readings += [_left_to_right(r) for r in readings]
    return list(dict.fromkeys(readings))


def _left_to_right(span: str) -> str:
    tokens = re.findall(rf"{_OP}|-?\d+(?:\.\d+)?|-?\.\d+|\(\d+(?:\.\d+)?/100\)", span)
    text = tokens[0] if tokens else span
    for op, operand in zip(tokens[1::2], tokens[2::2], strict=False):
        text = f"({text} {op} {operand})"
    return text


def _values(span: str) -> list[float]:
    return list(_cached_values(span))


@functools.lru_cache(maxsize=1 << 16)
def _cached_values(span: str) -> tuple[float, ...]:
    values = []
    for reading in _interpretations(_balanced(span)):
        try:
            values.append(evaluate(reading))
        except UnsafeExpression:
            continue
    return tuple(values)


def _balanced(span: str) -> str:
    """The span without parentheses left open or closed by the prose around it."""
    text = span.strip()
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].strip()
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].strip()
    return text


def _has_operator(span: str) -> bool:
    return re.search(rf"[\d.%)][ \t]*{_OP}", span) is not None


class _Chain(NamedTuple):
    text: str
    segments: list[str]
    readable: bool
    annotation: bool = False


def _chains(prose: str) -> Iterator[_Chain]:
    """Chains `a = b = c` in normalized prose; unreadable when their edges touch words."""
    for m in _CHAIN.finditer(prose):
        segments = [_WORDS.sub("", s).strip() for s in _SEGMENT.split(m[0])]
        line_start = prose.rfind("\n", 0, m.start()) + 1
        before = prose[max(line_start, m.start() - 80) : m.start()]
        after = prose[m.end() : m.end() + 20]
        readable = _clean_start(before) and _clean_end(after) and _units_agree(m[0])
        yield _Chain(m[0].strip(), segments, readable)


def _units_agree(chain: str) -> bool:
    """False when a sum or difference mixes units (`1 hour + 30 minutes = 90 minutes`)."""
    for segment in _SEGMENT.split(chain):
        if re.search(r"[A-Za-z]", segment) and re.search(r"\s[-+]\s|\w[-+]\w", segment):
            units = {w.lower().rstrip("s") for w in re.findall(r"[A-Za-z]+", segment)}
            if len(units) > 1:
                return False
    return True


def _clean_start(before: str) -> bool:
    """Whether an expression starts here, not inside a longer one the prose spells out."""
    opened = before.rstrip("([{")
    if opened != before and opened[-1:].isalnum():
        return False
    if before and not (before[-1].isspace() or before[-1] in "([{\"'“‘,;="):
        return False
    stripped = before.rstrip()
    if _BULLET.search(before) or not stripped or stripped[-1] == "=":
        return True
    if stripped[-1].isdigit() or stripped[-1] in "+-*/%^)" or _LOOSE_POINT.search(stripped):
        return False
    tokens = re.findall(r"[A-Za-z]+|\d", stripped.lower())[-3:]
    last = tokens[-1] if tokens and stripped[-1].isalpha() else ""
    if last in _CONNECTORS:
        return not any(t.isdigit() or t in _OPERATOR_WORDS for t in tokens[:-1])
    return last not in _OPERATOR_WORDS and last not in _LABEL_WORDS


def _clean_end(after: str) -> bool:
    return re.match(rf"[A-Za-z]|[ \t]*(?:[\d/:(]|\.\d|{_OP})", after) is None


class _Mismatch(NamedTuple):
    equation: str
    left: str
    value: float


def _first_mismatch(chain: _Chain, rel: float, tol: float) -> _Mismatch | None:
    pairs = list(zip(chain.segments, chain.segments[1:], strict=False))
    if not chain.annotation and not _has_operator(chain.segments[0]):
        pairs = pairs[1:]
    for left, right in pairs:
        if not (_has_operator(left) or _has_operator(right)):
            continue
        lvals = _values(left)
        stated = _stated_forms(right, running=not chain.annotation)
        if not lvals or not stated:
            continue
        if not any(_matches(r, places, v, rel, tol) for r, places in stated for v in lvals):
            return _Mismatch(chain.text, left, lvals[0])
    return None


def _stated_forms(right: str, running: bool) -> list[tuple[float, int | None]]:
    """Values the right side may state, with its decimals when it is a plain number.

    In prose `3 * 4 = 12 + 2 = 14` the right side may begin with the left's result.
    """
    if not _has_operator(right):
        return [(v, _decimals(right)) for v in _values(right)]
    forms: list[tuple[float, int | None]] = [(v, None) for v in _values(right)]
    lead = re.match(rf"[ \t]*({_NUM})", right)
    if running and lead:
        forms += [(v, _decimals(lead[1])) for v in _values(lead[1])]
    return forms


# --- the solution's result --------------------------------------------------------------

_STATED = re.compile(
    r"(?:\b(?:the|final|correct)\s+answer\s*(?:is|was|would be|will be|:|=)"
    r"|^[ \t*#]*answer\s*[:=]|\\boxed\{)\s*\**\s*([-+$€£]*\s*(?>[\d.,]*\d)(?:\s*/\s*\d+)?%?)"
    r"(?!\s*[-+*/×÷=^x]\s*[\d($])",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"(?:(?<![\w).])-)?(?:\d+(?:\.\d+)?|\.\d+)%?")
_UNITS_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_NUMBERS = (
    {w: i for i, w in enumerate(_UNITS_WORDS)}
    | {w: 20 + 10 * i for i, w in enumerate(_TENS_WORDS)}
    | {"hundred": 100, "dozen": 12}
)
_SPELLED = re.compile(
    rf"\b(?:(?:{'|'.join(_TENS_WORDS)})-(?:{'|'.join(_UNITS_WORDS[1:10])})"
    rf"|{'|'.join(_WORD_NUMBERS)})\b",
    re.IGNORECASE,
)
_BECAUSE = re.compile(r"\b(?:because|since|as)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])|\n+")


class _Result(NamedTuple):
    values: list[float]
    source: str


def _stated_result(prose: str) -> _Result | None:
    """The last explicit answer, with any results computed after it on its line."""
    hits = [m for m in _STATED.finditer(prose) if parse_number(m[1]) is not None]
    if not hits:
        return None
    last = hits[-1]
    value = parse_number(last[1])
    if value is None:
        return None
    rest = prose[last.end():].split("\n", 1)[0]
    values = [value, *_sentence_results(rest)]
    return _Result(values, f"states {last[1].strip()}")


def _final_sentence(prose: str) -> str | None:
    sentences = [s for s in _SENTENCE_END.split(prose) if _NUMBER.search(s)]
    return sentences[-1] if sentences else None


def _sentence_results(sentence: str) -> list[float]:
    """Numbers a sentence arrives at, clause by clause (`He eats 48 because 32 + 16 = 48`)."""
    return [v for clause in _BECAUSE.split(sentence) for v in _clause_results(clause)]


def _clause_results(clause: str) -> list[float]:
    """The first number after each `=` and the last before `= x`, or all if there is no `=`."""
    pieces = _SEGMENT.split(clause)
    if len(pieces) == 1:
        return _numbers(clause)
    values = _numbers(pieces[-1])
    for piece, following in zip(pieces, pieces[1:], strict=False):
        values += _numbers(following)[:1]
        if not re.match(r"\s*[\d.(-]", following):
            values += _numbers(piece)[-1:]
    return values


def _numbers(text: str) -> list[float]:
    """The numbers in text, in digits or in words (`fifteen`, `twenty-five`)."""
    digits = [v for m in _NUMBER.finditer(text) for v in _values(m[0])]
    return digits + [_spelled(m[0]) for m in _SPELLED.finditer(text)]


def _spelled(words: str) -> float:
    return float(sum(_WORD_NUMBERS[w] for w in words.lower().split("-")))


def _last_result(prose: str, annotations: list[str]) -> list[float]:
    chains = list(_chains(prose))
    if chains:
        return _values(chains[-1].segments[-1])
    if annotations:
        return _values(annotations[-1].rpartition("=")[2])
    return []


def _solution_result(prose: str, annotations: list[str]) -> _Result | None:
    stated = _stated_result(prose)
    if stated is not None:
        return stated
    sentence = _final_sentence(prose)
    if sentence is None:
        return None
    values = _sentence_results(sentence) + _last_result(prose, annotations)
    short = " ".join(sentence.split())[:120]
    return _Result(values, f"ends with '{short}'") if values else None


# --- the judge --------------------------------------------------------------------------


def _arithmetic_error(annotations: list[str], prose: str, rel: float, tol: float) -> str | None:
    chains = [_Chain(a, [s.strip() for s in a.split("=")], True, True) for a in annotations]
    chains += [c for c in _chains(prose) if c.readable]
    for chain in chains:
        miss = _first_mismatch(chain, rel, tol)
        if miss is not None:
            return f"'{miss.equation}': {' '.join(miss.left.split())} is {miss.value:g}"
    return None


def check_math(
    reasoning: str | None, answer: str, rel_tol: float = 1e-4, abs_tol: float = 1e-6
) -> Verdict:
    """Keep a math record unless its worked solution shows it wrong (see the module doc)."""
    if reasoning is None or not reasoning.strip():
        return drop("solution_missing", "no worked solution")
    value = parse_number(answer)
    if value is None:
        return drop("answer_not_numeric", f"'{answer.strip()[:80]}'")
    body, _, marker = reasoning.rpartition("####") if "####" in reasoning else (reasoning, "", "")
    annotations = [_normalize(a) for a in _ANNOTATION.findall(body) if "=" in a]
    prose = _normalize(_ANNOTATION.sub("", body))
    error = _arithmetic_error(annotations, prose, rel_tol, abs_tol)
    if error is not None:
        return drop("arithmetic_error", error)
    result = _marker_result(marker) or _solution_result(prose, annotations)
    if result is None:
        return KEEP
    places = _decimals(answer.strip().lstrip("+-$€£").rstrip(".").replace(",", ""))
    scaled = result.values + [100 * v for v in result.values]
    if any(_matches(value, places, v, rel_tol, abs_tol) for v in scaled):
        return KEEP
    return drop(
        "answer_contradicts_solution", f"answer {answer.strip()!r} but the solution {result.source}"
    )


def _marker_result(marker: str) -> _Result | None:
    line = marker.strip().splitlines()[0] if marker.strip() else ""
    value = parse_number(line)
    return None if value is None else _Result([value], f"gives #### {line.strip()}")
