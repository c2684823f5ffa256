"""Decontamination against held-out splits: planted eval items are dropped, the index is
built once per run directory and reused, hub splits are tried, and a report is written."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from taskseed.curation.decontam.eval_sets import eval_splits, read_eval_split
from taskseed.curation.decontam.ngram_index import EvalItem, NgramIndex, word_hashes
from taskseed.curation.decontam.stage import (
    REASON,
    REPORT,
    DecontaminateStage,
    DecontamParams,
    record_texts,
)
from taskseed.curation.errors import RowError, TaskseedError
from taskseed.curation.record import Origin, RawRow, Record, Source
from taskseed.curation.seeds.normalize import normalize_row
from taskseed.curation.seeds.readers import iter_split
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs
from taskseed.curation.text import normalize_text
from workspace import hub_folder, with_local_hub

from taskseed.rundir.layout import StageDir
from taskseed.rundir.seed_lookup import RunSeeds

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "configs" / "tasks"
WORD = re.compile(r"\w+")
PLANTED = ("arc_easy", "gsm8k", "race", "piqa", "mmlu", "gpqa")


@pytest.fixture(scope="session")
def all_specs() -> dict[str, TaskSpec]:
    return load_task_specs(sorted(TASKS.glob("*.yaml")))


@pytest.fixture(scope="session")
def specs(all_specs) -> dict[str, TaskSpec]:
    """Several benchmarks: MMLU by its small `dev` split only (57 files), GPQA hub-only."""
    chosen = {name: all_specs[name] for name in PLANTED}
    mmlu = chosen["mmlu"]
    chosen["mmlu"] = mmlu.model_copy(update={"eval": [s for s in mmlu.eval if s.split == "dev"]})
    return chosen


@pytest.fixture(scope="session")
def evals(specs, seeds_root) -> dict[tuple[str, str], list[Record]]:
    return {(t.task, t.split): read_eval_split(t, seeds_root).items
            for t in eval_splits(specs) if t.local}


@pytest.fixture(scope="session")
def stage(specs, seeds_root, tmp_path_factory) -> DecontaminateStage:
    built = DecontaminateStage(DecontamParams(), specs, seeds_root,
                               tmp_path_factory.mktemp("run"))
    built.check_ready()
    return built


def generated(question: str, answer: str, choices: list[str] | None = None,
              context: str | None = None, task: str = "gsm8k") -> Record:
    return Record(task=task, family="demo", format="multiple_choice" if choices else "free_form",
                  question=question, answer=answer, license="MIT",
                  source=Source("generated", split="train"), origin=Origin.GENERATED,
                  context=context, choices=list(choices or []))


def verdicts(stage: DecontaminateStage, records: list[Record]) -> tuple[list, Counter]:
    counters: Counter[str] = Counter()
    return stage.judge(records, 0, counters), counters


def label(record: Record) -> str:
    return f"{record.task}/{record.source.split}/{record.source.row}"


def item_of(stage: DecontaminateStage, record: Record) -> EvalItem:
    """The index's item for an eval record."""
    found = [i for i in stage.index.items
             if (i.benchmark, i.split, i.row) == (record.task, record.source.split,
                                                    record.source.row)
             and (not i.file or i.file == Path(record.source.path or "").name)]
    assert len(found) == 1, found
    return found[0]


def words_of(text: str) -> list[str]:
    return text.split()


def words(text: str) -> list[str]:
    """Normalized words, as plain Python finds them."""
    return WORD.findall(text.lower())


def long_item(items: list[Record], field: str = "question", words: int = 30) -> Record:
    return next(r for r in items if len(WORD.findall(getattr(r, field) or "")) >= words)


def test_words_are_the_shared_normalized_words(evals):
    texts = [part for items in evals.values() for r in items[:100] for part in record_texts(r)]
    texts += ["İstanbul’s CAFÉ: don't_stop 3.14 “quoted” naïve ＦＵＬＬ", "", "   ", "a\u00a0b"]
    hashes, counts = word_hashes(texts)
    expected = [normalize_text(t).split() for t in texts]
    assert expected == [words(t) for t in texts]
    assert counts.tolist() == [len(w) for w in expected]
    seen: dict[str, int] = {}
    for word, value in zip((w for ws in expected for w in ws), hashes.tolist(), strict=True):
        assert seen.setdefault(word, value) == value, word
    assert len(set(seen.values())) == len(seen)


