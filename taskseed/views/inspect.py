"""`taskseed inspect RUN`: the records of one stage, kept or dropped, filtered, as a table or JSONL.

Only committed shards are read (those with a done marker), with pyarrow: the task and reason
filters are pushed down to the Parquet scan, the text and score filters run as Arrow kernels,
and without them only the first `--limit` rows are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml

from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.arrow import RAW_SCHEMA, RECORD_SCHEMA, REJECT_SCHEMA
from taskseed.curation.stage import DoneMarker
from taskseed.rundir.layout import StageDir

TEXT_FIELDS = ("question", "answer", "context", "reasoning")
TEXT_COLUMNS = (*TEXT_FIELDS, "choices")
RAW_FIELDS = ("payload",)
CELL_CHARS = 400  # longest text a table cell shows; --jsonl gives everything
JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


@dataclass(frozen=True)
class ScoreRange:
    """`NAME:LO:HI`: a score between two bounds, inclusive; an empty bound is open."""

    name: str
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, text: str) -> ScoreRange:
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise TaskseedError(f"--score '{text}': give NAME:LO:HI, e.g. reward.score:2.5: "
                                "(an empty bound is open)")
        try:
            low, high = (float(p) if p.strip() else None for p in parts[1:])
        except ValueError:
            raise TaskseedError(f"--score '{text}': LO and HI must be numbers or empty") from None
        return cls(parts[0], low, high)

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high)


@dataclass
class Query:
    """What to show: a stage (None: the last), kept records or rejects, and filters."""

    stage: str | None = None
    rejects: bool = False
    tasks: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    scores: list[ScoreRange] = field(default_factory=list)
    grep: str | None = None
    limit: int = 20


@dataclass
class Selection:
    """The rows shown (full, as dicts), how many matched, and how many the stage holds."""

    stage: Path
    kind: str  # "records", "raw" (a source stage's rows) or "rejects"
    rows: list[dict[str, Any]]
    matched: int
    total: int


def stage_dirs(run_dir: Path) -> list[Path]:
    """The run's stage folders (`NN-name`) in order."""
    root = run_dir / "stages"
    if not root.is_dir():
        raise TaskseedError(f"{run_dir}: not a run directory (no stages/ folder)")
    found = sorted(p for p in root.iterdir() if p.is_dir() and re.match(r"\d+-", p.name))
    if not found:
        raise TaskseedError(f"{run_dir}: no stage has started yet")
    return found


def resolve_stage(run_dir: Path, spec: str | None) -> Path:
    """A stage folder by name (`generate`), number (`3`) or folder name (`03-generate`)."""
    folders = stage_dirs(run_dir)
    if spec is None:
        return folders[-1]
    if spec.isdigit():
        found = [p for p in folders if int(p.name.split("-", 1)[0]) == int(spec)]
    else:
        found = [p for p in folders if spec in (p.name, p.name.split("-", 1)[1])]
    if len(found) > 1:
        raise TaskseedError(f"stage '{spec}' is {', '.join(p.name for p in found)}: give the "
                            "number or the folder name")
    if not found:
        raise TaskseedError(f"unknown stage '{spec}' (known: "
                            f"{', '.join(p.name for p in folders)})")
    return found[0]


def run_tasks(run_dir: Path) -> set[str]:
    """The task names of the run's config (its resolved `specs`)."""
    path = run_dir / "config.yaml"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    config = yaml.load(path.read_text(), Loader=loader) if path.exists() else None
    return set((config or {}).get("specs") or {})


