"""Semantic decontamination with the packaged all-MiniLM-L6-v2 on real held-out items."""

from __future__ import annotations

import dataclasses
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from taskseed.curation.decontam.eval_sets import EvalSplit, read_eval_split
from taskseed.curation.decontam.semantic import (
    DEFAULT_THRESHOLD,
    INSTALL_HINT,
    Embedder,
    SemanticDecontamParams,
    SemanticDecontamStage,
    SemanticIndex,
    index_key,
    item_text,
    light_normalize,
)
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Record
from taskseed.curation.seeds.taskspec import TaskSpec, load_task_specs
from taskseed.curation.stage import BuildContext

REPO = Path(__file__).resolve().parents[1]
INDEXED = 100  # gsm8k test items in the index
SYNONYMS = {"buys": "purchases", "bought": "purchased", "each": "every", "total": "overall",
            "sells": "trades", "pays": "spends", "wants": "would like", "costs": "is priced at"}


def _model_installed() -> bool:
    try:
        import sentence_transformers  # noqa: F401
        from taskseed.curation.decontam.semantic import model_dir

        model_dir()
    except (ImportError, TaskseedError):
        return False
    return True


needs_model = pytest.mark.skipif(
    not _model_installed(),
    reason="needs the semantic extra (pip install 'taskseed[semantic]'): model not installed",
)


@pytest.fixture(scope="module")
def specs() -> dict[str, TaskSpec]:
    return load_task_specs(sorted((REPO / "configs" / "tasks").glob("*.yaml")))


def _split(spec: TaskSpec, name: str, seeds_root: Path) -> list[Record]:
    split = next(s for s in spec.eval if s.split == name)
    return read_eval_split(EvalSplit(spec.name, name, spec, split), seeds_root).items


@pytest.fixture(scope="module")
def gsm8k(specs: dict[str, TaskSpec], seeds_root: Path) -> list[Record]:
    return _split(specs["gsm8k"], "test", seeds_root)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def index(gsm8k: list[Record], embedder: Embedder) -> SemanticIndex:
    return SemanticIndex.build(gsm8k[:INDEXED], embedder)


def paraphrase(question: str) -> tuple[str, str]:
    """The first two sentences swapped, synonyms, and the person renamed; also the old name."""
    name = re.match(r"[A-Z][a-z]+", question)
    assert name is not None
    text = re.sub(rf"\b{name.group(0)}\b", "Emma", question)
    for old, new in SYNONYMS.items():
        text = re.sub(rf"\b{old}\b", new, text)
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    sentences[0], sentences[1] = sentences[1], sentences[0]
    return " ".join(sentences), name.group(0)


def test_light_normalize_and_item_text(gsm8k: list[Record]) -> None:
    assert light_normalize("  A\u00a0b \n\tc \ufb01 ") == "A b c fi"
    record = gsm8k[0]
    assert item_text(record) == light_normalize(f"{record.question} {record.answer}")
    choices = dataclasses.replace(record, choices=["x", record.answer, "y"])
    assert item_text(choices) == light_normalize(f"{record.question} x {record.answer} y")


@needs_model
def test_embeddings_are_unit_float32(embedder: Embedder, gsm8k: list[Record]) -> None:
    vectors = embedder.embed([item_text(r) for r in gsm8k[:5]])
    assert embedder.dim == 384
    assert vectors.dtype == np.float32 and vectors.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


@needs_model
def test_paraphrase_matches_its_item(index: SemanticIndex, gsm8k: list[Record]) -> None:
    named = [r for r in gsm8k[:INDEXED]
             if (m := re.match(r"[A-Z][a-z]+", r.question))
             and r.question.count(m.group(0)) >= 2 and len(re.split(r"[.?!]\s", r.question)) >= 3]
    assert len(named) >= 5
    for target in named[:5]:
        text, old = paraphrase(target.question)
        assert old not in text and "Emma" in text and text != target.question
        found = index.matches([text + "\n" + target.answer], DEFAULT_THRESHOLD, top_k=3)[0]
        assert found, f"paraphrase of {target.source.row} not matched"
        assert found[0].id == target.id and found[0].score >= DEFAULT_THRESHOLD
        assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)


@needs_model
def test_other_questions_of_the_benchmark_do_not_match(
    index: SemanticIndex, gsm8k: list[Record], embedder: Embedder
) -> None:
    others = gsm8k[INDEXED:INDEXED + 20]
    vectors = embedder.embed([item_text(r) for r in others])
    assert index.match_vectors(vectors, DEFAULT_THRESHOLD) == [[] for _ in others]
    nearest = index.match_vectors(vectors, -1.0)
    assert all(0.0 < m[0].score < DEFAULT_THRESHOLD for m in nearest)


