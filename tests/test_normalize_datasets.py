"""Exact normalized records for real rows of every seed dataset, and the format parsers."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from taskseed.curation.decontam.eval_sets import eval_splits, read_eval_split
from taskseed.curation.errors import RowError
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers import extract_fields, parse_mapping
from taskseed.curation.seeds.parsers.fields import parse_lettered
from taskseed.curation.seeds.parsers.llm_adapters import parse_llm_adapters
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"
TASKS = REPO / "configs" / "tasks"

needs_seeds = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds is not present")

EXPECTED = {
    (('gsm8k', 'train'), 0): {
        'question': (
            'Natalia sold clips to 48 of her friends in April, and then she sold half as many '
            'clips in May. How many clips did Natalia sell altogether in April and May?'
        ),
        'answer': '72',
        'reasoning': (
            'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = '
            '<<48+24=72>>72 clips altogether in April and May.'
        ),
    },
    (('gsm8k', 'train'), 7472): {
        'question': (
            'At 30, Anika is 4/3 the age of Maddie. What would be their average age in 15 years?'
        ),
        'answer': '50',
        'reasoning': (
            "If Anika is 30 now, in 15 years, she'll be 30+15=<<30+15=45>>45 years old.\nAt 30, "
            'Anika is 4/3 the age of Maddie, meaning Maddie is 4/3*30=<<4/3*30=40>>40 years.\nIn '
            '15 years, Maddie will be 40+15=<<40+15=55>>55 years old.\nTheir total age in 15 '
            'years will be 55+45=<<55+45=100>>100\nTheir average age in 15 years will be '
            '100/2=<<100/2=50>>50'
        ),
    },
    (('mbpp', 'train'), 0): {
        'question': (
            'Write a function to find the longest chain which can be formed from the given set '
            'of pairs.'
        ),
        'answer': (
            'class Pair(object): \r\n\tdef __init__(self, a, b): \r\n\t\tself.a = a \r\n\t\t'
            'self.b = b \r\ndef max_chain_length(arr, n): \r\n\tmax = 0\r\n\tmcl = [1 for i in '
            'range(n)] \r\n\tfor i in range(1, n): \r\n\t\tfor j in range(0, i): \r\n\t\t\tif '
            '(arr[i].a > arr[j].b and\r\n\t\t\t\tmcl[i] < mcl[j] + 1): \r\n\t\t\t\tmcl[i] = '
            'mcl[j] + 1\r\n\tfor i in range(n): \r\n\t\tif (max < mcl[i]): \r\n\t\t\tmax = '
            'mcl[i] \r\n\treturn max'
        ),
        'tests': [
            (
                'assert max_chain_length([Pair(5, 24), Pair(15, 25),Pair(27, 40), Pair(50, 60)], '
                '4) == 3'
            ),
            'assert max_chain_length([Pair(1, 2), Pair(3, 4),Pair(5, 6), Pair(7, 8)], 4) == 4',
            (
                'assert max_chain_length([Pair(19, 10), Pair(11, 12),Pair(13, 14), Pair(15, 16), '
                'Pair(31, 54)], 5) == 5'
            ),
        ],
    },
    (('commonsense_qa', 'train'), 1): {
        'question': 'Sammy wanted to go to where the people were.  Where might he go?',
        'choices': ['race track', 'populated areas', 'the desert', 'apartment', 'roadblock'],
        'answer': 'populated areas',
        'answer_label': 'B',
    },
    (('social_i_qa', 'train'), 0): {
        'question': 'How would Others feel as a result?',
        'context': 'Cameron decided to have a barbecue and gathered her friends together.',
        'choices': ['like attending', 'like staying home', 'a good friend to have'],
        'answer': 'like attending',
        'answer_label': 'A',
    },
    (('arc_easy', 'train'), 0): {
        'question': 'Which factor will most likely cause a person to develop a fever?',
        'choices': [
            'a leg muscle relaxing after exercise',
            'a bacterial population in the bloodstream',
            'several viral particles on the skin',
            'carbohydrates being digested in the stomach',
        ],
        'answer': 'a bacterial population in the bloodstream',
        'answer_label': 'B',
    },
    (('arc_challenge', 'train'), 1): {
        'question': (
            'Which of the following statements best explains why magnets usually stick to a '
            'refrigerator door?'
        ),
        'choices': [
            'The refrigerator door is smooth.',
            'The refrigerator door contains iron.',
            'The refrigerator door is a good conductor.',
            'The refrigerator door has electric wires in it.',
        ],
        'answer': 'The refrigerator door contains iron.',
        'answer_label': 'B',
    },
    (('openbookqa', 'train'), 0): {
        'question': 'The sun is responsible for',
        'choices': [
            'puppies learning new tricks',
            'children growing up and getting old',
            'flowers wilting in a vase',
            'plants sprouting, blooming and wilting',
        ],
        'answer': 'plants sprouting, blooming and wilting',
        'answer_label': 'D',
    },
    (('boolq', 'train'), 2): {
        'question': 'is windows movie maker part of windows essentials?',
        'answer': 'yes',
    },
    (('race', 'train'), 1): {
        'question': '_  can prevent high blood pressure, cerebral hemorrhages and so on.',
        'choices': [
            'Drinking some water after getting up in the morning',
            'Drinking some water before going to bed',
            'Drinking some soft drinks after getting up',
            'Drinking some milk before going to bed',
        ],
        'answer': 'Drinking some water after getting up in the morning',
        'answer_label': 'A',
        'context_start': (
            'Drinking water is good for your health. There are some scientific ways of drinki'
        ),
    },
    (('race', 'train'), 6068): {
        'question': 'Dealing with used tissues properly is important because   _  .',
        'choices': [
            'it helps keep your classroom tidy',
            'people hate picking up dirty tissues',
            'it prevents the spread of colds and flu',
            'picking up lots of tissues is hard work',
        ],
        'answer': 'it prevents the spread of colds and flu',
        'answer_label': 'C',
        'context_start': (
            'Do you have a sore throat, a running nose and a headache? Do you keep coughing a'
        ),
    },
    (('squad', 'train'), 1): {
        'question': "Who is responsible for India's smart city initiative?",
        'context': (
            'New Delhi has been selected as one of the hundred Indian cities to be developed as '
            "a smart city under PM Narendra Modi's flagship Smart Cities Mission."
        ),
        'answer': 'PM Narendra Modi',
    },
    (('arc_easy', 'test'), 0): {
        'question': (
            'Which statement best explains why photosynthesis is the foundation of most food '
            'webs?'
        ),
        'choices': [
            'Sunlight is the source of energy for nearly all ecosystems.',
            'Most ecosystems are found on land instead of in water.',
            'Carbon dioxide is more available than other gases.',
            'The producers in all ecosystems are plants.',
        ],
        'answer': 'Sunlight is the source of energy for nearly all ecosystems.',
        'answer_label': 'A',
    },
    (('boolq', 'validation'), 0): {
        'question': 'does ethanol take more energy make that produces',
        'answer': 'no',
        'context_start': (
            'Ethanol fuel -- All biomass goes through at least some of these steps: it needs '
        ),
    },
    (('hellaswag', 'validation'), 0): {
        'question': (
            'Pole vault is a sport where you run with a pole and stop and swing your body. a few '
            'women'
        ),
        'choices': [
            'go down a rock and stop.',
            'watch from around a pole vault.',
            'are in the wading pool.',
            'are in the gym practicing to do this pole vault, trying to do their best.',
        ],
        'answer': 'are in the gym practicing to do this pole vault, trying to do their best.',
        'answer_label': 'D',
    },
    (('logiqa', 'test'), 0): {
        'question': 'Based on the above statement, which of the following can be derived?',
        'choices': [
            'Civic Park is north of the administrative service area',
            'The leisure area is southwest of the cultural area',
            'The cultural district is in the northeast of the business district',
            'The business district is southeast of the leisure area',
        ],
        'answer': 'Civic Park is north of the administrative service area',
        'answer_label': 'A',
        'context_start': (
            'In the planning of a new district in a township, it was decided to build a speci'
        ),
    },
    (('mathqa', 'test'), 1): {
        'question': (
            'what will be the difference between simple and compound interest at 14 % per annum '
            'on a sum of rs . 1000 after 4 years ?'
        ),
        'choices': ['129', '130', '124', '133', '145'],
        'answer': '129',
        'answer_label': 'A',
    },
    (('mmlu', 'test'), 0): {
        'question': (
            'Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.'
        ),
        'choices': ['0', '4', '2', '6'],
        'answer': '4',
        'answer_label': 'B',
    },
    (('piqa', 'validation'), 1): {
        'question': 'dresser',
        'choices': ['replace drawer with bobby pin', 'finish, woodgrain with  bobby pin'],
        'answer': 'finish, woodgrain with  bobby pin',
        'answer_label': 'B',
    },
    (('race', 'validation'), 0): {
        'question': 'When something reflects light, we can   _  .',
        'choices': ['see its color', 'see its heat', 'not see its color', 'see nothing'],
        'answer': 'see its color',
        'answer_label': 'A',
        'context_start': (
            'What is color? Why do some of the things around us look red, some green, others '
        ),
    },
    (('social_i_qa', 'validation'), 0): {
        'question': 'What does Tracy need to do before this?',
        'context': "Tracy didn't go home that evening and resisted Riley's attacks.",
        'choices': ['make a new plan', 'Go home and see Riley', 'Find somewhere to go'],
        'answer': 'Find somewhere to go',
        'answer_label': 'C',
    },
    (('squadv2', 'validation'), 5): {
        'question': 'When did OPEC begin?',
        'answer': 'unanswerable',
        'context_start': (
            'The 1973 oil crisis began in October 1973 when the members of the Organization o'
        ),
    },
    (('winogrande', 'validation'), 0): {
        'question': (
            'Sarah was a much better surgeon than Maria so _ always got the easier cases.'
        ),
        'choices': ['Sarah', 'Maria'],
        'answer': 'Maria',
        'answer_label': 'B',
    },
}

SOURCES = {
    (("mbpp", "train"), 0): ("mbpp/mbpp.jsonl", 600),
    (("race", "train"), 6068): ("race/train_high.first1200_of_15137.jsonl", 0),
    (("mmlu", "test"), 0): ("mmlu/test/abstract_algebra_test.csv", 0),
    (("logiqa", "test"), 0): ("logiqa/Test.txt", 0),
    (("squadv2", "validation"), 5): ("squad/squad_v2.0_dev.from_explorer.jsonl", 5),
}
FIELDS = ("question", "context", "choices", "answer", "answer_label", "reasoning", "tests")


@cache
def _specs() -> dict[str, TaskSpec]:
    return load_task_specs(sorted(TASKS.glob("*.yaml")))


@cache
def _records(task: str, split: str, upto: int) -> list:
    specs = _specs()
    if split == "train":
        one = {task: specs[task]}
        stage = SeedStage(SeedParams(max_per_task=upto + 1, rows_per_shard=10**6), one, SEEDS)
        (shard,) = stage.plan()
        raws = stage.read(shard).items
        done = NormalizeStage(None, one).process(raws, 0).items
        by_row = {(r.source.path, r.source.row): r for r in done}
        # one entry per training row, None where normalization rejected the row
        return [by_row.get((raw.source.path, raw.source.row)) for raw in raws]
    (target,) = [t for t in eval_splits(specs) if (t.task, t.split) == (task, split)]
    return read_eval_split(target, SEEDS).items


@needs_seeds
@pytest.mark.parametrize("key", list(EXPECTED), ids=lambda k: f"{k[0][0]}-{k[0][1]}-{k[1]}")
def test_exact_record(key):
    (task, split), index = key
    record = _records(task, split, max(i for (t, i) in EXPECTED if t == (task, split)))[index]
    expected = dict(EXPECTED[key])
    context_start = expected.pop("context_start", None)
    got = {f: getattr(record, f) for f in FIELDS if getattr(record, f) not in (None, [])}
    if context_start is not None:
        assert got.pop("context").startswith(context_start)
    assert got == expected
    spec = _specs()[task]
    assert (record.task, record.family, record.format) == (task, spec.family, spec.format)
    assert record.source.split == split
    assert (record.license, record.commercial) == (spec.license, spec.commercial)
    if key in SOURCES:
        assert (record.source.path, record.source.row) == SOURCES[key]


@needs_seeds
def test_race_explodes_articles_into_questions():
    first_article = json.loads((SEEDS / "race/train_middle.first1500_of_6409.jsonl")
                               .read_text(encoding="utf-8").splitlines()[0])
    records = _records("race", "train", 6068)
    n = len(first_article["questions"])
    assert [r.question for r in records[:n]] == [q.strip() for q in first_article["questions"]]
    assert {r.context for r in records[:n]} == {first_article["article"].strip()}
    assert [r.answer_label for r in records[:n]] == first_article["answers"]
    assert records[n].context != records[0].context


# --- format parsers on made-up rows ---------------------------------------------------------


def test_llm_adapters_patterns():
    piqa = parse_llm_adapters({
        "instruction": "Please choose the correct solution to the question: Open a jar.\n\n"
                       "Solution1: Twist the lid.\n\nSolution2: Freeze it.\n\n"
                       "Answer format: solution1/solution2",
        "answer": "solution1"})
    assert piqa == {"question": "Open a jar.", "choices": ["Twist the lid.", "Freeze it."],
                    "answer_index": 0, "answer": "solution1"}
    wino = parse_llm_adapters({
        "instruction": "Please choose the correct answer to fill in the blank to complete the "
                       "given sentence: Ann beat Bo so _ won.\n\nOption1: Ann Option2: Bo "
                       "Answer format: option1/option2", "answer": "option1"})
    assert (wino["question"], wino["choices"]) == ("Ann beat Bo so _ won.", ["Ann", "Bo"])
    swag = parse_llm_adapters({
        "instruction": "Please choose the correct ending to complete the given sentence: "
                       "A man sits.\n\nEnding1: He stands. Ending2: He flies.\n\n"
                       "Answer format: ending1/ending2", "answer": "ending2"})
    assert (swag["choices"], swag["answer_index"]) == (["He stands.", "He flies."], 1)
    yes_no = parse_llm_adapters({
        "instruction": "Please answer the following question with true or false, question: "
                       "is the sky blue?\n\nAnswer format: true/false", "answer": "true"})
    assert yes_no == {"question": "is the sky blue?", "choices": [], "answer_index": None,
                      "answer": "true"}
    mathqa = parse_llm_adapters({
        "instruction": "what is 10 % of 50 ? The options: A ) 5 , B ) 1,000 , C ) 5 , 0 , "
                       "D ) none", "answer": "D"})
    assert mathqa["choices"] == ["5", "1,000", "5 , 0", "none"]
    assert (mathqa["question"], mathqa["answer_index"]) == ("what is 10 % of 50 ?", 3)


def test_lettered_choices():
    assert parse_lettered("a ) 38 , b ) 27.675 , c ) 30") == ["38", "27.675", "30"]
    assert parse_lettered("['A ) 2 : 3', 'B ) B ) 4 : 5', 'C ) 9']") == ["2 : 3", "4 : 5", "9"]
    with pytest.raises(RowError) as info:
        parse_lettered("a ) 1 , c ) 2 , b ) 3")
    assert info.value.reason == "unparsable"


def _fields(row: dict, fmt: Format = Format.MULTIPLE_CHOICE, **mapping):
    return extract_fields(row, parse_mapping(mapping), fmt)


def test_jinja_templates_like_lm_eval():
    arc = _fields(
        {"question": "Which is a metal?", "choices": {"text": ["wood", "iron"],
                                                      "label": ["1", "2"]}, "answerKey": "2"},
        parser="jinja", text_template="Question: {{question}}\nAnswer:",
        choices_template="{{choices.text}}",
        target_template="{{choices.label.index(answerKey)}}")
    assert (arc.question, arc.choices, arc.answer, arc.answer_label) == (
        "Question: Which is a metal?\nAnswer:", ["wood", "iron"], "iron", "B")
    siqa = _fields(
        {"context": "Kai lent a pen.", "question": "Why?", "answerA": "kind", "answerB": "rude",
         "answerC": "lost", "label": "1"},
        parser="jinja", text_template="Q: {{context}} {{question}}\nA:",
        choices_template="{{[answerA, answerB, answerC]}}",
        target_template="{{ (label|int) - 1 }}")
    assert (siqa.answer, siqa.choices) == ("kind", ["kind", "rude", "lost"])
    boolq = _fields({"passage": "Sky is blue.", "question": "is sky blue", "label": 1},
                    parser="jinja", text_template="{{passage}}\nQuestion: {{question}}?",
                    choices_template=["no", "yes"], target_template="label")
    assert (boolq.answer, boolq.answer_label) == ("yes", "B")
    gsm = _fields({"question": "1+1?", "answer": "1+1=2\n#### 2"}, Format.FREE_FORM,
                  parser="jinja", text_template="Question: {{question}}\nAnswer:",
                  target_template="{{answer}}")
    assert (gsm.answer, gsm.choices) == ("1+1=2\n#### 2", [])
    with pytest.raises(RowError) as info:
        _fields({"q": "x"}, Format.FREE_FORM, parser="jinja", text_template="{{question}}",
                target_template="{{answer}}")
    assert (info.value.reason, info.value.field) == ("missing_field", "text_template")


def test_yes_no_accepts_booleans_and_labels():
    mapping = {"question": "question", "context": "passage", "answer": "label"}
    row = {"question": "q", "passage": "p"}
    assert _fields({**row, "label": True}, Format.YES_NO, **mapping).answer == "yes"
    assert _fields({**row, "label": 0}, Format.YES_NO, **mapping).answer == "no"
    with pytest.raises(RowError, match="not yes or no"):
        _fields({**row, "label": "maybe"}, Format.YES_NO, **mapping)


def test_answer_text_among_choices_gets_its_label():
    got = _fields({"Q": "2+2?", "right": "4", "wrong": "5"}, question="Q",
                  choices=["wrong", "right"], answer="right")
    assert (got.answer, got.answer_label) == ("4", "B")


def test_format_requirements():
    with pytest.raises(RowError, match="extractive QA needs a context"):
        _fields({"q": "Who?", "a": "Bo"}, Format.EXTRACTIVE, question="q", answer="a")
    with pytest.raises(RowError, match="code tasks need tests"):
        _fields({"q": "Add.", "a": "def f(): pass", "t": []}, Format.CODE, question="q",
                answer="a", tests="t")
    with pytest.raises(RowError, match="no final answer after"):
        _fields({"q": "1+1?", "a": "2"}, Format.MATH, question="q", answer="a",
                final_answer_marker="####")
