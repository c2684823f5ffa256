"""A planted-defect set built from real seeds, and the deterministic filters run over it.

Every item is a real training record of a task, treated as a generated one whose seed group
is two other records of the same task (never ones sharing its passage). Most items get one
known defect planted; `correct` items are left untouched. `run_filters` chains the
deterministic filters in pipeline order (the generate stage's `copied_exemplar`, then
validity, heuristics and verify) and `summarize` turns the outcomes into recall per kind,
precision and false drops per task.

Truncation rule: a text of at least 8 words is cut right after a function word (article,
preposition, conjunction, auxiliary, possessive...) standing at 40-80% of its words, the
one nearest 60%; a math solution's last line is cut after the last function word before
its first equation (or at the equation, keeping ` =`), so its final result is gone; code
is cut mid-line at the last space before 60% of its characters.
"""

from __future__ import annotations

import ast
import dataclasses
import random
import re
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from taskseed.curation.formats.base import LETTERS
from taskseed.curation.record import Lineage, Origin, Record
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_specs
from taskseed.curation.verdict import Verdict
from taskseed.generation.stages.generate import copied_exemplar
from taskseed.judges.filters import heuristics, validity
from taskseed.judges.filters.verify import VerifyParams, VerifyStage

from taskseed.execution.shard import ready

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"

KINDS = (
    "correct", "wrong_answer_key", "arithmetic_error", "truncated", "truncated_stem", "refusal",
    "placeholder", "seed_copy", "duplicate_options", "code_fails_tests", "code_hangs",
    "code_network",
)
# No format rule, heuristic or exact check can see these; the model-based judges must. A cut
# option stem of a task whose own seeds are cloze stems ("The movement of soil by") reads as
# one of them: only a reader of the options can tell.
MODEL_ONLY = ("wrong_answer_key", "truncated_stem")
# Multiple-choice tasks whose seeds end at least 2% of their stems mid-sentence (the
# heuristics' `min_stem_share`): ARC 10-14%, OpenBookQA 36%.
CLOZE_TASKS = ("arc_challenge", "arc_easy", "openbookqa")
DETERMINISTIC = tuple(k for k in KINDS if k != "correct" and k not in MODEL_ONLY)

REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "As an AI language model, I cannot provide an answer to this question.",
    "I apologize, but I am unable to answer this question.",
    "I'm unable to provide a solution to this problem.",
    "Sorry, I can't assist with that request.",
    "I cannot answer this question because it requires information I do not have.",
    "Unfortunately, I'm not able to help with this.",
)
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into",
    "about", "and", "or", "but", "that", "which", "who", "whom", "whose", "is", "are", "was",
    "were", "be", "been", "has", "have", "had", "do", "does", "did", "will", "would", "can",
    "could", "should", "his", "her", "their", "its", "my", "your", "our", "this", "these",
    "those", "than", "as", "if", "because", "when", "while", "after", "before",
})


@dataclass(slots=True)
class Planted:
    """One item of the set: a record with a known defect (or none) and its seed group."""

    kind: str
    variant: str
    record: Record
    group: list[Record]


@dataclass(slots=True)
class Outcome:
    """What the filter chain did with one planted item."""

    kind: str
    variant: str
    task: str
    filter: str | None = None
    reason: str | None = None
    detail: str = ""

    @property
    def dropped(self) -> bool:
        return self.filter is not None


# --- seeds ------------------------------------------------------------------------------


def load_records(seeds_root: Path = SEEDS, max_per_task: int = 1000) -> dict[str, list[Record]]:
    """Normalized training records of every task with local seeds, by task."""
    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    params = SeedParams(rows_per_shard=5000, max_per_task=max_per_task)
    seeds = ready(SeedStage(params, specs, seeds_root))
    norm = ready(NormalizeStage(None, specs))
    by_task: dict[str, dict[str, Record]] = defaultdict(dict)
    for shard in seeds.plan():
        for record in norm.process(seeds.read(shard).items, 0).items:
            by_task[record.task].setdefault(record.id, record)
    return {task: list(records.values()) for task, records in sorted(by_task.items())}