def test_planted_eval_items_are_dropped_naming_benchmark_split_and_row(stage, evals):
    gsm = long_item(evals[("gsm8k", "test")], words=40)
    arc = long_item(evals[("arc_easy", "test")], words=20)
    race = evals[("race", "validation")][7]
    mmlu = long_item(evals[("mmlu", "dev")], words=20)
    gsm_words = words_of(gsm.question)
    middle = len(gsm_words) // 2
    one_word_changed = " ".join(gsm_words[:middle] + ["zebra"] + gsm_words[middle + 1:])
    planted = {
        "verbatim": (generated(gsm.question, gsm.answer), gsm),
        "case_and_punctuation": (generated(re.sub(r"[.,?]", " ; ", arc.question.upper()),
                                           arc.answer.lower()), arc),
        "one_word_changed": (generated(one_word_changed, "42"), gsm),
        "shuffled_options": (generated(mmlu.question, mmlu.answer,
                                       list(reversed(mmlu.choices)), task="arc_easy"), mmlu),
        "inside_a_longer_record": (generated(
            f"Practice problem for today. {arc.question} Think step by step first.",
            "I am not sure."), arc),
        "passage_as_context": (generated("What is the passage mainly about?", "friendship",
                                         context=race.context, task="race"), race),
    }
    records = [record for record, _ in planted.values()]
    got, counters = verdicts(stage, records)
    matched = stage.index.ngram.match([record_texts(r) for r in records])
    for (name, (_, source)), verdict, found in zip(planted.items(), got, matched, strict=True):
        assert not verdict.keep, name
        assert verdict.reason == REASON, name
        assert item_of(stage, source) in {stage.index.items[i] for i in found}, name
    assert label(gsm) in got[0].detail and label(arc) in got[1].detail
    mmlu_label = f"mmlu/dev/{Path(mmlu.source.path).name}:{mmlu.source.row}"
    assert mmlu_label in got[3].detail
    assert counters["eval_overlap:gsm8k:test"] == 2
    assert counters["eval_overlap:arc_easy:test"] == 2
    assert counters["eval_overlap:mmlu:dev"] == 1
    assert counters["eval_overlap:race:validation"] == 1
    sharing = {stage.index.items[i] for i in matched[5]}
    assert {i.benchmark for i in sharing} == {"race"} and len(sharing) > 1  # one passage


def train_records(spec: TaskSpec, seeds_root: Path, limit: int) -> list[Record]:
    out = []
    assert spec.train is not None
    for path, index, row in iter_split(spec.train, seeds_root):
        raw = RawRow(spec.name, Source(spec.source.dataset, None, "train", index, path),
                     json.dumps(row))
        try:
            out.append(normalize_row(raw, spec, spec.train.mapping))
        except RowError:
            continue
        if len(out) == limit:
            break
    return out


@pytest.fixture(scope="session")
def reference(evals) -> tuple[set, set]:
    """Plain Python n-gram sets of the same eval texts, 13 words: (n-grams, whole keys)."""
    grams: set[tuple[str, ...]] = set()
    whole: set[tuple[str, ...]] = set()
    for items in evals.values():
        for item in items:
            head, tail = (words(part) for part in record_texts(item))
            if len(head) < 13 and len(tail) < 13:
                whole |= {tuple(head + tail), tuple(head)}
            for w in (head, tail):
                grams |= {tuple(w[i:i + 13]) for i in range(len(w) - 12)}
    return grams, whole