@needs_model
def test_index_saves_and_reloads(
    tmp_path: Path, gsm8k: list[Record], embedder: Embedder, index: SemanticIndex
) -> None:
    items = gsm8k[:30]
    built = SemanticIndex.build(items, embedder, tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(files) == 2 and not list(tmp_path.glob("*.tmp"))
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    np.testing.assert_allclose(built.vectors, index.vectors[:30], atol=1e-5)

    key = index_key([item_text(r) for r in items], [r.id for r in items], embedder.key)
    loaded = SemanticIndex.load(tmp_path, key, embedder)
    assert loaded is not None and loaded.ids == built.ids
    assert np.array_equal(loaded.vectors, built.vectors) and loaded.vectors.dtype == np.float32
    again = SemanticIndex.build(items, embedder, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")} == stamps
    assert np.array_equal(again.vectors, built.vectors)

    fewer = SemanticIndex.build(items[:3], embedder, tmp_path)
    assert len(fewer) == 3 and len(list(tmp_path.glob("*.npy"))) == 4


def test_match_vectors_blocks_top_k_and_threshold() -> None:
    gen = np.random.default_rng(0)
    vectors = gen.standard_normal((50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = SemanticIndex([f"e{i}" for i in range(50)], vectors)
    queries = vectors[[3, 7, 11, 20, 41]] + 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = index.match_vectors(queries, 0.5, top_k=4, block=2)
    sims = queries @ vectors.T
    for row, matches in zip(sims, found, strict=True):
        expected = [i for i in np.argsort(-row)[:4] if row[i] >= 0.5]
        assert [m.index for m in matches] == expected
        assert [m.id for m in matches] == [f"e{i}" for i in expected]
        np.testing.assert_allclose([m.score for m in matches], row[expected], rtol=1e-6)
    assert [m[0].index for m in found] == [3, 7, 11, 20, 41]
    assert index.match_vectors(queries, 1.01) == [[] for _ in range(5)]
    every = index.match_vectors(queries, -1.0, top_k=80)
    assert all(len(m) == 50 and m[0].score >= m[-1].score for m in every)
    whole = index.match_vectors(queries, 0.5, top_k=4)
    assert [[m.index for m in r] for r in whole] == [[m.index for m in r] for r in found]
    with pytest.raises(ValueError, match="no embedder"):
        index.matches(["text"], 0.5)


def test_missing_model_package_is_one_line_error() -> None:
    with pytest.raises(TaskseedError) as err:
        Embedder(package="taskseed_no_such_model_package")
    assert str(err.value) == INSTALL_HINT and "\n" not in str(err.value)
    assert "pip install 'taskseed[semantic]'" in str(err.value)


@needs_model
def test_missing_sentence_transformers_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(TaskseedError, match=re.escape("pip install 'taskseed[semantic]'")):
        Embedder()


def test_module_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None; sys.modules['sentence_transformers'] = None\n"
            "import taskseed.curation.decontam.semantic as s\n"
            "assert 'transformers' not in sys.modules; print(s.DEFAULT_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(DEFAULT_THRESHOLD)


@needs_model
def test_stage_drops_reworded_eval_item(
    tmp_path: Path, specs: dict[str, TaskSpec], seeds_root: Path
) -> None:
    mbpp = specs["mbpp"]
    small = mbpp.model_copy(update={"eval": [s for s in mbpp.eval if s.split == "prompt"]})
    prompt = _split(small, "prompt", seeds_root)
    other = _split(mbpp, "test", seeds_root)[0]
    context = BuildContext(specs={"mbpp": small}, seeds_root=seeds_root, run_dir=tmp_path)
    stage = SemanticDecontamStage.build(SemanticDecontamParams(tasks=["mbpp"]), context)
    target = prompt[4]
    reworded = dataclasses.replace(
        target, question=target.question.replace("Write a function to", "Implement a routine to")
        .replace("Write a python function to", "Implement a Python routine to"), id="gen-1")
    assert reworded.question != target.question
    stage.check_ready()
    stage.setup()
    result = stage.process([reworded, dataclasses.replace(other, id="gen-2")], shard=0)
    assert [r.id for r in result.items] == ["gen-2"]
    assert [(r.item_id, r.reason) for r in result.rejects] == [("gen-1", "semantic_contamination")]
    assert "mbpp/prompt row" in result.rejects[0].detail
    assert result.items[0].scores["eval_similarity"] < DEFAULT_THRESHOLD
    assert result.counters["semantic_contamination"] == 1
    assert any(p.suffix == ".npy" for p in (tmp_path / "semantic_index").iterdir())
    shipped = pickle.loads(pickle.dumps(stage))
    assert shipped.index is None and shipped.embedder is None and shipped.specs == stage.specs


def test_stage_rejects_unknown_tasks(tmp_path: Path, specs: dict[str, TaskSpec]) -> None:
    context = BuildContext(specs=specs, seeds_root=tmp_path, run_dir=tmp_path)
    with pytest.raises(TaskseedError, match="unknown tasks nope"):
        SemanticDecontamStage.build(SemanticDecontamParams(tasks=["nope"]), context)