def _check_known(what: str, asked: list[str], known: set[str], where: str) -> None:
    unknown = [a for a in asked if a not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise TaskseedError(f"unknown {what} '{unknown[0]}' in {where} (known: {listed})")


def contains(column: pa.ChunkedArray | pa.Array, text: str) -> np.ndarray:
    """Rows of a string or list-of-strings column that contain `text`, in any case."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(array.type):
        hit = pc.fill_null(pc.match_substring(pc.list_flatten(array), text, ignore_case=True),
                           False)
        out = np.zeros(len(array), dtype=bool)
        out[pc.list_parent_indices(array).to_numpy()[hit.to_numpy(zero_copy_only=False)]] = True
        return out
    return pc.fill_null(pc.match_substring(array, text, ignore_case=True),
                        False).to_numpy(zero_copy_only=False)


def score_names(column: pa.ChunkedArray) -> set[str]:
    flat = pc.list_flatten(column.combine_chunks())
    return set(pc.unique(pc.struct_field(flat, "name")).to_pylist()) - {None}


def in_range(column: pa.ChunkedArray, score: ScoreRange) -> np.ndarray:
    """Rows whose score `score.name` lies in its range."""
    array = column.combine_chunks()
    flat = pc.list_flatten(array)
    names, values = pc.struct_field(flat, "name"), pc.struct_field(flat, "value")
    hit = pc.equal(names, score.name)
    if score.low is not None:
        hit = pc.and_(hit, pc.greater_equal(values, score.low))
    if score.high is not None:
        hit = pc.and_(hit, pc.less_equal(values, score.high))
    out = np.zeros(len(array), dtype=bool)
    hit_np = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
    out[pc.list_parent_indices(array).to_numpy()[hit_np]] = True
    return out


def record_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the record schema as `Record.to_dict` gives it (scores as a mapping)."""
    if "scores" in row:
        row["scores"] = {s["name"]: s["value"] for s in row["scores"] or []}
    return row


def _committed(stage: Path, rejects: bool) -> tuple[list[Path], list[DoneMarker]]:
    out = StageDir(stage)
    shards = out.done_shards()
    paths = [out.rejects_path(s) if rejects else out.shard_path(s) for s in shards]
    return [p for p in paths if p.exists()], [out.read_marker(s) for s in shards]


def select_kept(stage: Path, query: Query, known_tasks: set[str]) -> Selection:
    files, marks = _committed(stage, rejects=False)
    total = sum(m.outputs for m in marks)
    if not files:
        return Selection(stage, "records", [], 0, total)
    raw = "payload" in pq.read_schema(files[0]).names
    data = ds.dataset([str(f) for f in files], schema=RAW_SCHEMA if raw else RECORD_SCHEMA,
                      format="parquet")
    if query.tasks:
        seen = set(pc.unique(data.to_table(columns=["task"])["task"]).to_pylist())
        _check_known("task", query.tasks, known_tasks | seen, stage.name)
    if query.scores:
        if raw:
            raise TaskseedError(f"stage {stage.name} holds raw rows, which have no scores")
        names = score_names(data.to_table(columns=["scores"])["scores"])
        _check_known("score", [s.name for s in query.scores], names, stage.name)
    where = ds.field("task").isin(query.tasks) if query.tasks else None
    if query.grep is None and not query.scores:
        matched = data.count_rows(filter=where)
        table = (data.head(query.limit, filter=where) if query.limit
                 else data.to_table(filter=where))
    else:
        index = matching_rows(data, where, query, RAW_FIELDS if raw else TEXT_COLUMNS)
        matched = len(index)
        table = data.take(pa.array(index[: query.limit] if query.limit else index,
                                   type=pa.int64()), filter=where)
    rows = [record_dict(r) for r in table.to_pylist()]
    return Selection(stage, "raw" if raw else "records", rows, matched, total)


def matching_rows(data: ds.Dataset, where: ds.Expression | None, query: Query,
                  text_columns: tuple[str, ...]) -> np.ndarray:
    """Positions (among the rows `where` keeps) of the rows that pass the grep and score
    filters; only the columns those filters need are read."""
    columns = [*(text_columns if query.grep is not None else ()),
               *(["scores"] if query.scores else [])]
    table = data.to_table(columns=columns, filter=where)
    mask = np.ones(table.num_rows, dtype=bool)
    if query.grep is not None:
        mask &= np.logical_or.reduce([contains(table[f], query.grep) for f in text_columns])
    for score in query.scores:
        mask &= in_range(table["scores"], score)
    return np.flatnonzero(mask)


def _item_matches(item: dict[str, Any], query: Query) -> bool:
    if query.tasks and item.get("task") not in query.tasks:
        return False
    scores = item.get("scores") or {}
    if any(s.name not in scores or not s.holds(scores[s.name]) for s in query.scores):
        return False
    if query.grep is None:
        return True
    needle = query.grep.casefold()
    texts = [item.get(f) for f in (*TEXT_FIELDS, *RAW_FIELDS)] + list(item.get("choices") or [])
    return any(isinstance(t, str) and needle in t.casefold() for t in texts)


def select_rejects(stage: Path, query: Query, known_tasks: set[str]) -> Selection:
    files, marks = _committed(stage, rejects=True)
    reasons: dict[str, int] = {}
    for mark in marks:
        for reason, n in mark.rejects.items():
            reasons[reason] = reasons.get(reason, 0) + n
    _check_known("reason", query.reasons, set(reasons), stage.name)
    total = sum(reasons.values())
    if not files:
        return Selection(stage, "rejects", [], 0, total)
    data = ds.dataset([str(f) for f in files], schema=REJECT_SCHEMA, format="parquet")
    where = ds.field("reason").isin(query.reasons) if query.reasons else None
    if not (query.tasks or query.scores or query.grep is not None):
        matched = data.count_rows(filter=where)
        table = (data.head(query.limit, filter=where) if query.limit
                 else data.to_table(filter=where))
        rows = [{**r, "item": json.loads(r["item"])} for r in table.to_pylist()]
        return Selection(stage, "rejects", rows, matched, total)
    table = data.to_table(filter=where)
    grep_only = not (query.tasks or query.scores)
    if grep_only and query.grep is not None and not JSON_ESCAPED.search(query.grep):
        table = table.filter(pa.array(contains(table["item"], query.grep)))
    rows = [{**r, "item": json.loads(r["item"])} for r in table.to_pylist()]
    seen = {r["item"].get("task") for r in rows} - {None}
    _check_known("task", query.tasks, known_tasks | seen, stage.name)
    names = {n for r in rows for n in (r["item"].get("scores") or {})}
    _check_known("score", [s.name for s in query.scores], names, stage.name)
    rows = [r for r in rows if _item_matches(r["item"], query)]
    shown = rows[: query.limit] if query.limit else rows
    return Selection(stage, "rejects", shown, len(rows), total)


def select(run_dir: Path, query: Query) -> Selection:
    """The rows of a run's stage that match the query (at most `query.limit`, 0: all)."""
    stage = resolve_stage(Path(run_dir), query.stage)
    known = run_tasks(Path(run_dir)) if query.tasks else set()
    if query.rejects or query.reasons:
        return select_rejects(stage, query, known)
    return select_kept(stage, query, known)


def jsonl_lines(selection: Selection) -> Iterator[str]:
    """One JSON object per shown row, complete."""
    for row in selection.rows:
        yield json.dumps(row, ensure_ascii=False, default=str)


def _cut(text: Any, limit: int = CELL_CHARS) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cells(row: dict[str, Any], kind: str) -> dict[str, str]:
    """The text of each table column for one row."""
    if kind == "raw":
        source = row.get("source") or {}
        return {"row": f"{source.get('path')}:{source.get('row')}\n{row.get('task')}",
                "payload": _cut(row.get("payload"))}
    item = row["item"] if kind == "rejects" else row
    if "payload" in item:  # a raw row that normalizing dropped
        out = {"record": f"{row.get('item_id', '')}\n{item.get('task')}",
               "question": _cut(item.get("payload")), "answer": ""}
    else:
        question = _cut(item.get("question"))
        if item.get("context"):
            question = f"[context] {_cut(item['context'], CELL_CHARS // 2)}\n{question}"
        choices = item.get("choices") or []
        question += "".join(f"\n {chr(65 + i % 26)}) {_cut(c, 120)}"
                            for i, c in enumerate(choices))
        answer = _cut(item.get("answer"))
        if item.get("reasoning"):
            answer += f"\n[reasoning] {_cut(item['reasoning'], CELL_CHARS // 2)}"
        out = {"record": f"{str(item.get('id', ''))[:12]}\n{item.get('task')}\n"
                         f"{item.get('format')} {item.get('origin')}",
               "question": question, "answer": answer}
    scores = "\n".join(f"{k} {v:g}" for k, v in sorted((item.get("scores") or {}).items()))
    if kind == "rejects":
        out["dropped"] = f"{row['reason']}: {_cut(row['detail'], 200)}" + (
            f"\n{scores}" if scores else "")
    else:
        out["scores"] = scores
    return out


def footer(selection: Selection) -> str:
    what = "rejects" if selection.kind == "rejects" else "records"
    return (f"{len(selection.rows)} of {selection.matched} matching {what} shown; stage "
            f"{selection.stage.name} holds {selection.total} {what}")


def render_rich(selection: Selection, console: Any) -> None:
    """Print the selection as a rich table on `console`."""
    from rich.table import Table
    from rich.text import Text

    rows = [cells(r, selection.kind) for r in selection.rows]
    table = Table(show_lines=True, title=f"{selection.stage.name} ({selection.kind})")
    table.add_column("#", justify="right", no_wrap=True)
    for name in rows[0] if rows else ():
        table.add_column(name, overflow="fold", ratio=1 if name in ("question", "answer",
                                                                    "payload") else None)
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), *(Text(v) for v in row.values()))
    if rows:
        console.print(table)
    console.print(Text(footer(selection)))


def render_plain(selection: Selection, width: int = 100) -> str:
    """The selection as wrapped text blocks (when rich is not installed)."""
    import textwrap

    out = []
    for i, row in enumerate(selection.rows, 1):
        out.append(f"[{i}]")
        for name, text in cells(row, selection.kind).items():
            for n, line in enumerate(text.splitlines() or [""]):
                head = f"  {name}: " if n == 0 else " " * (len(name) + 4)
                out.append(textwrap.fill(line, width, initial_indent=head,
                                         subsequent_indent=" " * (len(name) + 4)))
    out.append(footer(selection))
    return "\n".join(out)