@dataclasses.dataclass
class NearReference:
    """Near copies by word tuples: each item's words (question after a short passage) with
    every one-word-less tuple, its options as word tuples, and which items are specific."""

    items: list[tuple[tuple[str, ...], set[tuple[str, ...]]]]
    variants: dict[tuple[str, ...], set[int]]
    specific: list[bool]

    @staticmethod
    def keys(w: tuple[str, ...]) -> set[tuple[str, ...]]:
        return {w} | {w[:i] + w[i + 1:] for i in range(len(w))}

    @staticmethod
    def text(record: Record) -> tuple[str, ...]:
        w = tuple(words(f"{record.context}\n{record.question}" if record.context
                        else record.question))
        return w if len(w) <= 40 else ()

    @classmethod
    def of(cls, evals: dict) -> NearReference:
        items, variants = [], {}
        for records in evals.values():
            for record in records:
                w = cls.text(record)
                items.append((w, {tuple(words(c)) for c in record.choices}))
                for key in cls.keys(w) if w else ():
                    variants.setdefault(key, set()).add(len(items) - 1)
        specific = [len(w) >= 6 and all(
            variants[k] == {i} for k in cls.keys(w)) for i, (w, _) in enumerate(items)]
        return cls(items, variants, specific)

    def copies(self, record: Record) -> bool:
        w = self.text(record)
        options = [tuple(words(c)) for c in record.choices]
        near = set().union(*(self.variants.get(k, set()) for k in self.keys(w))) if w else ()
        for i in near:
            item_words, item_options = self.items[i]
            both = bool(item_options) and bool(options)
            agree = both and 2 * sum(o in item_options for o in options) >= len(item_options)
            if agree or self.specific[i] and (w == item_words or not both):
                return True
        return False


@pytest.fixture(scope="session")
def near_reference(evals) -> NearReference:
    return NearReference.of(evals)


def oracle(reference: tuple[set, set], records: list[Record],
           near: NearReference | None = None) -> list[bool]:
    """Which records overlap the reference sets."""
    grams, whole = reference
    out = []
    for record in records:
        head, tail = (words(part) for part in record_texts(record))
        short = len(head) < 13 and len(tail) < 13
        out.append(short and bool({tuple(head + tail), tuple(head)} & whole) or any(
            tuple(w[i:i + 13]) in grams for w in (head, tail) for i in range(len(w) - 12))
            or near is not None and near.copies(record))
    return out


def test_training_records_are_kept_unless_they_really_overlap(stage, reference, near_reference,
                                                               all_specs, seeds_root):
    records = [r for task in ("gsm8k", "arc_easy", "race")
               for r in train_records(all_specs[task], seeds_root, 300)]
    got, _ = verdicts(stage, records)
    dropped = [not v.keep for v in got]
    assert dropped == oracle(reference, records, near_reference)
    assert sum(dropped) <= len(records) // 100  # the few true duplicates across splits


def test_a_short_eval_item_is_matched_only_whole(stage, evals):
    item = next(r for r in evals[("arc_easy", "test")]
                if len(WORD.findall(" ".join(record_texts(r)))) < 13 and r.choices)
    target = item_of(stage, item)
    records = [
        generated(item.question.upper() + " !", f"({item.answer})", item.choices),
        generated(item.question, item.answer),  # its question and answer, no options
        generated(item.question, item.answer, list(reversed(item.choices))),
        generated(f"Our teacher asked: {item.question} {item.answer} was the reply, and "
                  "then the class moved on to the next chapter.", "ok"),
        generated(item.question, "something else entirely"),
    ]
    found = stage.index.ngram.match([record_texts(r) for r in records])
    assert [target in {stage.index.items[i] for i in f} for f in found] == [
        True, True, True, False, False]
    assert not verdicts(stage, records[:1])[0][0].keep


