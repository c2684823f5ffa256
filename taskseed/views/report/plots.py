"""The report's plots: matplotlib figures rendered to PNG and embedded as base64 data.

Each function takes the gathered `ReportData` and returns a `Plot` (or None when the run
has nothing to draw, so that the report says so in a line instead of an empty plot).
Figures are made with `matplotlib.figure.Figure`, never pyplot: no global state, no GUI.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from taskseed.views.report.data import ReportData, ScoreSeries

DPI = 100
WIDTH = 9.6  # inches: 960 px
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
          "#ff9da7", "#9c755f", "#bab0ac"]
KEPT, DROPPED, LINE = "#59a14f", "#e15759", "#222222"
GROUP_COLORS = {"seeds": COLORS[0], "generated": COLORS[1]}
MAX_TASKS = 40
MAX_LABEL = 42


@dataclass(frozen=True)
class Plot:
    """A rendered figure: its element id, title, caption and PNG (base64)."""

    id: str
    title: str
    caption: str
    png: str
    width: int
    height: int


def render(fig: Figure, plot_id: str, title: str, caption: str = "") -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    width, height = (int(round(v * DPI)) for v in fig.get_size_inches())
    return Plot(plot_id, title, caption, base64.b64encode(buf.getvalue()).decode("ascii"),
                width, height)


def _figure(height: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def short(text: str, limit: int = MAX_LABEL) -> str:
    """A label of at most `limit` characters, with `$` shown as itself (not as math)."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def funnel(data: ReportData) -> Plot | None:
    """Records out of each stage, stacked by family."""
    stages = [s for s in data.stages if s.shards]
    if not stages:
        return None
    families = sorted({f for s in stages for f in data.family_counts(s.label)})
    fig, (ax,) = _figure(0.9 + 0.38 * len(stages))
    y = np.arange(len(stages))
    left = np.zeros(len(stages))
    for i, family in enumerate(families):
        values = np.array([data.family_counts(s.label).get(family, 0) for s in stages])
        ax.barh(y, values, left=left, color=COLORS[i % len(COLORS)], label=short(family, 24))
        left += values
    for yi, stage in zip(y, stages, strict=True):
        dropped = sum(stage.rejects.values())
        note = f" {stage.outputs:,}" + (f"  (−{dropped:,})" if dropped else "")
        ax.text(left[yi], yi, note, va="center", fontsize=9)
    ax.set_yticks(y, [short(s.label) for s in stages])
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1) * 1.18)
    ax.set_xlabel("records out of the stage (dropped in parentheses)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title="family", fontsize=8, loc="lower right", ncols=min(3, len(families)))
    return render(fig, "plot-funnel", "Records through each stage, by family",
                  "Seed stages count seed rows and records; from `generate` on, generated "
                  "records.")


def task_funnel(data: ReportData) -> Plot | None:
    """Records per task (rows) out of each stage (columns), as a heat map."""
    stages = [s for s in data.stages if s.shards]
    totals: Counter[str] = Counter()
    for stage in stages:
        totals.update(data.task_counts.get(stage.label, {}))
    tasks = [t for t, _ in totals.most_common(MAX_TASKS)]
    if not tasks:
        return None
    grid = np.array([[data.task_counts.get(s.label, {}).get(t, 0) for s in stages]
                     for t in tasks], dtype=float)
    fig, (ax,) = _figure(1.6 + 0.34 * len(tasks))
    shown = grid / np.maximum(grid.max(axis=1, keepdims=True), 1)
    ax.imshow(shown, aspect="auto", cmap="Blues", vmin=0, vmax=1.25)
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{int(value):,}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(stages)), [short(s.label) for s in stages], rotation=35,
                  ha="right")
    ax.set_yticks(range(len(tasks)), [short(t, 32) for t in tasks])
    caption = "Shade: share of the task's largest count."
    if len(totals) > MAX_TASKS:
        caption += f" The {MAX_TASKS} largest of {len(totals)} tasks; the table lists all."
    return render(fig, "plot-funnel-tasks", "Records per task through each stage", caption)


