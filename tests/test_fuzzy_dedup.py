"""Fuzzy dedup: MinHash values equal libcudf's, and the stage on a real LocalCluster finds
planted near-duplicates in real seed records, keeps distinct ones, lets seeds win and gives
the same bytes for any input partitioning."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import mmh3
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from pydantic import ValidationError
from taskseed.curation.dedup.fuzzy import (
    NEAR_COPY_OF_SEED,
    NEAR_DUPLICATE,
    FuzzyDedupParams,
    FuzzyDedupStage,
    record_text,
)
from taskseed.curation.dedup.minhash import (
    MERSENNE_PRIME,
    MinHashSpec,
    band_keys,
    cpu_signatures,
    jaccard,
    jaccard_pairs,
    murmur3_32,
    murmur3_64,
    ngram_set,
    token_signatures,
)
from taskseed.curation.io.arrow import to_table, write_parquet
from taskseed.curation.io.frames import read_records
from taskseed.curation.record import Origin, Record, Reject
from taskseed.curation.seeds.stage import NormalizeStage, SeedParams, SeedStage
from taskseed.curation.seeds.taskspec import load_task_specs
from taskseed.curation.stage import BuildContext
from taskseed.curation.text import word_ngrams

from taskseed.execution.shard import marked_result
from taskseed.rundir.layout import RunDir
from taskseed.rundir.seed_lookup import RunSeeds

REPO = Path(__file__).resolve().parents[1]
TASKS = ("arc_easy", "boolq", "commonsense_qa", "gsm8k", "race", "squad")
PER_TASK = 60  # input records per task
SEEDS_ONLY = 8  # more records per task that are only the run's seeds

# --- MinHash values ---------------------------------------------------------------------

# Expected values copied from libcudf's own tests, cpp/tests/text/minhash_tests.cpp
# (rapidsai/cudf, 26.10): TEST_F(MinHashTest, Permuted), PermutedWide and Ngrams.
PERMUTED = ["doc 1", "this is doc 2", "doc 3", "d",
            "The quick brown fox jumpéd over the lazy brown dog.", "line six", "line seven",
            "line eight", "line nine", "line ten"]
PERMUTED_32 = [[1392101586, 394869177, 811528444], [211415830, 187088503, 130291444],
               [2098117052, 394869177, 799753544], [2264583304, 2920538364, 3576493424],
               [253327882, 41747273, 302030804], [2109809594, 1017470651, 326988172],
               [1303819864, 850676747, 147107852], [736021564, 720812292, 1405158760],
               [902780242, 134064807, 1613944636], [547084870, 1748895564, 656501844]]
PERMUTED_64 = [
    [827364888116975697, 1601854279692781452, 70500662054893256],
    [18312093741021833, 133793446674258329, 21974512489226198],
    [22474244732520567, 1638811775655358395, 949306297364502264],
    [1332357434996402861, 2157346081260151330, 676491718310205848],
    [65816830624808020, 43323600380520789, 63511816333816345],
    [629657184954525200, 49741036507643002, 97466271004074331],
    [301611977846331113, 101188874709594830, 97466271004074331],
    [121498891461700668, 171065800427907402, 97466271004074331],
    [54617739511834072, 231454301607238929, 97466271004074331],
    [576418665851990314, 231454301607238929, 97466271004074331]]
WIDE_32 = [[1731998032, 315359380, 3193688024], [1293098788, 2860992281, 133918478]]
WIDE_64 = [[1818322427062143853, 641024893347719371, 1769570368846988848],
           [1389920339306667795, 421787002125838902, 1759496674158703968]]
NGRAM_ROWS = [["The", "quick", "brown", "fox", "jumpéd", "over", "the", "lazy", "brown", "dog."],
              ["The", "quick", "brown", "fox", "jumpéd", "over", "the", "lazy", "", "dog."],
              ["short", "row"]]
NGRAMS_32 = [[230924604, 55492793, 963436400], [230924604, 367515795, 963436400],
             [2380648568, 1330223236, 279797904]]
NGRAMS_64 = [[208926840193078200, 576399628675212695, 312927673584437419],
             [677038498284219393, 326338087730412201, 298455901014050223],
             [1493265692486268500, 720255058049417768, 2253087432826260995]]


@pytest.mark.parametrize(("bits", "expected"), [(32, PERMUTED_32), (64, PERMUTED_64)])
def test_cpu_values_equal_libcudf_test_values(bits: int, expected: list[list[int]]) -> None:
    spec = MinHashSpec(num_perm=3, ngram=4, bits=bits, a=(10, 11, 12), b=(10, 11, 12))
    assert cpu_signatures(PERMUTED, spec).tolist() == expected


@pytest.mark.parametrize(("bits", "expected"), [(32, WIDE_32), (64, WIDE_64)])
def test_cpu_values_equal_libcudf_on_long_strings(bits: int, expected: list) -> None:
    spec = MinHashSpec(num_perm=3, ngram=4, bits=bits, a=(20, 21, 22), b=(20, 21, 22))
    assert cpu_signatures(["x" * (2 << 10), "y" * (2 << 19)], spec).tolist() == expected


@pytest.mark.parametrize(("bits", "expected"), [(32, NGRAMS_32), (64, NGRAMS_64)])
def test_token_values_equal_libcudf_ngrams(bits: int, expected: list) -> None:
    spec = MinHashSpec(num_perm=3, bits=bits, a=(10, 11, 12), b=(10, 11, 12))
    assert token_signatures(NGRAM_ROWS, 4, spec).tolist() == expected


def _mmh3(data: bytes, seed: int, bits: int) -> int:
    if bits == 32:
        return mmh3.hash(data, seed, signed=False)
    return mmh3.hash64(data, seed, x64arch=True, signed=False)[0]


def reference_signature(text: str, spec: MinHashSpec) -> list[int]:
    """libcudf's algorithm for one string, in plain Python with mmh3 as the hash."""
    units = [t + " " for t in text.split(" ")] if spec.words and text else list(text)
    if not units:
        return [0] * spec.num_perm
    n = spec.ngram
    grams = ["".join(units[i:i + n]) for i in range(len(units) - n + 1)] or ["".join(units)]
    hashes = [max(_mmh3(g.encode(), spec.seed, spec.bits), 1) for g in grams]
    wrap = (1 << spec.bits) - 1
    a, b = spec.permutations()
    return [min(((h * int(x) + int(y)) & wrap) % MERSENNE_PRIME for h in hashes)
            for x, y in zip(a, b, strict=True)]


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize(("ngram", "words"), [(5, False), (3, False), (4, True)])
def test_cpu_values_equal_mmh3_reference(records: list[Record], bits: int, ngram: int,
                                         words: bool) -> None:
    texts = record_text(to_table(records[::25], Record).to_pandas()).tolist()
    texts += ["", "a", "ab", "éàü ñ", "日本語のテキスト です", "x y"]
    spec = MinHashSpec(num_perm=16, ngram=ngram, words=words, bits=bits, seed=7)
    assert cpu_signatures(texts, spec).tolist() == [reference_signature(t, spec) for t in texts]