def test_light_edits_of_short_items_are_near_copies(stage, evals):
    near = stage.index.near
    item = next(r for r in evals[("mmlu", "dev")] if 6 <= len(words(r.question)) < 13
                and len(r.choices) == 4 and not r.context
                and near.specific[stage.index.items.index(item_of(stage, r))])
    q = item.question.split()
    changed = " ".join(q[:2] + ["zebra"] + q[3:])
    other = next(r for r in evals[("mmlu", "dev")] if r.choices and
                 not set(r.choices) & set(item.choices))
    records = [
        generated(changed, item.answer, item.choices),  # one word changed
        generated(" ".join(q[:2] + q[3:]).upper(), item.answer,
                  list(reversed(item.choices))),  # one word dropped, shuffled, upper case
        generated(item.question, other.answer, other.choices),  # question kept, options new
        generated(changed, other.answer, other.choices),  # two edits: kept
        generated("Which of the following is true?", other.answer, item.choices[:1] + [
            "a first new option", "a second new option", "a third new option"]),
    ]
    got, counters = verdicts(stage, records)
    assert [v.keep for v in got] == [False, False, False, True, True]
    assert label(item) in got[0].detail or item_of(stage, item).label() in got[0].detail
    assert counters["eval_overlap:mmlu:dev"] == 3
    assert not len(stage.index.ngram.match([record_texts(records[0])])[0])  # n-grams miss it


def test_min_matches_counts_distinct_ngrams_per_item(stage, evals):
    gsm = long_item(evals[("gsm8k", "test")], words=40)
    first = " ".join(words_of(gsm.question)[:13])
    one_gram = generated(f"Background: {first} (paraphrased later).", "7")
    stricter = DecontaminateStage(DecontamParams(min_matches=3), stage.specs,
                                  stage.seeds_root, stage.run_dir)
    assert not verdicts(stage, [one_gram])[0][0].keep
    assert verdicts(stricter, [one_gram])[0][0].keep
    assert not verdicts(stricter, [generated(gsm.question, "7")])[0][0].keep
    assert not stricter.built_index  # same index settings: the file is reused


def test_eight_gram_option(specs, evals, seeds_root, tmp_path):
    gsm = long_item(evals[("gsm8k", "test")], words=40)
    ten = " ".join(words_of(gsm.question)[3:13])
    record = generated(f"Unrelated opening words here. {ten} and then a new ending.", "1")
    only_gsm = {"gsm8k": specs["gsm8k"]}
    eight = DecontaminateStage(DecontamParams(ngram=8), only_gsm, seeds_root, tmp_path)
    thirteen = DecontaminateStage(DecontamParams(), only_gsm, seeds_root, tmp_path)
    assert thirteen.index_paths() != eight.index_paths()
    (drop8,), _ = verdicts(eight, [record])
    (keep13,), _ = verdicts(thirteen, [record])
    assert not drop8.keep and label(gsm) in drop8.detail
    assert keep13.keep


def test_index_is_built_once_and_reused_across_builds_and_processes(all_specs, seeds_root,
                                                                    tmp_path):
    chosen = {name: all_specs[name] for name in ("gsm8k", "piqa")}
    first = DecontaminateStage(DecontamParams(), chosen, seeds_root, tmp_path)
    first.check_ready()
    npz, table = first.index_paths()
    assert first.built_index and npz.parent == tmp_path / "index"
    assert npz.name.startswith("decontam-") and npz.suffix == ".npz" and table.exists()
    stamp = npz.stat().st_mtime_ns
    again = DecontaminateStage(DecontamParams(), chosen, seeds_root, tmp_path)
    again.check_ready()
    assert not again.built_index and npz.stat().st_mtime_ns == stamp
    assert len(again.index.ngram.keys) == len(first.index.ngram.keys)
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from taskseed.curation.seeds.taskspec import load_task_specs\n"
        "from taskseed.curation.decontam.stage import DecontaminateStage, DecontamParams\n"
        f"specs = load_task_specs([Path({str(TASKS / 'gsm8k.yaml')!r}), "
        f"Path({str(TASKS / 'piqa.yaml')!r})])\n"
        f"stage = DecontaminateStage(DecontamParams(), specs, Path({str(seeds_root)!r}), "
        f"Path({str(tmp_path)!r}))\n"
        "stage.setup()\n"
        "print(stage.built_index, len(stage.index.items), stage.index_paths()[0].name)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out == ["False", str(len(first.index.items)), npz.name]
    assert npz.stat().st_mtime_ns == stamp
    meta = json.loads(table.read_text())["meta"]
    assert {(s["benchmark"], s["split"]) for s in meta["indexed"]} == {
        ("gsm8k", "test"), ("piqa", "validation")}


