"""The heuristics filter: cheap checks with no model, run first in the cascade.

Each check is a function of a record that gives a `Verdict`; the first drop wins. They
catch what a small or careless teacher writes most often: refusals, meta-text and
template placeholders, a question that is not one for its format, label-only answers,
answers that repeat the question, looping text, and text out of language or length bounds.
(Near-copies of a record's own seeds are caught by the generate stage, which has them.)
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from taskseed.curation.formats import answer_format
from taskseed.curation.record import Record
from taskseed.curation.stage import (
    KEEP,
    BuildContext,
    FilterStage,
    StageParams,
    Verdict,
    drop,
)
from taskseed.curation.text import normalize_text, word_ngrams

REFUSAL = re.compile(
    r"\b(I'?m sorry,? but|I am sorry,? but|I apologi[sz]e|as an AI|as a language model|"
    r"I(?: cannot| can'?t| am unable to|'?m unable to| won'?t) (help|assist|provide|answer|comply|"
    r"fulfil|generate|create|do that)|I do not have (access|the ability)|"
    r"I don'?t have (access|the ability)|not able to (help|assist|answer))\b",
    re.IGNORECASE,
)
PLACEHOLDER = re.compile(
    r"\b(question_type|answer_index|answer_label|question_text|answer_text|choice_[a-z0-9]|"
    r"lorem ipsum|todo|tbd|placeholder|insert (the |a |your )?(question|answer|text) here)\b"
    r"|\{\{\s*\w+\s*\}\}|\{(question|answer|context|choices?|options?|topic|task)\}|<\s*(question|answer|context|choice|option)s?\s*>|"
    r"\[\s*(question|answer|context|insert[^\]]*)\s*\]",
    re.IGNORECASE,
)
META = re.compile(
    r"^\s*(question|answer|q|a)\s*\d*\s*[:.]|^\s*the (correct )?answer is\b|"
    r"\b(here is|here's|below is) (a|an|the|your|another) (new |next )?(question|example|"
    r"problem|item)|\b(new|generated|following) (example|json|question) (is|follows)\b|"
    r"\bthis (question|example) (is|was) (generated|written)\b",
    re.IGNORECASE,
)
# Enrichment that talks about the prompt instead of the example.
ECHO = re.compile(
    r"^\s*the (correct )?answer is\b|\bcorrect and final\b|"
    r"\bthe (answer|solution) (above|given) is correct\b|"
    r"\bdo not change (it|the answer)\b|\breply (in|with) json\b",
    re.IGNORECASE,
)
# Text that stops mid-sentence on a word that cannot end one.
DANGLING = re.compile(
    r"\b(the|a|an|and|or|of|to|is|are|was|were|be|been|with|for|in|on|at|by|from|that|which|"
    r"because|than|as|if|then|so|but|his|her|their|its|our|my|your|did|does|do|has|have|had|"
    r"could|would|should|will|can|when|while|into|onto|about|after|before|during|just|very)"
    r"\s*$", re.IGNORECASE)
# Words an option seldom ends with even where options end on a stranded word ("how long the
# road is", "taken care of"): articles, conjunctions, possessives, and a preposition or
# relative pronoun after a noun-like word ("a volcano erupting in", "the large object that").
CUT_OFF = re.compile(
    r"\b(the|a|an|and|or|but|because|than|whose|their|its|my|your|our)\s*$"
    r"|\b(?!(?:\w+ed|\w+en|care|used|made|of|for|up|out)\b)\w+ (to|that|which|with|into|of)\s*$",
    re.IGNORECASE)
_OPEN_STEM = re.compile(r"(^|[.!?]\s+)(which|what|who|how|why|where|when)\b[^.!?]*$",
                        re.IGNORECASE)
FILE_NAME = re.compile(r"\b[\w-]+\.(jsonl?|csv|tsv|parquet|ya?ml|txt|py|j2)\b", re.IGNORECASE)
LABEL_ONLY = re.compile(
    r"^\s*((the )?(option|answer|choice|label)\s*[(\[]?\s*([a-h]|[1-8])|[(\[]?\s*[A-H])"
    r"\s*[)\].:]?\s*$",
    re.IGNORECASE,
)


class HeuristicParams(StageParams):
    """Bounds of the heuristics filter; `languages: []` turns the language check off."""

    min_question_words: int = Field(3, ge=1)
    max_question_words: int = Field(400, ge=1)
    max_answer_words: int = Field(400, ge=1)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    min_language_words: int = Field(6, ge=1)
    min_language_prob: float = Field(0.001, ge=0, le=1)
    max_repeated_trigrams: float = Field(0.45, ge=0, le=1)
    max_answer_in_question: float = Field(0.8, ge=0, le=1)
    # an option stem or passage (an option) ending mid-sentence is truncated in a task whose
    # seeds end fewer than this share of theirs so
    min_stem_share: float = Field(0.02, ge=0, le=1)
    min_option_share: float = Field(0.002, ge=0, le=1)


def _texts(record: Record) -> list[tuple[str, str]]:
    """(field, text) of every generated text field of a record."""
    fields = [("question", record.question), ("answer", record.answer),
              ("context", record.context or ""), ("reasoning", record.reasoning or ""),
              ("knowledge", record.knowledge or "")]
    fields += [(f"choices[{i}]", c) for i, c in enumerate(record.choices)]
    return [(name, text) for name, text in fields if text]


def refusal(record: Record, params: HeuristicParams) -> Verdict:
    for name, text in _texts(record):
        if name == "context":
            continue
        match = REFUSAL.search(text)
        # a question or an option may quote someone apologizing; only one that opens with it
        # is a refusal
        if match and (name in ("answer", "reasoning", "knowledge") or match.start() == 0):
            return drop("refusal", f"{name}: '{match.group(0)}'")
    return KEEP


def placeholder(record: Record, params: HeuristicParams) -> Verdict:
    code = answer_format(record.format).is_code
    for name, text in _texts(record):
        if code and name in ("answer", "reasoning"):
            continue
        if match := PLACEHOLDER.search(text):
            return drop("placeholder", f"{name}: '{match.group(0)}'")
        if not code and name in ("question", "answer") and (match := FILE_NAME.search(text)):
            return drop("placeholder", f"{name}: file name '{match.group(0)}'")
    for name in ("question", "answer"):
        if match := META.search(getattr(record, name)):
            return drop("meta_text", f"{name}: '{match.group(0).strip()}'")
    for name in ("reasoning", "knowledge"):
        if match := ECHO.search(getattr(record, name) or ""):
            return drop("meta_text", f"{name}: '{match.group(0).strip()}'")
    if "_" in record.task:  # an identifier such as `quickstart_completion`, copied from a prompt
        for name, text in _texts(record):
            if record.task.lower() in text.lower():
                return drop("meta_text", f"{name}: names the task id '{record.task}'")
    return KEEP


# Words of an enrichment that talks about the item instead of explaining it ("The answer to
# the question", "This is the correct answer").
_ABOUT_ITEM = frozenset({
    "the", "a", "an", "this", "that", "it", "is", "was", "to", "of", "for", "answer",
    "answers", "question", "questions", "correct", "final", "right", "true", "yes", "no",
    "option", "choice", "given", "above",
})


def thin_enrichment(record: Record, params: HeuristicParams) -> Verdict:
    """Reasoning or knowledge that only restates the answer, or only speaks of "the answer"
    and "the question", explains nothing."""
    answer = normalize_text(record.answer)
    for name in ("reasoning", "knowledge"):
        text = normalize_text(getattr(record, name))
        words = set(text.split())
        if text and (text == answer or len(text.split()) < 3 or words <= _ABOUT_ITEM
                     | set(answer.split())):
            return drop("thin_enrichment", f"{name}: '{getattr(record, name)[:60]}'")
    return KEEP


def _dangles(text: str, words: re.Pattern[str] = DANGLING) -> bool:
    """Whether a text of more than three words stops on one of `words` ("Vitamin A" does not)."""
    return (len(text.split()) > 3 and not text.endswith(" A")
            and words.search(text) is not None)


@dataclass(frozen=True, slots=True)
class Framing:
    """How a task's seeds end their texts: the share of option stems and of options that
    stop on a word no sentence ends with (cloze stems such as "The sun is responsible for"),
    and of passages with no closing punctuation."""

    open_stems: float = 1.0
    open_options: float = 1.0
    open_contexts: float = 1.0


_CLOSED = re.compile(r"[.!?\"'\u201d)\]]\s*$")


def framing_of(seeds: Iterable[Record]) -> dict[str, Framing]:
    """Each task's `Framing`, measured on its seed records."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in seeds:
        n = counts[record.task]
        if record.context:
            n["contexts"] += 1
            n["open_contexts"] += _CLOSED.search(record.context) is None
        if record.choices:
            n["stems"] += 1
            n["open_stems"] += DANGLING.search(record.question.strip()) is not None
            n["options"] += len(record.choices)
            n["open_options"] += sum(_dangles(c.strip()) for c in record.choices)
    return {task: Framing(*(n[f"open_{k}"] / n[k] if n[k] else 1.0
                            for k in ("stems", "options", "contexts")))
            for task, n in counts.items()}


