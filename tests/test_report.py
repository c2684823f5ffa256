"""`taskseed report`: the HTML report of a real run directory, rendered in headless Chromium.

The run is `sample_run.build_sample_run`: real seeds, a loopback teacher, judge and reward
model, and every curation stage. Chromium loads the report and each plot's box is cropped
from the screenshot and checked for size and content; without Chromium these tests fail.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from chromium import drawn, pixels, require_chromium
from markupsafe import escape
from sample_run import SCRIPT, build_sample_run
from taskseed.curation.errors import TaskseedError

from taskseed.cli.report import add_report_command
from taskseed.config.budget import BudgetConfig
from taskseed.views.report.browser import page_layout
from taskseed.views.report.data import load_report_data
from taskseed.views.report.render import write_report

SAMPLES = 10
PLOTS = {"plot-funnel", "plot-funnel-tasks", "plot-drops", "plot-scores-06-llm_judge",
         "plot-scores-07-reward", "plot-lengths", "plot-contamination", "plot-duplicates",
         "plot-licenses", "plot-usage"}
TASKS = {"gsm8k_mini", "csqa_mini", "race_mini"}


def parser() -> argparse.ArgumentParser:
    """A `taskseed`-like parser with the report command registered."""
    root = argparse.ArgumentParser(prog="taskseed")
    add_report_command(root.add_subparsers(dest="command", required=True))
    return root


def cli(*argv: str) -> int:
    args = parser().parse_args(["report", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, seeds_root: Path) -> Path:
    return build_sample_run(tmp_path_factory.mktemp("report-run"), seeds_root)


@pytest.fixture(scope="module")
def rendered(run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The report and its screenshot, written by the command."""
    require_chromium()
    out = tmp_path_factory.mktemp("report-out")
    page, png = out / "report.html", out / "report.png"
    assert cli(str(run), "--out", str(page), "--samples", str(SAMPLES),
               "--screenshot", str(png)) == 0
    return page, png


@pytest.fixture(scope="module")
def text(rendered: tuple[Path, Path]) -> str:
    return rendered[0].read_text(encoding="utf-8")


def test_every_plot_is_drawn_in_chromium(rendered, text):
    page, png = rendered
    ids = re.findall(r'<figure class="plot" id="([^"]+)"', text)
    assert sorted(ids) == sorted(PLOTS)
    layout = page_layout(page)
    assert set(layout["plots"]) == PLOTS
    shot = pixels(png)
    assert shot.shape == (round(layout["height"]), 1280, 3)
    for plot_id in ids:
        box = layout["plots"][plot_id]
        assert box["decoded"], plot_id
        seen = drawn(shot, box)
        assert seen.width >= 200 and seen.height >= 100, (plot_id, seen)
        assert seen.ink >= 0.02 and seen.colours >= 4, (plot_id, seen)
    funnel = layout["plots"]["plot-funnel"]
    margin = drawn(shot, {"x": 0, "y": funnel["y"], "w": 120, "h": funnel["h"]})
    assert margin.ink < 0.01  # the measure finds nothing where nothing is drawn


def test_the_report_references_nothing_outside_the_file(text):
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    sources = re.findall(r'\ssrc="([^"]*)"', text)
    assert len(sources) == len(PLOTS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\shref="([^"]*)"', text))
    lowered = text.lower()
    for marker in ("<script", "<link", "<iframe", "@import", "url("):
        assert marker not in lowered, marker


def test_record_text_is_escaped(run, text):
    data = load_report_data(run, SAMPLES)
    shown = [s for pairs in data.samples.values() for _, seeds in pairs for s in seeds]
    assert any(SCRIPT in s["question"] for s in shown)  # the planted seed is on the page
    assert SCRIPT not in text
    assert str(escape(SCRIPT)) in text


def test_samples_show_each_generated_record_beside_its_seeds(run, text):
    data = load_report_data(run, SAMPLES)
    pairs = [(task, rec, seeds) for task, items in data.samples.items() for rec, seeds in items]
    assert {task for task, _, _ in pairs} == TASKS
    blocks = [b.split("<h3", 1)[0].split("<h2", 1)[0]
              for b in text.split('<div class="pair sample"')[1:]]
    assert len(blocks) == len(pairs)
    for block, (task, record, seeds) in zip(blocks, pairs, strict=True):
        assert f'data-task="{task}"' in block
        assert record["origin"] == "generated" and record["task"] == task
        assert [s["id"] for s in seeds] == record["lineage"]["seed_ids"]
        generated, _, beside = block.partition('class="rec seed"')
        assert str(escape(record["question"])) in generated
        for seed in seeds:
            assert seed["origin"] == "seed" and seed["task"] == task
            assert str(escape(seed["question"])) in "class" + beside