def drops(data: ReportData) -> Plot | None:
    """Dropped records per reason, grouped by stage."""
    bars = [(s.label, reason, n) for s in data.stages
            for reason, n in sorted(s.rejects.items(), key=lambda kv: -kv[1])]
    if not bars:
        return None
    fig, (ax,) = _figure(0.9 + 0.3 * len(bars))
    stages = list(dict.fromkeys(b[0] for b in bars))
    colors = [COLORS[stages.index(b[0]) % len(COLORS)] for b in bars]
    y = np.arange(len(bars))
    ax.barh(y, [b[2] for b in bars], color=colors)
    for yi, (_, _, n) in zip(y, bars, strict=True):
        ax.text(n, yi, f" {n:,}", va="center", fontsize=9)
    ax.set_yticks(y, [f"{short(label)}: {short(reason, 30)}" for label, reason, _ in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, max(b[2] for b in bars) * 1.15)
    ax.set_xlabel("records dropped")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return render(fig, "plot-drops", "Drops per reason and stage")


def _bins(series: ScoreSeries) -> np.ndarray:
    values = series.kept + series.dropped
    low, high = min(values), max(values)
    if series.discrete:
        if low >= 1 and high <= 5:  # a 1-5 rubric: show the whole scale
            low, high = 1, 5
        low = min(low, series.threshold if series.threshold is not None else low)
        return np.arange(math.floor(low) - 0.5, math.ceil(high) + 1.0)
    if series.threshold is not None:
        low, high = min(low, series.threshold), max(high, series.threshold)
    return np.linspace(low, high if high > low else low + 1, 21)


def scores(data: ReportData) -> list[Plot]:
    """Per scoring stage: a histogram per score, kept and dropped, with its minimum."""
    out = []
    for stage in dict.fromkeys(s.stage for s in data.scores):
        series = [s for s in data.scores if s.stage == stage and (s.kept or s.dropped)]
        if not series:
            continue
        ncols = min(3, len(series))
        nrows = -(-len(series) // ncols)
        fig, axes = _figure(0.4 + 2.3 * nrows, ncols, nrows)
        for ax, s in zip(axes, series, strict=False):
            bins = _bins(s)
            ax.hist([s.kept, s.dropped], bins=bins, stacked=True, color=[KEPT, DROPPED],
                    label=["kept", "dropped"])
            if s.threshold is not None:
                edge = s.threshold - 0.5 if s.discrete else s.threshold
                ax.axvline(edge, color=LINE, linestyle="--", linewidth=1.5)
                ax.text(edge, ax.get_ylim()[1] * 0.97, f" min {s.threshold:g}", va="top",
                        fontsize=8)
            ax.set_title(short(s.name), fontsize=10)
            if s.discrete:
                ax.set_xticks(np.arange(bins[0] + 0.5, bins[-1]))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[len(series):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=8)
        slug = stage.replace(" ", "-")
        out.append(render(fig, f"plot-scores-{slug}", f"Scores of stage {stage}",
                          "Dashed line: the minimum a record needs to be kept."))
    return out


def lengths(data: ReportData) -> Plot | None:
    """Words per field: seeds against the final generated records."""
    fields = [f for f, v in data.lengths.items() if len(v["seeds"]) or len(v["generated"])]
    if not fields:
        return None
    ncols = min(2, len(fields))
    nrows = -(-len(fields) // ncols)
    fig, axes = _figure(0.4 + 2.4 * nrows, ncols, nrows)
    for ax, name in zip(axes, fields, strict=False):
        groups = [(k, np.asarray(v)) for k, v in data.lengths[name].items() if len(v)]
        top = max(float(np.percentile(v, 99)) for _, v in groups)
        bins = np.linspace(0, max(top, 1.0), 25)
        for label, values in groups:
            median = float(np.median(values))
            ax.hist(np.clip(values, 0, bins[-1]), bins=bins, density=True, alpha=0.55,
                    color=GROUP_COLORS.get(label, COLORS[2]),
                    label=f"{label} (n={len(values):,}, median {median:g})")
        ax.set_title(f"{name} (words)", fontsize=10)
        ax.legend(fontsize=8)
        ax.set_yticks([])
    for ax in axes[len(fields):]:
        ax.set_visible(False)
    return render(fig, "plot-lengths", "Length distributions",
                  "Share of records per length; the last bin holds everything longer.")


def contamination(data: ReportData) -> Plot | None:
    """Records overlapping each held-out benchmark split: generated (dropped) and seeds."""
    report = data.decontamination or {}
    gen = (report.get("generated") or {}).get("benchmarks", {})
    seeds = (report.get("seeds") or {}).get("benchmarks", {})
    keys = sorted({(b, s) for src in (gen, seeds) for b, splits in src.items() for s in splits})
    if not keys:
        return None
    dropped = [gen.get(b, {}).get(s, {}).get("records_dropped", 0) for b, s in keys]
    overlapping = [seeds.get(b, {}).get(s, {}).get("seed_records", 0) for b, s in keys]
    fig, (ax,) = _figure(1.0 + 0.45 * len(keys))
    y = np.arange(len(keys))
    ax.barh(y - 0.2, dropped, height=0.4, color=DROPPED, label="generated records dropped")
    ax.barh(y + 0.2, overlapping, height=0.4, color=COLORS[0], label="seed records overlapping")
    for yi, a, b in zip(y, dropped, overlapping, strict=True):
        ax.text(a, yi - 0.2, f" {a:,}", va="center", fontsize=8)
        ax.text(b, yi + 0.2, f" {b:,}", va="center", fontsize=8)
    ax.set_yticks(y, [short(f"{b}/{s}") for b, s in keys])
    ax.invert_yaxis()
    ax.set_xlim(0, max(dropped + overlapping + [1]) * 1.2)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("records")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return render(fig, "plot-contamination", "Contamination per benchmark split")


def duplicates(data: ReportData) -> Plot | None:
    """Cluster sizes of exact and near duplicates, and the near pairs' Jaccard."""
    dup = data.duplicates
    if not (dup.exact_sizes or dup.fuzzy_sizes):
        return None
    fig, axes = _figure(3.0, 2 if dup.jaccard else 1)
    sizes = sorted(set(dup.exact_sizes) | set(dup.fuzzy_sizes))
    x = np.arange(len(sizes))
    for offset, (label, counts, color) in zip((-0.2, 0.2), (
            ("exact", dup.exact_sizes, COLORS[0]), ("near (fuzzy)", dup.fuzzy_sizes,
                                                    COLORS[1])), strict=True):
        values = [counts.get(s, 0) for s in sizes]
        axes[0].bar(x + offset, values, width=0.4, color=color, label=label)
    axes[0].set_xticks(x, [str(s) for s in sizes])
    axes[0].set_xlim(-0.8, len(sizes) - 0.2)
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("records in the cluster (one kept)")
    axes[0].set_ylabel("clusters")
    axes[0].legend(fontsize=8)
    if dup.jaccard:
        axes[1].hist(dup.jaccard, bins=np.linspace(min(dup.jaccard + [0.5]), 1.0, 16),
                     color=COLORS[1])
        axes[1].set_xlabel("Jaccard similarity to the kept record")
        axes[1].set_ylabel("dropped records")
        axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    return render(fig, "plot-duplicates", "Duplicate clusters")


def licenses(data: ReportData) -> Plot | None:
    """Records per license, and how many of them are commercial."""
    rows = data.licenses
    if not rows:
        return None
    fig, (ax,) = _figure(1.0 + 0.42 * len(rows))
    y = np.arange(len(rows))
    ax.barh(y, [r["records"] for r in rows], color=COLORS[9], label="all records")
    ax.barh(y, [r["commercial_records"] for r in rows], height=0.5, color=COLORS[2],
            label="commercial")
    for yi, row in zip(y, rows, strict=True):
        ax.text(row["records"], yi, f" {row['records']:,} ({row['commercial_records']:,} "
                "commercial)", va="center", fontsize=8)
    ax.set_yticks(y, [short(r["license"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(r["records"] for r in rows) * 1.35)
    ax.set_xlabel("records in the mix" if data.license_source == "mix" else "final records")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="lower right")
    return render(fig, "plot-licenses", "Licenses and the commercial subset")


def usage(data: ReportData) -> Plot | None:
    """Prompt and completion tokens per model stage, with calls (and USD)."""
    rows = data.usage
    if not rows:
        return None
    fig, (ax,) = _figure(1.0 + 0.5 * len(rows))
    y = np.arange(len(rows))
    prompt = np.array([r.prompt_tokens for r in rows])
    completion = np.array([r.completion_tokens for r in rows])
    ax.barh(y, prompt, color=COLORS[0], label="prompt tokens")
    ax.barh(y, completion, left=prompt, color=COLORS[1], label="completion tokens")
    for yi, row, end in zip(y, rows, prompt + completion, strict=True):
        note = f" {row.calls:,} calls" + (f", ${row.usd:.4f}" if row.usd is not None else "")
        ax.text(end, yi, note, va="center", fontsize=8)
    ax.set_yticks(y, [f"{short(r.stage)} ({short(r.model, 16)})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(int((prompt + completion).max()), 1) * 1.3)
    ax.set_xlabel("tokens")
    ax.legend(fontsize=8, loc="lower right")
    return render(fig, "plot-usage", "Model usage per stage")