def seed_group(record: Record, pool: list[Record], rng: random.Random, k: int = 2) -> list[Record]:
    """k other records of the task, none sharing the record's passage."""
    group: list[Record] = []
    while len(group) < k:
        other = pool[rng.randrange(len(pool))]
        if other.id == record.id or any(other.id == g.id for g in group):
            continue
        if record.context and other.context == record.context:
            continue
        group.append(other)
    return group


def generated(record: Record, group: list[Record], **changes: Any) -> Record:
    """The record as a generated one of `group`, with `changes` applied and a fresh id."""
    lineage = Lineage(seed_ids=[g.id for g in group], stage="generate")
    return dataclasses.replace(record, origin=Origin.GENERATED, lineage=lineage, id="",
                               **changes)


# --- text edits -------------------------------------------------------------------------


def cut_at_function_word(text: str) -> str | None:
    """The text cut right after a function word at 40-80% of its words (nearest 60%)."""
    words = text.split()
    n = len(words)
    if n < 8:
        return None
    cuts = [i for i in range(int(0.4 * n) + 1, int(0.8 * n) + 1)
            if words[i - 1].lower() in FUNCTION_WORDS]
    if not cuts:
        return None
    keep = min(cuts, key=lambda i: abs(i - 0.6 * n))
    return " ".join(words[:keep])


def cut_before_result(solution: str) -> str | None:
    """A worked solution whose last line stops before its first equation."""
    lines = solution.rstrip().splitlines()
    last = lines[-1]
    match = re.search(r"<<|=", last)
    if match is None:
        return None
    words = last[: match.start()].split()
    while words and words[-1].lower() not in FUNCTION_WORDS and len(words) > 3:
        words.pop()
    head = " ".join(words) if words and words[-1].lower() in FUNCTION_WORDS else (
        last[: match.start()].rstrip() + " =")
    return "\n".join([*lines[:-1], head])


def cut_code(code: str) -> str:
    """Code cut mid-line at the last space before 60% of its characters."""
    end = int(0.6 * len(code))
    space = code.rfind(" ", 0, end)
    return code[: space if space > 0 else end]


def wrong_number(text: str, rng: random.Random) -> str | None:
    """A different number written like `text`, or None when `text` is not a plain number."""
    clean = text.replace(",", "").rstrip(".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", clean):
        return None
    value = float(clean)
    places = len(clean.partition(".")[2])
    delta = rng.choice([1, 2, 3, 5, 10])
    new = value - delta if value - delta >= 0 and rng.random() < 0.5 else value + delta
    return f"{new:.{places}f}"


# --- defects ----------------------------------------------------------------------------

Edit = tuple[str, Record]
Planter = Callable[[Record, list[Record], random.Random], "Edit | None"]


