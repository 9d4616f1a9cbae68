"""PNG figures for the report (matplotlib, Agg backend: no display needed).

Each function takes the plain dictionaries results.json holds, so figures can be redrawn from a
saved run without re-running anything.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RUN_STYLES = {"model:idf": ("sparse, model query (idf)", "tab:blue"),
              "model:count": ("sparse, model query (count)", "tab:cyan"),
              "tokens:idf": ("sparse, tokens (idf)", "tab:orange"),
              "tokens:count": ("sparse, tokens (count)", "tab:green")}


def headline_bars(systems_by_model: dict[str, dict[str, dict]], path: Path,
                  measure: str = "nDCG@10") -> Path:
    """One group of bars per system, one bar per model: the headline comparison."""
    models = list(systems_by_model)
    names = list(dict.fromkeys(name for systems in systems_by_model.values()
                               for name in systems))
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names)), 4.5))
    width = 0.8 / max(len(models), 1)
    for m, model in enumerate(models):
        values = [systems_by_model[model].get(name, {}).get("metrics", {}).get(measure, 0.0)
                  for name in names]
        positions = [i + (m - (len(models) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(positions, values, width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(measure)
    ax.set_title(f"{measure} per system")
    ax.margins(y=0.15)
    ax.legend()
    return _save(fig, path)


def lever_panels(rows_by_lever: dict[str, list[dict]], title: str, path: Path,
                 dense_ndcg: float | None = None) -> Path:
    """One panel per lever: nDCG@10 of each sparse run against the lever's values, the dense
    model as a reference line, and the index size (postings) on a second axis, so the
    quality/size trade-off of every lever reads off one figure."""
    levers = list(rows_by_lever)
    fig, axes = plt.subplots(1, len(levers), figsize=(4.2 * len(levers), 3.8), squeeze=False)
    for ax, lever in zip(axes[0], levers, strict=True):
        rows = rows_by_lever[lever]
        labels = [str(row["value"]) for row in rows]
        numeric = lever == "pc1_strength"
        xs = [float(row["value"]) for row in rows] if numeric else list(range(len(rows)))
        order = sorted(range(len(rows)), key=lambda i: xs[i])
        xs = [xs[i] for i in order]
        for name, (label, color) in RUN_STYLES.items():
            ax.plot(xs, [rows[i]["ndcg"][name] for i in order], "o-", color=color, label=label)
        if dense_ndcg is not None:
            ax.axhline(dense_ndcg, color="black", linestyle="--", linewidth=1, label="dense")
            ax.axhline(0.9 * dense_ndcg, color="grey", linestyle=":", linewidth=1,
                       label="0.9 x dense")
        if not numeric:
            ax.set_xticks(xs, [labels[i] for i in order], rotation=30 if lever == "weighting"
                          else 0, fontsize=8)
        ax.set_xlabel(lever)
        ax.set_ylabel("nDCG@10")
        size = ax.twinx()
        size.plot(xs, [rows[i]["postings"] for i in order], "s:", color="tab:gray", alpha=0.7,
                  label="postings")
        size.set_ylabel("postings", color="tab:gray", fontsize=8)
        size.set_ylim(0, max(max(row["postings"] for row in rows), 1) * 1.08)
        size.ticklabel_format(axis="y", style="sci", scilimits=(0, 0), useOffset=False)
        size.tick_params(axis="y", labelsize=7, colors="tab:gray")
    lines, names = axes[0][0].get_legend_handles_labels()
    fig.legend(lines, names, loc="lower center", ncol=min(len(names), 6), fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save(fig, path, tight=False)


def latency_bars(latency_by_model: dict[str, dict[str, dict]], path: Path) -> Path:
    """Median single-thread search latency per system (log scale: they span decades)."""
    models = list(latency_by_model)
    names = list(dict.fromkeys(name for systems in latency_by_model.values()
                               for name in systems))
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(names)), 4.2))
    width = 0.8 / max(len(models), 1)
    for m, model in enumerate(models):
        values = [latency_by_model[model].get(name, {}).get("p50_ms", 0.0) for name in names]
        positions = [i + (m - (len(models) - 1) / 2) * width for i in range(len(names))]
        ax.bar(positions, values, width, label=model)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("p50 search latency per query (ms, 1 thread)")
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
