"""`taskseed inspect RUN` on a real run over ../shared/seeds.

The run reads seeds, normalizes them and scores them with a reward model on the loopback fake
server (`min_score` drops some, so the reward stage has rejects that carry scores). Every filter
is checked against the records read back through `StageDir.read_shard`.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Record

from taskseed.cli.inspect import add_inspect_command
from taskseed.rundir.layout import StageDir
from taskseed.views.inspect import (
    Query,
    ScoreRange,
    render_plain,
    render_rich,
    resolve_stage,
    select,
)

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "configs" / "tasks"
PIPE = """name: inspect-test
run_dir: {run}
seeds_root: {seeds}
tasks: [{tasks}/gsm8k.yaml, {tasks}/arc_easy.yaml, {tasks}/race.yaml]
executor: {{workers: 1}}
models:
  reward: {{backend: nim_reward, base_url: '{url}', model: fake-reward}}
stages:
  - {{name: seeds, max_per_task: 40, rows_per_shard: 50}}
  - {{name: normalize}}
  - {{name: reward, min_score: 1.5}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, seeds_root: Path) -> Path:
    from taskseed.generation.servers.fake import FakeOpenAIServer

    from taskseed.execution.run import run_pipeline

    base = tmp_path_factory.mktemp("inspect")
    config = base / "pipe.yaml"
    with FakeOpenAIServer() as server:
        config.write_text(PIPE.format(run=base / "run", seeds=seeds_root, tasks=TASKS,
                                      url=server.base_url))
        run_pipeline(config, progress=lambda line: None)
    return base / "run"


def kept(run: Path, folder: str = "03-reward") -> list[Record]:
    out = StageDir(run / "stages" / folder)
    return [r for s in out.done_shards() for r in out.read_shard(s, Record)]


def dropped(run: Path, folder: str = "03-reward") -> list[dict]:
    out = StageDir(run / "stages" / folder)
    return [{**r.to_dict(), "item": json.loads(r.item)}
            for s in out.done_shards() for r in out.read_rejects(s)]


def cli(run: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="taskseed")
    add_inspect_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["inspect", str(run), *argv])
    return args.func(args)


def grep_hit(record: dict, text: str) -> bool:
    fields = [record.get(f) or "" for f in ("question", "answer", "context", "reasoning")]
    return any(text.lower() in f.lower() for f in [*fields, *record.get("choices", [])])


def test_default_is_the_last_stage_with_a_limit(run: Path) -> None:
    records = kept(run)
    got = select(run, Query())
    assert got.stage.name == "03-reward" and got.kind == "records"
    assert got.matched == got.total == len(records) > 20
    assert [r["id"] for r in got.rows] == [r.id for r in records[:20]]
    assert len(select(run, Query(limit=0)).rows) == len(records)


def test_stage_by_name_number_or_folder(run: Path, tmp_path: Path) -> None:
    assert {resolve_stage(run, s).name for s in ("normalize", "2", "02", "02-normalize")} == {
        "02-normalize"}
    with pytest.raises(TaskseedError, match=r"unknown stage 'judge' \(known: 01-seeds, "
                                            r"02-normalize, 03-reward\)"):
        resolve_stage(run, "judge")
    for name in ("05-heuristics", "09-heuristics"):
        (tmp_path / "stages" / name).mkdir(parents=True)
    with pytest.raises(TaskseedError, match="05-heuristics, 09-heuristics: give the number"):
        resolve_stage(tmp_path, "heuristics")
    for rejects in (False, True):
        empty = select(tmp_path, Query(stage="9", rejects=rejects))
        assert (empty.stage.name, empty.rows, empty.matched, empty.total) == (
            "09-heuristics", [], 0, 0)
    with pytest.raises(TaskseedError, match="not a run directory"):
        resolve_stage(tmp_path / "stages", None)


