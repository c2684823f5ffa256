"""Stages, formats, model backends, seed-row parsers and report sections list themselves: one
new module in its folder (and a format's prompt template) is all it takes, with no list to
edit. A copy of the package gets a new format, a new filter stage, a new backend, a new
row parser and a new report section; a pipeline runs with all five and its report shows the
section."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from taskseed.curation.formats import DEFINITIONS
from taskseed.curation.seeds.parsers import PARSERS
from taskseed.generation.backends.catalog import BACKENDS, CHAT, SCORE

from taskseed.registry import BUILTIN
from taskseed.views.report.sections import sections

REPO = Path(__file__).resolve().parents[1]

FORMAT = '''"""Riddles: a short answer to a playful question."""

from taskseed.curation.formats.base import AnswerFormat


class Riddle(AnswerFormat):
    name = "riddle"


FORMAT = Riddle()
'''

STAGE = '''"""Drops records whose answer is longer than `max_words` words."""

from pydantic import Field
from taskseed.curation.record import Record
from taskseed.curation.stage import KEEP, FilterStage, StageParams, Verdict, drop


class ShortAnswerParams(StageParams):
    max_words: int = Field(2, ge=1)


class ShortAnswerStage(FilterStage[ShortAnswerParams]):
    name = "short_answer"
    params_model = ShortAnswerParams

    def check(self, record: Record) -> Verdict:
        words = len(record.answer.split())
        if words > self.params.max_words:
            return drop("long_answer", f"{words} words")
        return KEEP
'''

BACKEND = '''"""A backend that answers every request from a canned list, for tests."""

import json
from typing import Literal

from taskseed.generation.backends.base import BackendConfig, TeacherResponse, Usage

ANSWERS = ["a shadow", "the letter m in a minute but never in a thousand years"]


class CannedTeacher:
    model = "canned"

    def generate(self, requests, on_response=None):
        out = []
        for i, request in enumerate(requests):
            seed = request.sampling.seed or 0
            reply = {"question": f"What can you catch but never throw, riddle {seed}?",
                     "answer": ANSWERS[seed % 2]}
            response = TeacherResponse(text=json.dumps(reply), usage=Usage(10, 10))
            if on_response is not None:
                on_response(i, response)
            out.append(response)
        return out

    def close(self):
        pass


class CannedConfig(BackendConfig):
    backend: Literal["canned"] = "canned"
    model: str = "canned"

    def build(self):
        return CannedTeacher()
'''

PARSER = '''"""`parser: pipes`: one text field holding `question | answer`."""

from typing import Literal

from taskseed.curation.errors import RowError
from taskseed.curation.formats.base import Fields
from taskseed.curation.seeds.parsers.base import RowParser, RowSteps, text_of


class PipesMapping(RowSteps):
    parser: Literal["pipes"]
    field: str = "line"


def _fields(row, mapping, fmt):
    question, sep, answer = text_of(row.get(mapping.field), mapping.field).partition(" | ")
    if not sep:
        raise RowError("unparsable", mapping.field, "no ' | ' between question and answer")
    return Fields(question=question, answer=answer)


PARSER = RowParser("pipes", PipesMapping, _fields)
'''

TASK = """name: riddles
family: riddles
format: riddle
license: MIT
source: {dataset: example/riddles}
scored_split: test
train: {split: train, files: [riddles.jsonl], mapping: {parser: pipes, field: line}}
"""

PIPE = """name: catalogue
run_dir: run
seeds_root: seeds
tasks: [riddles.yaml]
executor: {workers: 1}
teacher: {backend: canned, license: MIT}
stages:
  - {name: seeds}
  - {name: normalize}
  - {name: generate, exemplars: 2, samples_per_group: 4, groups_per_shard: 2}
  - {name: short_answer, max_words: 2}
  - {name: export}
"""

SECTION = '''"""The shortest answers of the run's final records."""

from taskseed.views.report.sections import Section

TEMPLATE = """<ul>{% for a in answers %}<li class="shortest">{{ a }}</li>{% endfor %}</ul>"""


def context(data):
    import pyarrow.parquet as pq

    answers = [a for p in data.final.files() for a in pq.read_table(p)["answer"].to_pylist()]
    return {"answers": sorted(set(answers), key=len)[:2]}