@pytest.mark.parametrize("bits", [32, 64])
def test_murmur3_equals_mmh3_for_every_length(bits: int) -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in range(0, 70)]
    data = np.frombuffer(b"".join(blobs) + bytes(16), dtype=np.uint8)
    lengths = np.array([len(b) for b in blobs], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    hasher = murmur3_32 if bits == 32 else murmur3_64
    got = hasher(data, starts, lengths, 12345).tolist()
    assert got == [_mmh3(b, 12345, bits) for b in blobs]


def test_band_keys_separate_bands_and_tasks() -> None:
    sigs = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 9, 9]], dtype=np.uint32)
    keys = band_keys(sigs, bands=2, rows=2)
    assert keys.dtype == np.uint64
    assert keys[0].tolist() == keys[1].tolist()
    assert keys[0, 0] == keys[2, 0] and keys[0, 1] != keys[2, 1]
    assert keys[0, 0] != keys[0, 1]  # equal values in another band give another key
    salted = band_keys(sigs, bands=2, rows=2, salt=np.array([5, 6, 5], dtype=np.uint64))
    assert salted[0, 0] != salted[1, 0] and salted[0, 0] == salted[2, 0]


@pytest.mark.parametrize(("ngram", "words"), [(5, False), (3, True)])
def test_vectorized_jaccard_equals_set_jaccard(records: list[Record], ngram: int,
                                               words: bool) -> None:
    texts = record_text(to_table(records, Record).to_pandas()).tolist() + ["", "a", "ab c"]
    rng = random.Random(0)
    left = [rng.choice(texts) for _ in range(300)] + texts[:50]
    right = [rng.choice(texts) for _ in range(300)] + [t.replace("e", "a", 1) for t in texts[:50]]
    exact = [jaccard(ngram_set(a, ngram, words), ngram_set(b, ngram, words))
             for a, b in zip(left, right, strict=True)]
    for threshold in (0.0, 0.7, 2.0):  # 2.0: the hashed values alone, none recomputed
        got = jaccard_pairs(left, right, ngram, words, threshold)
        assert got.tolist() == pytest.approx(exact, abs=1e-12)