def truncated(record: Record, params: HeuristicParams,
              framing: Framing | None = None) -> Verdict:
    """Text that stops on a word no sentence ends with. An option stem or an option may end
    so in tasks whose seeds do ("The sun is responsible for"): there a stem counts only when
    its last sentence is an open question, and an option only when it stops on a `CUT_OFF`
    word."""
    framing = framing or Framing()
    if record.context and framing.open_contexts < params.min_stem_share and (
            _CLOSED.search(record.context) is None):
        return drop("truncated_text", f"context ends with '{record.context.split()[-1]}' and no "
                    "closing punctuation")
    names = ["context", "reasoning", "knowledge"]
    if not record.choices:
        names += ["question", "answer"]
    else:
        if framing.open_stems < params.min_stem_share or _OPEN_STEM.search(record.question.strip()):
            names.append("question")
    open_options = framing.open_options >= params.min_option_share
    for name in names:
        text = (getattr(record, name) or "").strip()
        if (not answer_format(record.format).is_code or name != "answer") and _dangles(text):
            return drop("truncated_text", f"{name} ends with '{text.split()[-1]}'")
    for i, option in enumerate(record.choices):
        if _dangles(option.strip(), CUT_OFF if open_options else DANGLING):
            return drop("truncated_text", f"choices[{i}] ends with '{option.split()[-1]}'")
    return KEEP