SECTION = Section(15, "shortest", "Shortest", "Shortest answers", TEMPLATE, context)
'''

RUN = """
import json
from taskseed.execution.run import run_pipeline
from taskseed.views.report.render import write_report
summary = run_pipeline("pipe.yaml", progress=lambda line: None)
write_report("run")
print(json.dumps({s["name"]: [s["outputs"], s["rejects"]] for s in summary["stages"]}))
"""


def package_copy(root: Path) -> Path:
    """The four top-level folders as one importable `taskseed` package under `root`."""
    target = root / "taskseed"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "taskseed", target, ignore=skip)
    for folder in ("curation", "generation", "judges"):
        shutil.copytree(REPO / folder, target / folder, ignore=skip)
    shutil.copytree(REPO / "configs", target / "configs", ignore=skip)  # repository tables
    return target


def test_the_catalogues_hold_what_the_folders_hold() -> None:
    assert {cls.name for cls in BUILTIN} == {
        "seeds", "normalize", "generate", "validity", "heuristics", "decontaminate",
        "semantic_decontam", "verify", "fact_check", "self_consistency", "llm_judge", "reward",
        "enrich",
        "exact_dedup", "fuzzy_dedup", "export", "mix"}
    assert set(DEFINITIONS) == {"multiple_choice", "yes_no", "extractive", "free_form",
                                "math", "code", "completion"}
    assert set(CHAT) == {"embedded", "openai", "tensorrt_llm"}
    assert set(SCORE) == {"nim_reward", "vllm_reward", "tensorrt_llm_reward"}
    assert set(BACKENDS) == set(CHAT) | set(SCORE)
    assert set(PARSERS) == {"fields", "llm_adapters", "jinja"}
    assert [s.anchor for s in sections()] == [
        "tasks", "funnel", "drops", "scores", "lengths", "contamination", "duplicates",
        "licenses", "usage", "samples", "dropped"]


def test_one_new_module_each_adds_a_format_a_stage_a_backend_and_a_section(
        tmp_path: Path) -> None:
    package = package_copy(tmp_path / "site")
    (package / "curation" / "formats" / "riddle.py").write_text(FORMAT)
    shutil.copy(package / "generation" / "prompts" / "free_form.j2",
                package / "generation" / "prompts" / "riddle.j2")
    (package / "judges" / "filters" / "short_answer.py").write_text(STAGE)
    (package / "generation" / "backends" / "canned.py").write_text(BACKEND)
    (package / "views" / "report" / "sections" / "shortest.py").write_text(SECTION)
    (package / "curation" / "seeds" / "parsers" / "pipes.py").write_text(PARSER)
    work = tmp_path / "work"
    (work / "seeds").mkdir(parents=True)
    rows = [{"line": f"What has keys but opens no locks, number {i}? | a piano"}
            for i in range(6)]
    (work / "seeds" / "riddles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (work / "riddles.yaml").write_text(TASK)
    (work / "pipe.yaml").write_text(PIPE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run([sys.executable, "-c", RUN], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(stages) == ["seeds", "normalize", "generate", "short_answer", "export"]
    assert stages["normalize"][0] == 6
    generated = stages["generate"][0]
    kept, dropped = stages["short_answer"]
    assert generated > 0 and dropped == {"long_answer": generated - kept} and 0 < kept < generated
    exported = [json.loads(line) for p in sorted((work / "run" / "stages").glob("*-export/*.jsonl"))
                for line in p.read_text().splitlines()]
    assert len(exported) == kept
    assert {r["format"] for r in exported} == {"riddle"}
    assert {r["lineage"]["teacher_model"] for r in exported} == {"canned"}
    assert all("a shadow" in r["text"] and "letter m" not in r["text"] for r in exported)
    page = (work / "run" / "report.html").read_text()
    assert '<a href="#shortest">Shortest</a>' in page
    assert '<h2 id="shortest">Shortest answers</h2>' in page
    assert page.index('id="tasks"') < page.index('id="shortest"') < page.index('id="funnel"')
    assert '<li class="shortest">a shadow</li>' in page


def test_formats_state_the_traits_the_filters_and_the_mix_read() -> None:
    traits = {name: (f.answer_kind, f.vote, f.verifier, f.implied_options, f.continues_text)
              for name, f in DEFINITIONS.items()}
    assert traits == {
        "multiple_choice": ("text", "choices", None, (), False),
        "completion": ("text", "choices", None, (), True),
        "yes_no": ("value", "yes_no", None, ("yes", "no"), False),
        "extractive": ("text", "short", "extractive", (), False),
        "free_form": ("text", "short", None, (), False),
        "math": ("value", "number", "math", (), False),
        "code": ("code", "", "code", (), False),
    }