def plant_wrong_key(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    if record.format == "yes_no":
        return "yes_no_flipped", generated(record, group,
                                           answer="no" if record.answer == "yes" else "yes")
    if not record.choices:
        return None
    key = record.choices.index(record.answer)
    other = rng.choice([i for i in range(len(record.choices)) if i != key])
    return "key_moved", generated(record, group, answer=record.choices[other],
                                  answer_label=LETTERS[other])


_ANNOTATED = re.compile(r"<<([^<>=]*)=([^<>]*)>>([\d.,]*\d)")
_PROSE_EQUATION = re.compile(
    r"(\d[\d.,]*\s*[-+*/x]\s*[\d.,(][^=\n<]*?)=\s*\$?(\d[\d,]*(?:\.\d+)?)(?=[\s.,;:!?)]|$)(?!\.\d)")


def _annotated_slip(reasoning: str, rng: random.Random, last: bool) -> tuple[str, str] | None:
    """The solution with one annotated result (and its prose echo) changed, and the new value."""
    hits = [m for m in _ANNOTATED.finditer(reasoning) if m[2].strip() == m[3]]
    if not hits:
        return None
    m = hits[-1] if last else rng.choice(hits)
    new = wrong_number(m[3], rng)
    if new is None:
        return None
    slip = f"<<{m[1]}={new}>>{new}"
    return reasoning[: m.start()] + slip + reasoning[m.end():], new


def plant_arithmetic(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    if record.task != "gsm8k" or not record.reasoning:
        return None
    variant = rng.choice(["annotated_result", "final_answer", "prose_result", "last_step"])
    if variant == "final_answer":
        new = wrong_number(record.answer, rng)
        return None if new is None else (variant, generated(record, group, answer=new))
    if variant == "prose_result":
        prose = _ANNOTATED.sub(lambda m: m[3], record.reasoning)
        hits = list(_PROSE_EQUATION.finditer(prose))
        if not hits:
            return None
        m = rng.choice(hits)
        new = wrong_number(m[2], rng)
        if new is None:
            return None
        prose = prose[: m.start(2)] + new + prose[m.end(2):]
        return variant, generated(record, group, reasoning=prose)
    slip = _annotated_slip(record.reasoning, rng, last=variant == "last_step")
    if slip is None:
        return None
    changes: dict[str, Any] = {"reasoning": slip[0]}
    if variant == "last_step":
        changes["answer"] = slip[1]
    return variant, generated(record, group, **changes)


def _truncate_field(record: Record, name: str) -> dict[str, Any] | None:
    text = getattr(record, name) or ""
    if name == "reasoning":
        cut = cut_before_result(text) if text else None
    elif name == "answer" and record.format == "code":
        cut = cut_code(text)
    else:
        cut = cut_at_function_word(text)
    if not cut or cut == text:
        return None
    if name == "answer" and record.choices:
        choices = [cut if c == record.answer else c for c in record.choices]
        return {"answer": cut, "choices": choices}
    return {name: cut}


def plant_truncated(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    names = {"math": ["question", "reasoning"], "code": ["question", "answer"]}.get(
        str(record.format), ["question", "context", "answer"])
    if record.task in CLOZE_TASKS:
        names.remove("question")  # that is `truncated_stem`
    rng.shuffle(names)
    for name in names:
        changes = _truncate_field(record, name)
        if changes is not None:
            return name, generated(record, group, **changes)
    return None


def plant_truncated_stem(record: Record, group: list[Record], rng: random.Random
                         ) -> Edit | None:
    changes = _truncate_field(record, "question")
    return None if changes is None else ("question", generated(record, group, **changes))


def plant_refusal(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    text = rng.choice(REFUSALS)
    if record.choices:
        choices = [text if c == record.answer else c for c in record.choices]
        return "answer_and_option", generated(record, group, answer=text, choices=choices)
    if record.format == "math" and rng.random() < 0.5:
        return "reasoning", generated(record, group, reasoning=text)
    return "answer", generated(record, group, answer=text)


PLACEHOLDERS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("question_type", lambda q: "question_type"),
    ("the_answer_is", lambda q: "Question: The answer is 1"),
    ("braces", lambda q: "{question}"),
    ("angle_prefix", lambda q: f"<question> {q}"),
    ("here_is_prefix", lambda q: f"Here is a new question: {q}"),
    ("file_name_prefix", lambda q: f"(from seeds_train.jsonl) {q}"),
    ("double_braces_prefix", lambda q: f"{{{{question}}}} {q}"),
)


def plant_placeholder(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    name, make = rng.choice(PLACEHOLDERS)
    return name, generated(record, group, question=make(record.question))


def _one_word_less(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if len(words) < 4:
        return None
    del words[rng.randrange(1, len(words) - 1)]
    return " ".join(words)


SEED_EDITS: tuple[tuple[str, Callable[[str, random.Random], str | None]], ...] = (
    ("exact", lambda q, rng: q),
    ("case", lambda q, rng: q.lower() if q != q.lower() else q.upper()),
    ("punctuation", lambda q, rng: re.sub(r"[?.!]\s*$", "", q).replace(",", "") + "!"),
    ("one_word", _one_word_less),
)


def plant_seed_copy(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    name, edit = rng.choice(SEED_EDITS)
    seed = rng.choice(group)
    question = edit(seed.question, rng)
    if question is None:
        return None
    return name, generated(seed, group, question=question)


def plant_duplicate_options(record: Record, group: list[Record], rng: random.Random
                            ) -> Edit | None:
    if len(record.choices) < 3:
        return None
    key = record.choices.index(record.answer)
    target = rng.choice([i for i in range(len(record.choices)) if i != key])
    source = rng.choice([i for i in range(len(record.choices)) if i != target])
    text = record.choices[source]
    variant, text = rng.choice([("exact", text), ("case", text.upper()),
                                ("spacing", f" {text}  ")])
    choices = list(record.choices)
    choices[target] = text
    return variant, generated(record, group, choices=choices)


# --- code defects -----------------------------------------------------------------------


def tested_function(record: Record) -> tuple[ast.Module, ast.FunctionDef] | None:
    """The solution's tree and its top-level function that the tests call first."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(record.answer)
    except SyntaxError:
        return None
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for test in record.tests:
        for name in re.findall(r"\b([A-Za-z_]\w*)\s*\(", test):
            if name in defs:
                return tree, defs[name]
    return None


class _Returns(ast.NodeTransformer):
    """Rewrites the returned value of every `return` of one function (not nested ones)."""

    def __init__(self, rewrite: Callable[[ast.expr], ast.expr]) -> None:
        self.rewrite = rewrite

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        return node

    def visit_Return(self, node: ast.Return) -> ast.Return:
        value = node.value if node.value is not None else ast.Constant(None)
        return ast.Return(self.rewrite(value))


def _rewrite_returns(record: Record, rewrite: Callable[[ast.expr], ast.expr]) -> str | None:
    found = tested_function(record)
    if found is None:
        return None
    tree, func = found
    if not any(isinstance(n, ast.Return) for n in ast.walk(func)):
        return None
    func.body = [_Returns(rewrite).visit(stmt) for stmt in func.body]
    return ast.unparse(ast.fix_missing_locations(tree))


def _prepend(record: Record, source: str) -> str | None:
    """The solution with `source` run first in the tested function's body."""
    found = tested_function(record)
    if found is None:
        return None
    tree, func = found
    func.body = [*ast.parse(source).body, *func.body]
    return ast.unparse(ast.fix_missing_locations(tree))


_INT_EXPECTED = re.compile(r"^\s*assert\s+.*==\s*\(?\s*-?\d+\s*\)?\s*$")


def _syntax_error(record: Record) -> str | None:
    found = tested_function(record)
    if found is None:
        return None
    code = ast.unparse(found[0])
    header = re.search(rf"^(\s*def {found[1].name}\(.*):\s*$", code, re.MULTILINE)
    return None if header is None else code[: header.end(1)] + code[header.end():]


def _wrong_return(record: Record) -> str | None:
    if any("None" in t or re.match(r"\s*assert\s+not\b", t) for t in record.tests):
        return None
    return _rewrite_returns(record, lambda value: ast.Constant(None))


def _off_by_one(record: Record) -> str | None:
    if not all(_INT_EXPECTED.match(t) for t in record.tests):
        return None
    return _rewrite_returns(record, lambda v: ast.BinOp(v, ast.Add(), ast.Constant(1)))


CODE_BREAKS: tuple[tuple[str, Callable[[Record], str | None]], ...] = (
    ("syntax_error", _syntax_error),
    ("wrong_return", _wrong_return),
    ("off_by_one", _off_by_one),
)
NETWORK_CALLS = (
    ("urlopen", "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=5)"),
    ("socket_connect", "import socket\nsocket.create_connection(('93.184.216.34', 80), timeout=5)"),
    ("dns_lookup", "import socket\nsocket.gethostbyname('example.com')"),
)


def plant_code_fails(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    breaks = list(CODE_BREAKS)
    rng.shuffle(breaks)
    for name, make in breaks:
        code = make(record)
        if code is not None:
            return name, generated(record, group, answer=code)
    return None


def plant_code_hangs(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    code = _prepend(record, "while True:\n    pass")
    return None if code is None else ("while_true", generated(record, group, answer=code))


def plant_code_network(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    name, call = rng.choice(NETWORK_CALLS)
    code = _prepend(record, call)
    return None if code is None else (name, generated(record, group, answer=code))


def plant_nothing(record: Record, group: list[Record], rng: random.Random) -> Edit | None:
    return "untouched", generated(record, group)


MC_TASKS = ("arc_challenge", "arc_easy", "commonsense_qa", "openbookqa", "race", "social_i_qa")
PLANTERS: dict[str, tuple[Planter, tuple[str, ...] | None]] = {
    "correct": (plant_nothing, None),
    "wrong_answer_key": (plant_wrong_key, (*MC_TASKS, "boolq")),
    "arithmetic_error": (plant_arithmetic, ("gsm8k",)),
    "truncated": (plant_truncated, None),
    "truncated_stem": (plant_truncated_stem, CLOZE_TASKS),
    "refusal": (plant_refusal, None),
    "placeholder": (plant_placeholder, None),
    "seed_copy": (plant_seed_copy, None),
    "duplicate_options": (plant_duplicate_options, MC_TASKS),
    "code_fails_tests": (plant_code_fails, ("mbpp",)),
    "code_hangs": (plant_code_hangs, ("mbpp",)),
    "code_network": (plant_code_network, ("mbpp",)),
}


# --- the set ----------------------------------------------------------------------------


def _quotas(total: int, tasks: list[str]) -> dict[str, int]:
    share, extra = divmod(total, len(tasks))
    return {t: share + (i < extra) for i, t in enumerate(tasks)}


def _plant_task(kind: str, task: str, pool: list[Record], quota: int, seed: int
                ) -> list[Planted]:
    planter = PLANTERS[kind][0]
    rng = random.Random(f"{seed}/{kind}/{task}")
    order = list(range(len(pool)))
    rng.shuffle(order)
    items: list[Planted] = []
    for index in order:
        if len(items) == quota:
            break
        record = pool[index]
        group = seed_group(record, pool, rng)
        edit = planter(record, group, rng)
        if edit is not None:
            items.append(Planted(kind, edit[0], edit[1], group))
    return items


def build(records: dict[str, list[Record]], counts: dict[str, int], seed: int = 0
          ) -> list[Planted]:
    """The planted set: `counts[kind]` items of each kind spread evenly over its tasks."""
    items: list[Planted] = []
    for kind, total in counts.items():
        allowed = PLANTERS[kind][1]
        tasks = [t for t in records if allowed is None or t in allowed]
        for task, quota in _quotas(total, tasks).items():
            items += _plant_task(kind, task, records[task], quota, seed)
    return items


def default_counts(per_kind: int, correct: int, code_hangs: int | None = None
                   ) -> dict[str, int]:
    """`per_kind` of every defect kind (fewer hanging programs: each costs the time limit)."""
    counts = {kind: per_kind for kind in KINDS}
    counts["correct"] = correct
    if code_hangs is not None:
        counts["code_hangs"] = code_hangs
    return counts


# --- the filters ------------------------------------------------------------------------


@dataclass
class Chain:
    """The deterministic filters in pipeline order, with their default parameters."""

    code_seconds: float = 2.0
    validity_params: validity.ValidityParams = field(default_factory=validity.ValidityParams)
    heuristic_params: heuristics.HeuristicParams = field(
        default_factory=heuristics.HeuristicParams)
    framing: dict[str, heuristics.Framing] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verify = VerifyStage(VerifyParams(code_seconds=self.code_seconds))

    def steps(self, item: Planted) -> Iterable[tuple[str, Callable[[], Verdict]]]:
        record = item.record
        yield "copied_exemplar", lambda: copied_exemplar(record, item.group, max_overlap=0.5)
        yield "validity", lambda: validity.check(record, self.validity_params)
        yield "heuristics", lambda: heuristics.check(record, self.heuristic_params,
                                                            self.framing)
        yield "verify", lambda: self.verify.check(record)

    def judge(self, item: Planted) -> Outcome:
        """The first filter that drops the item, with its reason; KEEP leaves them None."""
        outcome = Outcome(item.kind, item.variant, item.record.task)
        for name, run in self.steps(item):
            verdict = run()
            if not verdict.keep:
                outcome.filter, outcome.reason, outcome.detail = name, *verdict[1:]
                break
        return outcome


def run_filters(items: list[Planted], code_seconds: float = 2.0, workers: int = 2,
                seeds: Iterable[Record] = ()) -> tuple[list[Outcome], float]:
    """Every item's outcome (in order) and the seconds they took; code runs `workers` at once.
    `seeds` are the tasks' seed records, as a run has them (the heuristics measure each
    task's framing on them)."""
    chain = Chain(code_seconds=code_seconds, framing=heuristics.framing_of(seeds))
    order = sorted(range(len(items)), key=lambda i: items[i].record.format != "code")
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        judged = dict(zip(order, pool.map(lambda i: chain.judge(items[i]), order), strict=True))
    return [judged[i] for i in range(len(items))], time.perf_counter() - start


# --- the report -------------------------------------------------------------------------


def reason_of(outcome: Outcome) -> str:
    """`filter:reason`, with the exception type for failing code."""
    tag = f"{outcome.filter}:{outcome.reason}"
    if outcome.reason == "code_fails_tests":
        error = re.match(r"([\w.]+)(?::|$)", outcome.detail)
        tag += f" ({error[1]})" if error else ""
    return tag


def summarize(items: list[Planted], outcomes: list[Outcome]) -> dict[str, Any]:
    """Recall per kind, precision of all drops, and false drops on correct items per task."""
    kinds: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = [(i, o) for i, o in zip(items, outcomes, strict=True) if o.kind == kind]
        if not mine:
            continue
        caught = [o for _, o in mine if o.dropped]
        missed = [(i, o) for i, o in mine if not o.dropped]
        kinds[kind] = {
            "planted": len(mine),
            "caught": len(caught),
            "recall": len(caught) / len(mine),
            "by": dict(Counter(reason_of(o) for o in caught).most_common()),
            "missed_by_variant": dict(Counter(o.variant for _, o in missed).most_common()),
            "missed_by_task_variant": dict(
                Counter(f"{o.task}:{o.variant}" for _, o in missed).most_common()),
            "missed_examples": [example(i) for i, _ in missed[:5]],
        }
    drops = [o for o in outcomes if o.dropped]
    defect_drops = [o for o in drops if o.kind != "correct"]
    return {
        "kinds": kinds,
        "drops": len(drops),
        "precision": len(defect_drops) / len(drops) if drops else 1.0,
        "correct_by_task": correct_by_task(items, outcomes),
    }


def correct_by_task(items: list[Planted], outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """Correct items per task: how many, how many dropped and why, with examples."""
    out: dict[str, dict[str, Any]] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome.kind != "correct":
            continue
        row = out.setdefault(outcome.task, {"n": 0, "dropped": 0, "by": Counter(),
                                            "examples": []})
        row["n"] += 1
        if outcome.dropped:
            row["dropped"] += 1
            row["by"][reason_of(outcome)] += 1
            if len(row["examples"]) < 3:
                row["examples"].append({**example(item), "detail": outcome.detail})
    for row in out.values():
        row["rate"] = row["dropped"] / row["n"]
        row["by"] = dict(row["by"])
    return dict(sorted(out.items()))


def example(item: Planted) -> dict[str, Any]:
    """A short view of a planted item for reports."""
    record = item.record
    view = {"kind": item.kind, "variant": item.variant, "task": record.task,
            "question": record.question[:160], "answer": record.answer[:160]}
    if record.choices:
        view["choices"] = [c[:60] for c in record.choices]
    if record.reasoning:
        view["reasoning_tail"] = record.reasoning[-160:]
    if record.context:
        view["context_tail"] = record.context[-120:]
    return view