def question_form(record: Record, params: HeuristicParams) -> Verdict:
    return answer_format(record.format).check_question(record)


def label_only(record: Record, params: HeuristicParams) -> Verdict:
    if answer_format(record.format).answer_kind != "text":
        return KEEP
    if LABEL_ONLY.match(record.answer):
        return drop("label_only_answer", f"'{record.answer}'")
    if record.choices and all(LABEL_ONLY.match(c) for c in record.choices):
        return drop("label_only_answer", "every option is a bare label")
    return KEEP


def repeats_question(record: Record, params: HeuristicParams) -> Verdict:
    question, answer = normalize_text(record.question), normalize_text(record.answer)
    if answer and answer == question:
        return drop("answer_repeats_question", "the answer is the question")
    if record.choices or answer_format(record.format).answer_kind == "value":
        return KEEP
    grams = word_ngrams(answer, 3)
    if len(grams) >= 3:
        shared = len(grams & word_ngrams(question, 3)) / len(grams)
        if shared > params.max_answer_in_question:
            return drop("answer_repeats_question", f"{shared:.0%} of its 3-grams")
    return KEEP


def repetitive(record: Record, params: HeuristicParams) -> Verdict:
    for name, text in _texts(record):
        if name == "context" or (answer_format(record.format).is_code and name == "answer"):
            continue
        words = normalize_text(text).split()
        if len(words) < 12:
            continue
        trigrams = [" ".join(words[i:i + 3]) for i in range(len(words) - 2)]
        repeated = 1 - len(set(trigrams)) / len(trigrams)
        if repeated > params.max_repeated_trigrams:
            return drop("repetitive", f"{name}: {repeated:.0%} of its 3-grams repeat")
    return KEEP


