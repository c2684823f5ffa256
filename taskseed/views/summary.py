"""Per-stage reports and the run summary: counts per stage, drops per reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from taskseed.config.budget import BudgetConfig
from taskseed.curation.io.files import write_json
from taskseed.curation.stage import DoneMarker
from taskseed.rundir.layout import RunDir, StageDir

EXAMPLES = 3  # reject details shown per stage and reason


@dataclass
class StageReport:
    name: str
    shards: int
    shards_run: int
    inputs: int
    outputs: int
    rejects: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    counters_this_run: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    coverage: float | None = None  # teacher stages: accepted / planned requests
    examples: dict[str, list[str]] = field(default_factory=dict)  # first details per reason

    @classmethod
    def collect(cls, name: str, out: StageDir, ran: dict[int, DoneMarker], seconds: float
                ) -> StageReport:
        """Totals over every done shard, plus counters of the shards run in this invocation."""
        rejects: Counter[str] = Counter()
        counters: Counter[str] = Counter()
        now: Counter[str] = Counter()
        inputs = outputs = 0
        shards = out.done_shards()
        for m in out.markers():
            inputs += m.inputs
            outputs += m.outputs
            rejects.update(m.rejects)
            counters.update(m.counters)
        for m in ran.values():
            now.update(m.counters)
        planned = counters.get("planned", 0)
        coverage = round(counters.get("accepted", 0) / planned, 4) if planned else None
        return cls(
            name, len(shards), len(ran), inputs, outputs, dict(sorted(rejects.items())),
            dict(sorted(counters.items())), dict(sorted(now.items())), round(seconds, 2),
            coverage, first_details(out, shards, set(rejects)),
        )

    def line(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in self.rejects.items()) or "none"
        text = (
            f"[{self.name}] {self.shards} shards ({self.shards_run} run now): "
            f"{self.inputs} in -> {self.outputs} out; drops: {drops}"
        )
        if "teacher_calls" in self.counters or self.name == "generate":
            text += f"; teacher calls now: {self.counters_this_run.get('teacher_calls', 0)}"
        if self.coverage is not None:
            text += f"; {coverage_text(self.counters)}"
        return text


def first_details(out: StageDir, shards: list[int], reasons: set[str]) -> dict[str, list[str]]:
    """The details of the first EXAMPLES drops of each reason (file, row and field for a
    seed), reading reject files only until every reason has them."""
    examples: dict[str, list[str]] = {reason: [] for reason in sorted(reasons)}
    for shard in shards:
        if all(len(v) >= EXAMPLES for v in examples.values()):
            break
        if not out.rejects_path(shard).exists():
            continue
        for reject in out.read_rejects(shard):
            shown = examples.setdefault(reject.reason, [])
            if len(shown) < EXAMPLES and reject.detail:
                shown.append(reject.detail[:200])
    return {reason: shown for reason, shown in examples.items() if shown}


def coverage_text(counters: dict[str, int]) -> str:
    """`coverage 75.0% (21 of 28 requests)`, with failures kept unchanged when there are."""
    planned, accepted = counters.get("planned", 0), counters.get("accepted", 0)
    text = f"coverage {accepted / planned:.1%} ({accepted} of {planned} requests)"
    if counters.get("enrich_failed"):
        text += f", {counters['enrich_failed']} records kept without enrichment"
    if counters.get("kept_ungraded"):
        text += (f", {counters['kept_ungraded']} records kept ungraded (their requests are "
                 "in failures.jsonl)")
    return text


def teacher_calls_this_run(reports: list[StageReport]) -> int:
    return sum(r.counters_this_run.get("teacher_calls", 0) for r in reports)


def acceptance_lines(acceptance: dict[str, dict[str, int]], budget: BudgetConfig) -> list[str]:
    """Per task: target, accepted, candidates and cost (generate until N accepted)."""
    lines = []
    for task, s in acceptance.items():
        cost = budget.cost(s.get("prompt_tokens", 0), s.get("completion_tokens", 0))
        tokens = s.get("prompt_tokens", 0) + s.get("completion_tokens", 0)
        met = "met" if s.get("accepted", 0) >= s["target"] else "short"
        lines.append(f"  accept {task}: {s.get('accepted', 0)} of target {s['target']} ({met}), "
                     f"{s.get('candidates', 0)} candidates in {s.get('rounds', 1)} rounds, "
                     f"{s.get('calls', 0)} model calls, {tokens} tokens, ${cost:.4f}")
    return lines


def commercial_terms(run_dir: RunDir) -> dict[str, Any] | None:
    """The final data's model terms and commercial counts (None before a mix or export)."""
    from taskseed.views.card.data import final_data

    data = final_data(run_dir.path)
    if data is None:
        return None
    from taskseed.curation.terms.commercial import terms_summary

    return data.manifest.get("model_terms") or terms_summary(data.rows)