def test_task_grep_and_score_filters_match_the_records(run: Path) -> None:
    records = [r.to_dict() for r in kept(run)]
    got = select(run, Query(tasks=["gsm8k"], limit=0))
    assert [r["id"] for r in got.rows] == [r["id"] for r in records if r["task"] == "gsm8k"]
    for text in ("THE", "bloodstream", "$", "zzz-absent"):
        got = select(run, Query(grep=text, limit=0))
        assert [r["id"] for r in got.rows] == [r["id"] for r in records if grep_hit(r, text)]
    for spec in ("reward.score:2:3", "reward.correctness::1", "reward.helpfulness:3.5:"):
        score = ScoreRange.parse(spec)
        got = select(run, Query(scores=[score], tasks=["arc_easy", "race"], limit=0))
        want = [r["id"] for r in records if r["task"] in ("arc_easy", "race")
                and score.holds(r["scores"][score.name])]
        assert [r["id"] for r in got.rows] == want and got.matched == len(want)
    grep = select(run, Query(grep="answer", limit=3))
    assert len(grep.rows) == 3 and grep.matched == sum(grep_hit(r, "answer") for r in records)


def test_rejects_show_reason_detail_and_scores(run: Path) -> None:
    drops = dropped(run)
    got = select(run, Query(rejects=True, limit=0))
    assert got.kind == "rejects" and got.total == got.matched == len(drops) > 0
    assert [(r["reason"], r["detail"], r["item"]) for r in got.rows] == [
        (d["reason"], d["detail"], d["item"]) for d in drops]
    assert select(run, Query(reasons=["low_reward"], limit=0)).matched == len(drops)
    low = select(run, Query(rejects=True, scores=[ScoreRange("reward.score", None, 1.0)],
                            limit=0))
    assert [r["item_id"] for r in low.rows] == [
        d["item_id"] for d in drops if d["item"]["scores"]["reward.score"] <= 1.0]
    some = drops[0]["item"]["question"].split()[1]
    assert {r["item_id"] for r in select(run, Query(rejects=True, grep=some.upper())).rows} == {
        d["item_id"] for d in drops if grep_hit(d["item"], some)}


def test_unknown_names_are_one_line_errors(run: Path) -> None:
    with pytest.raises(TaskseedError, match=r"unknown task 'gsm9k' in 03-reward \(known: "
                                            r"arc_easy, gsm8k, race\)"):
        select(run, Query(tasks=["gsm9k"]))
    with pytest.raises(TaskseedError, match=r"unknown score 'judge.correctness' .*known: "
                                            r"reward.coherence, "):
        select(run, Query(scores=[ScoreRange("judge.correctness")]))
    with pytest.raises(TaskseedError, match=r"unknown reason 'duplicate' in 03-reward "
                                            r"\(known: low_reward\)"):
        select(run, Query(reasons=["duplicate"]))
    with pytest.raises(TaskseedError, match="no scores"):
        select(run, Query(stage="seeds", scores=[ScoreRange("reward.score")]))
    for bad in ("reward.score", "reward.score:a:1", ":1:2"):
        with pytest.raises(TaskseedError, match="--score"):
            ScoreRange.parse(bad)
    with pytest.raises(TaskseedError, match="--limit"):
        cli(run, "--limit", "-1")


def test_jsonl_gives_full_records(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(run, "--task", "race", "--limit", "5", "--jsonl") == 0
    lines = capsys.readouterr().out.splitlines()
    records = [r for r in kept(run) if r.task == "race"][:5]
    assert [Record.from_dict(json.loads(line)) for line in lines] == records
    assert records[0].context and records[0].scores
    assert cli(run, "--reason", "low_reward", "--jsonl") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["item"] for r in rows] == [d["item"] for d in dropped(run)][:20]


def test_table_wraps_long_text(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    got = select(run, Query(tasks=["race"], limit=2))
    console = Console(file=io.StringIO(), width=100)
    render_rich(got, console)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "[context]" in text and "reward.score" in text
    assert f"2 of {got.matched} matching records shown" in text
    first_words = " ".join(got.rows[0]["question"].split()[:2])
    assert first_words in " ".join(text.split())
    plain = render_plain(got, width=80)
    assert max(len(line) for line in plain.splitlines()) <= 80 and "[context]" in plain
    assert cli(run, "--stage", "1", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "01-seeds (raw)" in out and "payload" in out
    assert "1 of 120 matching records shown" in out
