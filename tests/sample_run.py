"""A small, realistic run directory: real seeds, a loopback teacher, judge and reward model,
and every curation stage, for tests of what reads run directories (the report).

`build_sample_run(root)` writes three task specs over real rows of ../shared/seeds
(GSM8K, CommonsenseQA with a `<script>` planted in one seed, and RACE, which is not
commercial), runs the pipeline against `FakeOpenAIServer` and returns the run directory.

The loopback teacher answers the k-th generate request of each task with a fixed kind of
record, so the run always holds: a placeholder (dropped by heuristics), a copy of a
held-out item (planted in the task's eval split, dropped by decontamination), an exact
duplicate pair, a near-duplicate pair and a near-copy of a seed. The judge gives varied
scores (some below the thresholds), the reward model hashes its scores, and both pass the
planted records, and those made from the seed with the `<script>`, so that later stages
and the report see them.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import xxhash
from taskseed.generation.servers.fake import FakeOpenAIServer, default_reward

from taskseed.execution.run import run_pipeline

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
SEED_ROWS = 9  # per task: three exemplar groups of three
EVAL_ROWS = 25
SCRIPT = "<script>alert('seed')</script>"
MARKER = "lantern"  # a word of the planted records

PIPELINE = """name: report-sample
run_dir: {run}
seeds_root: seeds
tasks: [tasks/*.yaml]
executor: {{workers: 1}}
teacher: {{backend: openai, base_url: "{url}", model: fake-teacher, max_retries: 1,
          license: Apache-2.0}}
models:
  judge: {{backend: openai, base_url: "{url}", model: fake-judge, max_retries: 1}}
  reward: {{backend: nim_reward, base_url: "{url}", model: fake-reward, max_retries: 1}}
budget:
  usd_per_1m_prompt_tokens: 0.6
  usd_per_1m_completion_tokens: 2.4
  models: {{judge: {{usd_per_1m_prompt_tokens: 0.1, usd_per_1m_completion_tokens: 0.4}}}}
accept: {{target: 5, max_candidates: 24, max_rounds: 2}}
stages:
  - {{name: seeds, rows_per_shard: 64}}
  - {{name: normalize}}
  - {{name: generate, exemplars: 3, samples_per_group: 4, groups_per_shard: 3}}
  - {{name: validity}}
  - {{name: heuristics}}
  - {{name: llm_judge, model: judge, thresholds: {{clarity: 3, alignment: 3}}}}
  - {{name: reward, model: reward, thresholds: {{correctness: 0.8}}, min_score: 1.5}}
  - {{name: enrich}}
  - {{name: decontaminate}}
  - {{name: exact_dedup, shards: 1}}
  - {{name: fuzzy_dedup, shards: 2}}
  - {{name: mix, shards: 1, commercial_subset: true}}
"""

SPECS = {
    "gsm8k_mini": """name: gsm8k_mini
family: gsm8k
format: math
license: MIT
source: {dataset: openai/gsm8k, config: main}
scored_split: test
train: {split: train, files: [gsm8k_train.jsonl],
        mapping: {question: question, answer: answer, final_answer_marker: "####"}}
eval:
  - {split: test, files: [gsm8k_test.jsonl],
     mapping: {question: question, answer: answer, final_answer_marker: "####"}}
""",
    "csqa_mini": """name: csqa_mini
family: commonsense_qa
format: multiple_choice
license: MIT
source: {dataset: tau/commonsense_qa}
scored_split: validation
train:
  split: train
  files: [csqa_train.jsonl]
  mapping: &csqa
    question: question.stem
    choices: "question.choices[*].text"
    choice_labels: "question.choices[*].label"
    answer_key: answerKey
eval:
  - {split: validation, files: [csqa_dev.jsonl], mapping: *csqa}
""",
    "race_mini": """name: race_mini
family: race
format: multiple_choice
license: RACE research-only, non-commercial (CMU terms)
source: {dataset: EleutherAI/race, config: middle}
scored_split: test
train:
  split: train
  files: [race_train.jsonl]
  mapping: {context: context, question: question, choices: choices, answer: answer}
""",
}

# The k-th generate request of a task gets this kind of record (others are ordinary).
KINDS = {0: "placeholder", 1: "eval_copy", 2: "duplicate", 3: "duplicate", 4: "near_a",
         5: "near_b", 6: "seed_copy"}

NAMES = ["Maya", "Omar", "Lena", "Tariq", "Ines", "Kofi", "Priya", "Jonas", "Aiko", "Bruno"]
ITEMS = ["apples", "pencils", "stamps", "marbles", "cookies", "stickers", "shells", "books"]
PLACES = ["library", "harbour", "bakery", "garden", "museum", "station", "market", "farm"]
OPTION_PLACES = ["on the hook by the door", "under the kitchen sink", "inside a drawer",
                 "at the bottom of the well", "behind the bookcase", "on the windowsill",
                 "in the car boot", "beside the bed", "on the top shelf", "in a basket"]
FRAMES = [
    "Where would a visitor most likely put a {word} when arriving at the {place}?",
    "Why might a child carry a small {word} all the way to the {place} on a rainy morning?",
    "What is the usual reason for a shopkeeper to hang a {word} near the door of a {place}?",
    "Which job at the {place} would most often require someone to repair a broken {word}?",
    "When friends plan a picnic near the {place}, what do they usually do with the {word}?",
]
WORDS = ["blanket", "compass", "kettle", "ladder", "ribbon", "saddle", "thimble", "violin",
         "whistle", "anchor", "bucket", "candle"]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _race_rows(seeds_root: Path) -> list[dict[str, Any]]:
    """RACE articles exploded into one row per question, with the option text as answer."""
    rows = []
    for article in _rows(seeds_root / "race" / "train_middle.first1500_of_6409.jsonl"):
        for question, options, key in zip(article["questions"], article["options"],
                                          article["answers"], strict=True):
            rows.append({"context": article["article"], "question": question,
                         "choices": options, "answer": options["ABCD".index(key)]})
            if len(rows) == SEED_ROWS:
                return rows
    return rows


class Planted:
    """The planted texts of each task (eval copies, duplicates, near-copies)."""

    def __init__(self, gsm8k_seed: dict[str, Any]) -> None:
        self.gsm8k_seed = gsm8k_seed

    @staticmethod
    def math(k: int, kind: str) -> dict[str, str]:
        """A word problem; the planted kinds share one story (duplicates are identical,
        the near pair differs in one word)."""
        name, item = NAMES[k % len(NAMES)], ITEMS[k % len(ITEMS)]
        a, b, c = 3 + k % 5, 4 + k % 7, 1 + k % 3
        tail = {
            "duplicate": " On Friday she walks to the lantern fair and counts them again.",
            "near_a": " On Monday evening she walks to the lantern fair and counts them once "
                      "more, slowly and carefully, before dinner with her two cousins.",
            "near_b": " On Tuesday evening she walks to the lantern fair and counts them once "
                      "more, slowly and carefully, before dinner with her two cousins.",
        }
        if kind == "eval_copy":
            return {"question": "At the lantern fair a stall sells paper lanterns for 3 dollars "
                                "each and glass lanterns for 12 dollars each. Tomas buys 4 paper "
                                "lanterns and 2 glass lanterns. How much does he spend?",
                    "reasoning": "4 x 3 = 12 and 2 x 12 = 24, so he spends 12 + 24 = 36.",
                    "answer": "36"}
        if kind in tail:
            name, item, a, b, c = "Rosa", "candles", 6, 8, 5
        extra = tail.get(kind, f" Later {name} visits the {PLACES[k % len(PLACES)]}."
                         if k % 2 else "")
        question = (f"{name} packs {a} boxes with {b} {item} in each box and then gives {c} "
                    f"{item} to a neighbour.{extra} How many {item} does {name} have left?")
        total = a * b - c
        reasoning = (f"{name} packs {a} x {b} = {a * b} {item}. After giving away {c}, "
                     f"{a * b} - {c} = {total} {item} are left.")
        return {"question": question, "reasoning": reasoning, "answer": str(total)}

    @staticmethod
    def choice(k: int, kind: str, n: int) -> dict[str, Any]:
        """A multiple-choice question with `n` options, the first one correct."""
        if kind != "plain":
            k = 2  # planted records share their options
        word, place = WORDS[k % len(WORDS)], PLACES[(k * 3) % len(PLACES)]
        question = FRAMES[k % len(FRAMES)].format(word=word, place=place)
        planted = {
            "duplicate": "Where would a visitor most likely put a lantern when arriving at "
                         "the lighthouse?",
            "near_a": "Where would a tired visitor most likely put a heavy lantern carefully "
                      "when arriving at the old lighthouse late at night?",
            "near_b": "Where would a tired visitor most likely put a heavy lantern quietly "
                      "when arriving at the old lighthouse late at night?",
            "eval_copy": "Where would an old keeper hang a brass lantern so that passing "
                         "fishing boats can see the rocky shore clearly through the thick "
                         "autumn fog?",
        }
        if kind == "eval_copy":
            options = ["on an iron hook high in the lamp room", "inside the cellar",
                       "under the boat", "in the garden shed", "beside the front gate"]
        else:
            options = [f"{OPTION_PLACES[(k + 3 * i) % len(OPTION_PLACES)]}" for i in range(5)]
        return {"question": planted.get(kind, question), "choices": options[:n],
                "answer_index": 0}


class SampleResponder:
    """The loopback teacher, judge and enricher of the sample run (thread-safe)."""

    def __init__(self, planted: Planted) -> None:
        self.planted = planted
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.passing: set[str] = set()  # questions the judge and reward model pass

    def __call__(self, body: dict[str, Any]) -> str:
        schema = _schema(body)
        required = list(schema.get("required", []))
        user = body["messages"][-1]["content"]
        if "question" in required:
            return json.dumps(self.generate(user, required, schema))
        if "clarity" in required:
            question = graded_question(user)
            return json.dumps(judge(question, required, question in self.passing))
        return json.dumps({name: enrichment(user, name) for name in required})

    def generate(self, user: str, required: list[str], schema: dict[str, Any]) -> dict[str, Any]:
        task = re.search(r'from the task "([^"]+)"', user)
        name = task.group(1) if task else "?"
        protected = SCRIPT in user  # the group with the planted seed makes ordinary records
        with self.lock:
            k = self.counts[name] if not protected else 100 + self.counts[f"{name}+"]
            self.counts[f"{name}+" if protected else name] += 1
        kind = "plain" if protected else KINDS.get(k, "plain")
        if kind == "placeholder":
            out: dict[str, Any] = {"question": "question_type", "answer": "answer_text",
                                   "reasoning": "reasoning_text", "context": "context_text"}
            if "choices" in required:
                n = schema["properties"]["choices"]["minItems"]
                out.update(choices=[f"option_{i}" for i in range(n)], answer_index=0)
            return {f: out[f] for f in required}
        if "choices" in required:
            n = schema["properties"]["choices"]["minItems"]
            out = self.planted.choice(k, kind, n)
        elif kind == "seed_copy":
            seed = self.planted.gsm8k_seed
            words = seed["question"].split()
            words[len(words) // 2] = MARKER
            reasoning, _, answer = seed["answer"].partition("####")
            out = {"question": " ".join(words), "reasoning": reasoning.strip(),
                   "answer": answer.strip()}
        else:
            out = self.planted.math(k, kind)
        if kind != "plain" or protected:
            with self.lock:
                self.passing.add(out["question"])
        if "context" in required:
            out["context"] = (f"The {MARKER} keeper lived in a white house on the cliff. Every "
                              "evening she climbed the stairs, cleaned the glass and lit the "
                              f"lamp for the boats. Part {k if kind == 'plain' else 0} of "
                              "the story.")
        return {f: out[f] for f in required}

    def reward(self, question: str, answer: str) -> dict[str, float]:
        """Hashed Nemotron-style scores; planted records score well."""
        scores = default_reward(question, answer)
        if any(q in question for q in self.passing):
            scores.update(correctness=3.5, helpfulness=3.5, coherence=3.5)
        return scores


def _schema(body: dict[str, Any]) -> dict[str, Any]:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"]["schema"]
    return fmt.get("schema") or {}


def graded_question(user: str) -> str:
    """The question of the example a judge request grades."""
    part = user.split("The example to grade:", 1)[-1]
    found = re.search(r"Question: (.*)", part)
    return found.group(1) if found else part


def judge(question: str, required: list[str], planted: bool) -> dict[str, Any]:
    """Scores from 3 to 5 by hash; one record in four gets a low score on one criterion and
    one multiple-choice record in seven picks another option (planted records pass)."""
    h = xxhash.xxh64_intdigest(question.encode())
    scores: dict[str, int] = {}
    for i, name in enumerate(required):
        if name == "answer":
            scores[name] = "B" if (h % 7 == 3 and not planted) else "A"
        else:
            scores[name] = 5 if name == "safety" else 3 + (h >> (3 * i)) % 3
    if h % 4 == 0 and not planted:
        criteria = [n for n in required if n != "answer"]
        scores[criteria[(h >> 20) % len(criteria)]] = 2
    return scores


def enrichment(user: str, field: str) -> str:
    """A reasoning or knowledge text of one to four sentences."""
    h = xxhash.xxh64_intdigest(f"{field}:{user}".encode())
    sentence = {
        "reasoning": "Each step follows from the facts the question states, so the answer "
                     "holds.",
        "knowledge": "People keep everyday objects where they can reach them quickly when "
                     "they need them.",
    }.get(field, "This explains the answer.")
    return " ".join([sentence] * (1 + h % 4))




def write_workspace(root: Path, seeds_root: Path) -> Planted:
    """Seed files, eval files and task specs under `root`; the planted texts."""
    seeds, tasks = root / "seeds", root / "tasks"
    seeds.mkdir(parents=True)
    tasks.mkdir()
    gsm_train = _rows(seeds_root / "gsm8k" / "train.jsonl")[:SEED_ROWS]
    planted = Planted(gsm_train[0])
    _write_jsonl(seeds / "gsm8k_train.jsonl", gsm_train)
    copy = planted.math(1, "eval_copy")
    gsm_test = _rows(seeds_root / "gsm8k" / "test.jsonl")[:EVAL_ROWS]
    gsm_test.append({"question": copy["question"],
                     "answer": f"{copy['reasoning']}\n#### {copy['answer']}"})
    _write_jsonl(seeds / "gsm8k_test.jsonl", gsm_test)
    csqa = _rows(seeds_root / "commonsense_qa" / "train_rand_split.jsonl")[:SEED_ROWS]
    csqa[0]["question"]["stem"] = f"{SCRIPT} {csqa[0]['question']['stem']}"
    _write_jsonl(seeds / "csqa_train.jsonl", csqa)
    dev = _rows(seeds_root / "commonsense_qa" / "dev_rand_split.jsonl")[:EVAL_ROWS]
    item = planted.choice(1, "eval_copy", 5)
    dev.append({"answerKey": "A", "id": "planted", "question": {
        "stem": item["question"],
        "choices": [{"label": "ABCDE"[i], "text": t} for i, t in enumerate(item["choices"])]}})
    _write_jsonl(seeds / "csqa_dev.jsonl", dev)
    _write_jsonl(seeds / "race_train.jsonl", _race_rows(seeds_root))
    for name, text in SPECS.items():
        (tasks / f"{name}.yaml").write_text(text)
    return planted


def build_sample_run(root: Path, seeds_root: Path = SEEDS) -> Path:
    """Write the sample workspace under `root`, run the pipeline on a loopback server and
    return the run directory (`root/run`)."""
    planted = write_workspace(root, seeds_root)
    run = root / "run"
    responder = SampleResponder(planted)
    with FakeOpenAIServer(responder=responder, reward_fn=responder.reward) as server:
        config = root / "pipeline.yaml"
        config.write_text(PIPELINE.format(run=run, url=server.base_url))
        run_pipeline(config, progress=lambda line: None)
    return run