def commercial_lines(terms: dict[str, Any] | None) -> list[str]:
    """What the final data's models are licensed under and why records are not commercial."""
    if not terms:
        return []
    lines = [f"commercial: {terms['commercial']} of {terms['records']} records"]
    for m in terms["models"]:
        lines.append(f"  model terms: {m['stage']} {m['model']} {m['license']} "
                     f"(training on outputs: {m['outputs']}), {m['records']} records")
        lines += [f"    obligation: {duty}" for duty in m["obligations"]]
    lines += [f"  not commercial: {reason}: {n}" for reason, n in
              terms["not_commercial"].items()]
    return lines


def write_summary(run_dir: RunDir, config_hash: str, reports: list[StageReport],
                  seconds: float, error: str | None = None,
                  acceptance: dict[str, dict[str, int]] | None = None,
                  budget: BudgetConfig | None = None) -> dict[str, Any]:
    """Write summary.json and summary.txt; return the summary."""
    acceptance = acceptance or {}
    summary = {
        "config_hash": config_hash,
        "status": "error" if error else "complete",
        "error": error,
        "seconds": round(seconds, 2),
        "teacher_calls_this_run": teacher_calls_this_run(reports),
        "stages": [asdict(r) for r in reports],
        "acceptance": acceptance,
        "acceptance_text": acceptance_lines(acceptance, budget or BudgetConfig()),
        "commercial_text": commercial_lines(commercial_terms(run_dir)),
    }
    write_json(run_dir.summary_path(), summary)
    lines = [f"run {run_dir.path} (config {config_hash[:12]}), {seconds:.1f} s"]
    lines += [r.line() for r in reports]
    lines += summary["acceptance_text"]
    lines += summary["commercial_text"]
    if error:
        lines.append(f"stopped: {error}")
    (run_dir.path / "summary.txt").write_text("\n".join(lines) + "\n")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    rows = [("stage", "shards", "run now", "in", "out", "dropped")]
    for s in summary["stages"]:
        rows.append((s["name"], str(s["shards"]), str(s["shards_run"]), str(s["inputs"]),
                     str(s["outputs"]), str(sum(s["rejects"].values()))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for s in summary["stages"]:
        per_task = {k.split(":", 1)[1]: v for k, v in s["counters"].items()
                    if k.startswith("records:")}
        if per_task:
            out.append(f"  {s['name']} records per task: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(per_task.items())))
        if s.get("coverage") is not None:
            out.append(f"  {s['name']} {coverage_text(s['counters'])}")
        for reason, n in s["rejects"].items():
            out.append(f"  drop {s['name']}/{reason}: {n}")
            out += [f"    e.g. {detail}" for detail in s.get("examples", {}).get(reason, [])]
    out += summary.get("acceptance_text", [])
    out += summary.get("commercial_text", [])
    out.append(f"teacher calls this run: {summary['teacher_calls_this_run']}")
    return "\n".join(out)