def test_params_are_checked() -> None:
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        FuzzyDedupParams(num_perm=16, bands=5, rows=4)
    with pytest.raises(ValidationError, match="ngram >= 3"):
        FuzzyDedupParams(words=True, ngram=2)
    with pytest.raises(ValidationError):
        FuzzyDedupParams(thresold=0.5)


# --- real records ---------------------------------------------------------------------


def load_records(seeds_root: Path, tasks: tuple[str, ...], per_task: int) -> list[Record]:
    paths = sorted((REPO / "configs" / "tasks").glob("*.yaml"))
    specs = {k: v for k, v in load_task_specs(paths).items() if k in tasks}
    seeds = SeedStage(SeedParams(max_per_task=per_task * 4), specs, seeds_root)
    norm = NormalizeStage(None, specs)
    out: dict[str, Record] = {}
    for shard in seeds.plan():
        for record in norm.process(seeds.read(shard).items, 0).items:
            out.setdefault(record.id, record)
    by_task: dict[str, list[Record]] = {}
    for record in out.values():
        by_task.setdefault(record.task, []).append(record)
    rng = random.Random(0)
    picked = []
    for task in tasks:
        pool = by_task[task]
        shared = [r for r in pool if r.context and sum(o.context == r.context for o in pool) > 1]
        picked += shared[:6] + rng.sample([r for r in pool if r not in shared[:6]],
                                          per_task - min(6, len(shared)))
    return picked


@pytest.fixture(scope="module")
def records(seeds_root: Path) -> list[Record]:
    return load_records(seeds_root, TASKS, PER_TASK + SEEDS_ONLY)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                      dashboard_address=":0") as cluster, Client(cluster) as running:
        yield running


def generated(record: Record, **changes: Any) -> Record:
    changes.setdefault("id", "")
    return dataclasses.replace(record, origin=Origin.GENERATED, **changes)


def variant(record: Record, kind: str, rng: random.Random) -> Record:
    """A near-duplicate of `record`: one word changed, upper case, punctuation, or two
    options swapped."""
    if kind == "word":
        words = record.question.split()
        middle = len(words) // 2
        words[middle] = "table" if words[middle].lower() != "table" else "chair"
        return generated(record, question=" ".join(words))
    if kind == "case":
        return generated(record, question=record.question.upper())
    if kind == "punct":
        return generated(record, question="«" + record.question.replace(" ", ", ", 2) + "?!»")
    choices = list(record.choices)
    choices[0], choices[-1] = choices[-1], choices[0]
    return generated(record, choices=choices)


def _question_side(record: Record) -> int:
    """Characters of the text without the context: one changed word in a record much
    shorter than ~100 characters is no longer a near-duplicate at Jaccard 0.7."""
    return len(record.question) + len(" ".join(record.choices)) + len(record.answer)


@dataclasses.dataclass
class Scenario:
    inputs: list[Record]
    planted: list[tuple[Record, Record, str]]  # (original, variant, kind)
    input_seeds: list[tuple[Record, Record]]  # (seed in the input, its generated variant)
    run_seeds: list[tuple[Record, Record]]  # (seed only in the run's seeds, generated copy)
    cross_task: tuple[Record, Record]
    seed_pair: tuple[Record, Record]  # two near-duplicate seeds in the input
    seeds: RunSeeds