def test_headline_numbers_come_first(run, text):
    head = text.split("<h2", 1)[0]
    cards = dict(re.findall(r'<div class="label">(.*?)</div><div class="value">(.*?)</div>',
                            head))
    summary = json.loads((run / "summary.json").read_text())
    stages = {s["name"]: s for s in summary["stages"]}
    assert cards["seed records"] == str(stages["normalize"]["outputs"])
    assert cards["records out (11 fuzzy_dedup)"] == str(stages["fuzzy_dedup"]["outputs"])
    decontam = json.loads(next(run.glob("stages/*/decontamination.json")).read_text())
    assert int(cards["eval contamination"]) == decontam["generated"]["records_dropped"] >= 2
    calls = {"generate": "teacher", "enrich": "teacher", "llm_judge": "judge",
             "reward": "reward"}
    counters = {name: stages[name]["counters"] for name in calls}
    tokens = sum(c["prompt_tokens"] + c["completion_tokens"] for c in counters.values())
    assert cards["model tokens"] == f"{tokens:,}"
    budget = BudgetConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text())
                                         ["budget"])
    cost = sum(budget.cost(c["prompt_tokens"], c["completion_tokens"], calls[name])
               for name, c in counters.items())
    assert cards["cost"] == f"${cost:,.4f}" and cost > 0
    manifest = json.loads(next(run.glob("stages/*-mix/manifest.json")).read_text())
    assert cards["mix records"] == str(manifest["sets"]["full"]["records"])
    for stage in summary["stages"]:
        for reason, n in stage["rejects"].items():
            assert f": {reason} ({n})</h3>" in text


def test_scores_duplicates_licenses_and_usage_are_read_from_the_run(run):
    data = load_report_data(run, 1)
    minimum = {s.name: s.threshold for s in data.scores}
    assert minimum["judge.clarity"] == 3 and minimum["judge.safety"] == 4  # config, rubric
    assert minimum["judge.difficulty"] == 1
    assert minimum["reward.correctness"] == 0.8 and minimum["reward.score"] == 1.5
    judged = next(s for s in data.scores if s.name == "judge.clarity")
    assert judged.dropped and min(judged.kept) >= 3 and judged.discrete
    dup = data.duplicates
    assert dup.exact_sizes and dup.fuzzy_sizes and all(0.7 <= j <= 1 for j in dup.jaccard)
    licenses = {r["license"]: r for r in data.licenses}
    assert licenses["MIT"]["commercial_records"] == licenses["MIT"]["records"] > 0
    race = next(r for name, r in licenses.items() if name.startswith("RACE"))
    assert race["records"] > 0 and race["commercial_records"] == 0
    terms = data.model_terms  # the teacher (Apache-2.0) generates and enriches
    assert {(m["stage"], m["license"]) for m in terms["models"]} == {
        ("generate", "Apache-2.0"), ("enrich", "Apache-2.0")}
    (reason,) = terms["not_commercial"]
    assert reason == f"seed license {race['license']} is not on the commercial allowlist"
    assert terms["not_commercial"][reason] == terms["records"] - terms["commercial"] > 0
    usage = {u.stage.split()[1]: u for u in data.usage}
    assert {u.model for u in usage.values()} == {"teacher", "judge", "reward"}
    assert usage["generate"].model_id == "openai fake-teacher"
    assert all(u.calls > 0 and u.usd is not None and u.usd > 0 for u in usage.values())


def test_sections_without_data_say_so_in_a_line(run, tmp_path):
    partial = tmp_path / "partial"
    (partial / "stages").mkdir(parents=True)
    shutil.copy(run / "config.yaml", partial / "config.yaml")
    for folder in ("01-seeds", "02-normalize"):
        shutil.copytree(run / "stages" / folder, partial / "stages" / folder)
    page = write_report(partial)
    assert page == partial / "report.html"
    text = page.read_text(encoding="utf-8")
    ids = set(re.findall(r'<figure class="plot" id="([^"]+)"', text))
    assert ids == {"plot-funnel", "plot-funnel-tasks", "plot-lengths", "plot-licenses"}
    assert text.count("<figure") == text.count("<img") == len(ids)
    for line in ("No stage dropped a record.",
                 "No judge, reward or self-consistency scores in this run.",
                 "No decontamination report in this run", "No duplicate clusters",
                 "No stage called a model.", "No generated records in the final stage.",
                 "No records were dropped."):
        assert line in text, line


@pytest.mark.parametrize("case", ["empty", "missing", "file", "stages_only", "bad_config"])
def test_a_folder_that_is_not_a_run_directory_is_a_one_line_error(tmp_path, case):
    path = tmp_path / case
    if case == "empty":
        path.mkdir()
    elif case == "file":
        path.write_text("not a run\n")
    elif case in ("stages_only", "bad_config"):
        (path / "stages" / "01-seeds").mkdir(parents=True)
    if case == "bad_config":
        (path / "config.yaml").write_text("name: [unclosed\nstages: {\n")
    with pytest.raises(TaskseedError) as info:
        cli(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert not (path / "report.html").exists()


def test_a_negative_sample_count_is_refused(run, tmp_path):
    with pytest.raises(TaskseedError, match="--samples"):
        cli(str(run), "--out", str(tmp_path / "r.html"), "--samples", "-1")


def test_a_screenshot_can_be_the_top_of_the_page(rendered, tmp_path):
    from PIL import Image

    page, full = rendered
    from taskseed.views.report.browser import screenshot

    top = tmp_path / "top.png"
    screenshot(page, top, height=700)
    assert Image.open(top).size == (1280, 700)
    assert Image.open(full).size[1] > 700