def gpqa_rows(evals) -> list[dict]:
    """GPQA's hub columns, filled from a real held-out item."""
    item = next(r for r in evals[("arc_easy", "test")]
                if len(WORD.findall(r.question)) >= 20 and len(r.choices) == 4)
    wrong = [c for c in item.choices if c != item.answer]
    return [{"Question": item.question, "Correct Answer": item.answer,
             **{f"Incorrect Answer {i + 1}": w for i, w in enumerate(wrong[:3])}}]


def test_hub_split_is_indexed_from_a_local_hub_folder(specs, evals, seeds_root, tmp_path):
    folder = hub_folder(tmp_path / "gpqa", gpqa_rows(evals))
    gpqa = specs["gpqa"]
    local = gpqa.model_copy(update={"eval": [with_local_hub(s, folder) for s in gpqa.eval]})
    stage = DecontaminateStage(DecontamParams(hub="require"), {"gpqa": local}, seeds_root,
                               tmp_path / "run")
    row = gpqa_rows(evals)[0]
    (verdict,), counters = verdicts(stage, [generated(row["Question"], row["Correct Answer"])])
    assert not verdict.keep and "gpqa/train/0" in verdict.detail
    assert counters == {"eval_overlap:gpqa:train": 1}
    assert stage.index.meta["indexed"] == [
        {"benchmark": "gpqa", "split": "train", "items": 1, "source": "hub"}]
    assert stage.index.meta["not_indexed"] == []


def test_a_missing_hub_split_is_reported_or_refused(specs, seeds_root, tmp_path):
    gpqa = specs["gpqa"]
    missing = tmp_path / "no-such-dataset"
    local = {"gpqa": gpqa.model_copy(
        update={"eval": [with_local_hub(s, missing) for s in gpqa.eval]})}
    tried = DecontaminateStage(DecontamParams(hub="try"), local, seeds_root, tmp_path / "a")
    tried.check_ready()
    (entry,) = tried.index.meta["not_indexed"]
    assert (entry["benchmark"], entry["split"]) == ("gpqa", "train")
    assert str(missing) in entry["reason"]
    skipped = DecontaminateStage(DecontamParams(hub="skip"), local, seeds_root, tmp_path / "b")
    assert "hub: skip" in skipped.index.meta["not_indexed"][0]["reason"]
    required = DecontaminateStage(DecontamParams(hub="require"), local, seeds_root,
                                  tmp_path / "c")
    with pytest.raises(TaskseedError) as err:
        required.check_ready()
    message = str(err.value)
    assert "\n" not in message and "gpqa/train" in message and str(missing) in message


def test_extra_eval_files_are_indexed(evals, seeds_root, tmp_path):
    item = long_item(evals[("gsm8k", "test")], words=40)
    extra = tmp_path / "private_eval.jsonl"
    extra.write_text(json.dumps({"question": item.question, "answer": item.answer,
                                 "task": "private", "split": "test"}) + "\n")
    stage = DecontaminateStage(DecontamParams(extra_eval_files=[str(extra)]), {}, seeds_root,
                               tmp_path / "run")
    (verdict,), counters = verdicts(stage, [generated(item.question, "x")])
    assert not verdict.keep and "private/test/private_eval.jsonl:0" in verdict.detail
    assert counters == {"eval_overlap:private:test": 1}