@pytest.fixture(scope="module")
def scenario(records: list[Record], tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    rng = random.Random(1)
    by_task: dict[str, list[Record]] = {}
    others = []
    for r in records:
        pool = by_task.setdefault(r.task, [])
        if len(pool) < PER_TASK:
            pool.append(generated(r, id=r.id))
        else:
            others.append(dataclasses.replace(r, origin=Origin.SEED))
    inputs, planted, input_seeds, run_seeds = [], [], [], []
    for pool in by_task.values():
        plain = pool[: PER_TASK - 12]
        inputs += plain
        long_enough = [r for r in plain if _question_side(r) >= 100]
        kinds = (["word"] if long_enough else []) + ["case", "punct"]
        kinds += ["options"] if plain[0].choices else []
        for i, kind in enumerate(kinds):
            original = long_enough[i] if kind == "word" else plain[-1 - i]
            copy = variant(original, kind, rng)
            planted.append((original, copy, kind))
            inputs.append(copy)
        for r in pool[PER_TASK - 12: PER_TASK - 8]:  # seeds in the input, near-copies beside
            seed = dataclasses.replace(r, origin=Origin.SEED)
            copy = variant(seed, "case", rng)
            input_seeds.append((seed, copy))
            inputs += [seed, copy]
        for r in pool[PER_TASK - 8: PER_TASK - 4]:  # seeds of the run, not in the input
            seed = dataclasses.replace(r, origin=Origin.SEED)
            run_seeds.append((seed, variant(seed, "punct", rng)))
            inputs.append(run_seeds[-1][1])
    source = by_task["gsm8k"][PER_TASK - 1]
    cross_task = (source, generated(source, task="arc_easy"))
    inputs += list(cross_task)
    first = dataclasses.replace(by_task["arc_easy"][PER_TASK - 1], origin=Origin.SEED)
    seed_pair = (first, dataclasses.replace(variant(first, "options", rng), origin=Origin.SEED))
    inputs += list(seed_pair)
    run_dir = tmp_path_factory.mktemp("run")
    RunDir(run_dir).stage(2, "normalize").write_shard(
        0, [s for s, _ in run_seeds] + others, Record, [], {})
    return Scenario(inputs, planted, input_seeds, run_seeds, cross_task, seed_pair,
                    RunSeeds(run_dir))


def run_stage(scenario: Scenario, partitions: int, shards: int = 3, order: int = 0,
              **params: Any) -> list[pd.DataFrame]:
    inputs = list(scenario.inputs)
    random.Random(order).shuffle(inputs)
    folder = scenario.seeds.run_dir / f"input-{partitions}-{order}"
    files = [folder / f"part-{i:05d}.parquet" for i in range(partitions)]
    for i, path in enumerate(files):
        write_parquet(path, inputs[i::partitions], Record)
    frame = read_records(files)
    context = BuildContext(specs={}, seeds_root=REPO, run_dir=REPO, seeds=scenario.seeds)
    stage = FuzzyDedupStage.build(FuzzyDedupParams(shards=shards, **params), context)
    out = stage.run(frame, shards)
    assert out.npartitions == shards
    return list(dask.compute(*out.to_delayed()))


def outcomes(parts: list[pd.DataFrame]) -> dict[str, tuple[str | None, str | None]]:
    whole = pd.concat(parts)
    reasons = [None if pd.isna(r) else r for r in whole["_reason"]]
    details = [None if pd.isna(d) else d for d in whole["_detail"]]
    return dict(zip(whole["id"], zip(reasons, details, strict=True), strict=True))


def shard_bytes(parts: list[pd.DataFrame], folder: Path) -> list[tuple[bytes, bytes]]:
    """Each shard as the engine commits it: kept records and rejects, as Parquet bytes."""
    out = []
    for i, part in enumerate(parts):
        result, _ = marked_result("fuzzy_dedup", part)
        write_parquet(folder / f"keep-{i}.parquet", result.items, Record)
        write_parquet(folder / f"drop-{i}.parquet", result.rejects, Reject)
        out.append(((folder / f"keep-{i}.parquet").read_bytes(),
                    (folder / f"drop-{i}.parquet").read_bytes()))
    return out


@pytest.fixture(scope="module")
def single(client: Client, scenario: Scenario) -> list[pd.DataFrame]:
    return run_stage(scenario, partitions=1)


def test_every_input_row_comes_out_once(single: list[pd.DataFrame], scenario: Scenario) -> None:
    ids = sorted(pd.concat(single)["id"])
    assert ids == sorted(r.id for r in scenario.inputs)
    for part in single:
        assert part["id"].tolist() == sorted(part["id"])


def test_planted_near_duplicates_are_found(single: list[pd.DataFrame],
                                           scenario: Scenario) -> None:
    seen = outcomes(single)
    assert {kind for _, _, kind in scenario.planted} == {"word", "case", "punct", "options"}
    for original, copy, kind in scenario.planted:
        kept, dropped = sorted([original.id, copy.id])
        assert seen[kept] == (None, None), kind
        reason, detail = seen[dropped]
        assert reason == NEAR_DUPLICATE, f"{kind}: {original.task} {seen[dropped]}"
        assert detail.startswith(f"near-duplicate of {kept} (jaccard "), detail
        assert 0.7 <= float(detail.split("jaccard ")[1].rstrip(")")) <= 1.0


def test_distinct_records_are_not_merged(single: list[pd.DataFrame], scenario: Scenario,
                                         records: list[Record]) -> None:
    seen = outcomes(single)
    planted = {r.id for pair in scenario.planted for r in pair[:2]}
    distinct = [r for r in records if r.id in seen and r.id not in planted]
    assert len(distinct) > 250
    shared = [r for r in distinct if r.context and
              sum(o.context == r.context for o in distinct) > 1]
    assert len(shared) >= 6  # questions on one shared passage stay apart
    merged = {r.id: seen[r.id] for r in distinct if seen[r.id][0] is not None}
    assert merged == {}


def test_seeds_win_over_generated_near_copies(single: list[pd.DataFrame],
                                              scenario: Scenario) -> None:
    seen = outcomes(single)
    assert any(copy.id < seed.id for seed, copy in scenario.input_seeds)
    for seed, copy in scenario.input_seeds:
        assert seen[seed.id] == (None, None)
        reason, detail = seen[copy.id]
        assert reason == NEAR_COPY_OF_SEED
        assert detail.startswith(f"near-copy of seed {seed.id} (jaccard ")


def test_between_seeds_the_smallest_id_wins(single: list[pd.DataFrame],
                                            scenario: Scenario) -> None:
    seen = outcomes(single)
    kept, dropped = sorted(r.id for r in scenario.seed_pair)
    assert seen[kept] == (None, None)
    assert seen[dropped][0] == NEAR_DUPLICATE
    assert seen[dropped][1].startswith(f"near-duplicate of {kept} (jaccard ")


def test_generated_near_copies_of_run_seeds_are_dropped(single: list[pd.DataFrame],
                                                        scenario: Scenario) -> None:
    seen = outcomes(single)
    for seed, copy in scenario.run_seeds:
        assert seed.id not in seen  # the run's seeds are compared with, never output
        reason, detail = seen[copy.id]
        assert reason == NEAR_COPY_OF_SEED
        assert detail.startswith(f"near-copy of seed {seed.id} (jaccard ")


def test_copies_across_tasks_stay_by_default(single: list[pd.DataFrame],
                                             scenario: Scenario) -> None:
    seen = outcomes(single)
    first, second = scenario.cross_task
    assert seen[first.id] == (None, None) and seen[second.id] == (None, None)


def test_many_partitions_give_the_bytes_of_one(client: Client, scenario: Scenario,
                                               single: list[pd.DataFrame],
                                               tmp_path: Path) -> None:
    many = run_stage(scenario, partitions=7, order=3)
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    assert shard_bytes(many, tmp_path / "many") == shard_bytes(single, tmp_path / "one")


def test_rerun_gives_the_same_bytes(client: Client, scenario: Scenario,
                                    single: list[pd.DataFrame], tmp_path: Path) -> None:
    again = run_stage(scenario, partitions=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert shard_bytes(again, tmp_path / "a") == shard_bytes(single, tmp_path / "b")


def test_across_tasks_and_without_seeds(client: Client, scenario: Scenario) -> None:
    seen = outcomes(run_stage(scenario, partitions=2, shards=2, across_tasks=True,
                              against_seeds=False))
    first, second = scenario.cross_task
    kept, dropped = sorted([first.id, second.id])
    assert seen[kept] == (None, None)
    assert seen[dropped] == (NEAR_DUPLICATE, f"near-duplicate of {kept} (jaccard 1.000)")
    for _, copy in scenario.run_seeds:  # no seeds to compare with: generated copies stay
        assert seen[copy.id] == (None, None)


def test_word_ngrams_stage_agrees_with_true_jaccard(client: Client, scenario: Scenario) -> None:
    seen = outcomes(run_stage(scenario, partitions=3, shards=1, words=True, ngram=3,
                              num_perm=64, bands=16, rows=4, bits=64))
    found = 0
    for original, copy, kind in scenario.planted:
        frame = to_table([original, copy], Record).to_pandas()
        similar = all(
            jaccard(word_ngrams(x, 3), word_ngrams(y, 3)) >= 0.7
            for x, y in (record_text(frame).tolist(), record_text(frame, False).tolist()))
        dropped = seen[max(original.id, copy.id)][0]
        assert dropped == (NEAR_DUPLICATE if similar else None), kind
        found += similar
    assert found >= len(scenario.planted) // 2


def test_nothing_near_nothing_dropped(client: Client, records: list[Record],
                                      tmp_path: Path) -> None:
    distinct = [generated(r, id=r.id) for r in records[:40]]
    write_parquet(tmp_path / "part-00000.parquet", distinct, Record)
    context = BuildContext(specs={}, seeds_root=REPO, run_dir=tmp_path)  # no seeds
    stage = FuzzyDedupStage.build(FuzzyDedupParams(shards=2), context)
    seen = outcomes(list(dask.compute(*stage.run(
        read_records([tmp_path / "part-00000.parquet"]), 2).to_delayed())))
    assert seen == {r.id: (None, None) for r in distinct}


# --- cuDF -------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize(("ngram", "words"), [(5, False), (4, True)])
def test_cudf_signatures_equal_cpu(records: list[Record], bits: int, ngram: int,
                                   words: bool) -> None:
    cudf = pytest.importorskip("cudf", reason="cuDF runs on GPU nodes only")
    from taskseed.curation.dedup.minhash import cudf_signatures

    texts = record_text(to_table(records, Record).to_pandas())
    texts = pd.concat([texts, pd.Series(["", "a", "éàü ñ", "x y"])], ignore_index=True)
    spec = MinHashSpec(num_perm=32, ngram=ngram, words=words, bits=bits)
    on_gpu = cudf_signatures(cudf.from_pandas(texts), spec).get()
    assert on_gpu.tolist() == cpu_signatures(texts, spec).tolist()


def test_cudf_stage_equals_pandas_stage(client: Client, scenario: Scenario,
                                        single: list[pd.DataFrame]) -> None:
    pytest.importorskip("cudf", reason="cuDF runs on GPU nodes only")
    pytest.importorskip("dask_cudf", reason="dask-cudf runs on GPU nodes only")
    with dask.config.set({"dataframe.backend": "cudf"}):
        inputs = to_table(scenario.inputs, Record)
        import cudf

        frame = dd.from_pandas(cudf.DataFrame.from_arrow(inputs), npartitions=2)
        context = BuildContext(specs={}, seeds_root=REPO, run_dir=REPO, seeds=scenario.seeds)
        stage = FuzzyDedupStage.build(FuzzyDedupParams(shards=3), context)
        parts = [p.to_pandas() for p in dask.compute(*stage.run(frame, 3).to_delayed())]
    assert outcomes(parts) == outcomes(single)