def length(record: Record, params: HeuristicParams) -> Verdict:
    words = len(record.question.split())
    # an option stem may be a word or two ("Sunlight"); its options complete it
    if words < (1 if record.choices else params.min_question_words):
        return drop("question_too_short", f"{words} words")
    if words > params.max_question_words:
        return drop("question_too_long", f"{words} words")
    answer_words = len(record.answer.split())
    if not answer_format(record.format).is_code and answer_words > params.max_answer_words:
        return drop("answer_too_long", f"{answer_words} words")
    return KEEP


@lru_cache(maxsize=1)
def _identifier() -> Callable[[str], list[tuple[str, float]]]:
    """py3langid's ranking with probabilities that sum to 1 over its 97 languages."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_modelpath(Path(MODEL_DIR) / MODEL_FILE, norm_probs=True)
    return model.rank


def language(record: Record, params: HeuristicParams) -> Verdict:
    if not params.languages:
        return KEEP
    text = " ".join(filter(None, [record.context, record.question]))
    if len(text.split()) < params.min_language_words or answer_format(record.format).is_code:
        return KEEP
    ranking = _identifier()(text)
    allowed = sum(p for lang, p in ranking if lang in params.languages)
    # short English text is often ranked as a neighbour (nl, pcm); only text that is
    # clearly not in an allowed language is dropped
    if allowed < params.min_language_prob:
        return drop("wrong_language", f"'{ranking[0][0]}' ({allowed:.1e} for "
                    f"{','.join(params.languages)})")
    return KEEP


Check = Callable[[Record, HeuristicParams], Verdict]
# Cheapest first; the first drop is the record's reason.
CHECKS: tuple[Check, ...] = (
    length, placeholder, refusal, label_only, thin_enrichment, truncated, repeats_question,
    question_form,
    repetitive, language,
)


def check(record: Record, params: HeuristicParams,
          framing: dict[str, Framing] | None = None) -> Verdict:
    """The first failing check's verdict, or KEEP. `framing` (by task, from the seeds) lets
    the truncation check tell a cut text from a task's own cloze form."""
    task_framing = (framing or {}).get(record.task)
    for run in CHECKS:
        verdict = (truncated(record, params, task_framing) if run is truncated
                   else run(record, params))
        if not verdict.keep:
            return verdict
    return KEEP


class HeuristicsStage(FilterStage[HeuristicParams]):
    """Drops refusals, placeholders, non-questions, label-only and looping text (no model)."""

    name = "heuristics"
    params_model = HeuristicParams

    def __init__(self, params: HeuristicParams, seeds: Any = None) -> None:
        super().__init__(params)
        self.seeds = seeds
        self._framing: dict[str, Framing] | None = None

    @classmethod
    def build(cls, params: HeuristicParams, context: BuildContext) -> HeuristicsStage:
        return cls(params, context.seeds)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_framing": None}

    def framing(self) -> dict[str, Framing]:
        """Each task's framing, measured on the run's seeds once per process."""
        if self._framing is None:
            self._framing = framing_of(self.seeds.records()) if self.seeds is not None else {}
        return self._framing

    def check(self, record: Record) -> Verdict:
        return check(record, self.params, self.framing())