def test_finalize_reports_drops_per_benchmark_and_the_seeds_overlap(
    stage, evals, reference, near_reference, seeds_root, all_specs
):
    run_dir = stage.run_dir
    seeds = train_records(all_specs["gsm8k"], seeds_root, 50)
    gsm = long_item(evals[("gsm8k", "test")], words=40)
    seeds.append(dataclasses.replace(gsm, source=Source("openai/gsm8k", None, "train", 9999)))
    StageDir(run_dir / "stages" / "02-normalize").write_shard(0, seeds, Record, [], {})
    stage = DecontaminateStage(DecontamParams(), stage.specs, seeds_root, run_dir,
                               RunSeeds(run_dir))
    piqa = evals[("piqa", "validation")][0]
    batch = [generated(gsm.question, "1"), generated(gsm.question + " Again.", "2"),
             generated(piqa.question, piqa.answer, piqa.choices, task="piqa"),
             *train_records(all_specs["arc_easy"], seeds_root, 20)]
    out = StageDir(run_dir / "stages" / "05-decontaminate")
    result = stage.process(batch, 0)
    marker = {"inputs": len(batch), "outputs": len(result.items)}
    out.write_shard(0, result.items, Record, result.rejects, marker)
    stage.finalize(out)
    report = json.loads((out.path / REPORT).read_text())
    generated_part = report["generated"]
    assert generated_part["records_checked"] == len(batch)
    assert generated_part["records_dropped"] == len(result.rejects) >= 3
    assert generated_part["benchmarks"]["gsm8k"]["test"]["records_dropped"] == 2
    assert generated_part["benchmarks"]["gsm8k"]["test"]["eval_items_matched"] == 1
    assert generated_part["benchmarks"]["piqa"]["validation"]["records_dropped"] == 1
    assert {(e["benchmark"], e["split"]) for e in report["not_indexed"]} >= {("gpqa", "train")}
    assert report["index"]["path"].startswith("index/decontam-")
    seeds_part = report["seeds"]
    assert seeds_part["records_checked"] == len(seeds)
    assert seeds_part["benchmarks"]["gsm8k"]["test"]["by_task"]["gsm8k"] >= 1
    assert seeds_part["records_overlapping"] == sum(oracle(reference, seeds, near_reference))
    assert not stage.built_index


def test_params_are_validated():
    with pytest.raises(ValidationError):
        DecontamParams(ngram=2)
    with pytest.raises(ValidationError):
        DecontamParams(hub="sometimes")
    with pytest.raises(ValidationError):
        DecontamParams.model_validate({"ngrams": 8})


def test_an_empty_index_keeps_everything(tmp_path):
    index = NgramIndex.build([], [], 13)
    index.save(tmp_path / "i.npz", tmp_path / "i.json")
    loaded = NgramIndex.load(tmp_path / "i.npz", tmp_path / "i.json")
    assert [len(m) for m in loaded.match([("a question", "an answer"), ("", "")])] == [0, 0]


PIPE = """name: decontam
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/gsm8k.yaml, {tasks}/piqa.yaml]
executor: {{workers: 2}}
stages:
  - {{name: seeds, max_per_task: 40, rows_per_shard: 10}}
  - {{name: normalize}}
  - {{name: decontaminate, eval_specs: ["{tasks}/*.yaml"]}}
"""


@pytest.mark.slow
def test_a_local_run_with_two_workers_builds_the_index_once(seeds_root, reference, tmp_path):
    run = tmp_path / "run"
    (tmp_path / "pipe.yaml").write_text(PIPE.format(run=run, seeds=seeds_root, tasks=TASKS))
    proc = subprocess.run([sys.executable, "-m", "taskseed.cli.main", "run", "pipe.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (index,) = (run / "index").glob("decontam-*.npz")
    seeds = StageDir(run / "stages" / "02-normalize")
    records = [r for s in seeds.done_shards() for r in seeds.read_shard(s, Record)]
    out = StageDir(run / "stages" / "03-decontaminate")
    built = index.stat().st_mtime_ns  # before the workers' first shard: they load it
    assert all(built <= out.done_path(s).stat().st_mtime_ns for s in out.done_shards())
    dropped = {r.item_id for s in out.done_shards() for r in out.read_rejects(s)}
    assert dropped == {r.id for r, hit in zip(records, oracle(reference, records), strict=True)
                       if hit} != set()
    report = json.loads((out.path / REPORT).read_text())
    assert report["generated"]["records_checked"] == len(records) == 40
    assert report["generated"]["records_dropped"] == len(dropped)
    assert report["seeds"]["records_overlapping"] == len(dropped)
