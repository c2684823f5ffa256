import pytest
from taskseed.curation.record import Format, Record, Source
from taskseed.judges.filters.validity import ValidityParams, ValidityStage, check

P = ValidityParams()


def rec(fmt=Format.MULTIPLE_CHOICE, **over) -> Record:
    fields = dict(
        task="t", family="f", format=fmt, question="Which one is a mammal?",
        choices=["whale", "shark", "trout"], answer="whale", license="MIT",
        source=Source("d"),
    )
    fields.update(over)
    return Record(**fields)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (rec(question="Why?"), "question_too_short"),
        (rec(answer=" "), "answer_missing"),
        (rec(answer="dolphin"), "answer_not_in_choices"),
        (rec(choices=["whale"]), "too_few_choices"),
        (rec(choices=["whale", "Whale", "trout"]), "duplicate_choices"),
        (rec(choices=["whale", " ", "trout"]), "empty_choice"),
        (rec(choices=["A) whale", "B) shark", "C) trout"], answer="A) whale"),
         "lettered_choices"),
        (rec(Format.YES_NO, choices=[], answer="maybe"), "answer_not_yes_no"),
        (rec(Format.MATH, choices=[], answer="about twelve"), "answer_not_numeric"),
        (rec(Format.EXTRACTIVE, choices=[], context="The cat sat.", answer="dog"),
         "answer_not_in_context"),
        (rec(Format.CODE, choices=[], answer="def f(): pass"), "code_without_tests"),
        (rec(question="x" * 30000), "too_long"),
    ],
)
def test_drops_carry_their_reason(record, reason):
    keep, got, detail = check(record, P)
    assert (keep, got) == (False, reason)
    assert detail


@pytest.mark.parametrize(
    "record",
    [
        rec(),
        rec(choices=["a whale", "B. Smith's shark", "c: trout"], answer="a whale"),
        rec(Format.YES_NO, choices=[], answer="no"),
        rec(Format.MATH, choices=[], answer="1,250"),
        rec(Format.MATH, choices=[], answer="-3.5"),
        rec(Format.EXTRACTIVE, choices=[], context="The cat sat on the mat.", answer="the mat"),
        rec(Format.CODE, choices=[], answer="def f(): pass", tests=["assert f() is None"]),
    ],
)
def test_valid_records_are_kept(record):
    assert check(record, P)[0]


def test_stage_splits_kept_and_rejected():
    good, bad = rec(), rec(answer="dolphin")
    result = ValidityStage(P).process([good, bad], 0)
    assert result.items == [good]
    assert [(r.reason, r.item_id) for r in result.rejects] == [("answer_not_in_choices", bad.id)]
