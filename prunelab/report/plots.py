"""Plots: retention against the removed layer (sweeps), and retention by strategy and ratio (compare-strategies).
Written atomically, with matplotlib's non-interactive backend."""

from pathlib import Path

import pandas as pd


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def single_layer_rows(retention: pd.DataFrame) -> list[str]:
    from prunelab.results import Candidate

    return [c for c in retention.index if Candidate.parse(c).single_layer is not None]


def layer_sensitivity(retention: pd.DataFrame, tasks: list[str], legend: dict[str, str], path: Path,
                      title: str) -> None:
    """Figure 1: one panel per task, stacked and aligned on the removed layer, each with its 95% band and the base
    model's level (1)."""
    plt = _figure()
    from prunelab.results import Candidate

    rows = single_layer_rows(retention)
    layers = [Candidate.parse(c).single_layer for c in rows]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(max(6, 0.35 * len(layers) + 2), 1.3 + 1.6 * len(tasks)),
                             sharex=True, squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        line, = ax.plot(layers, retention.loc[rows, task], marker="o", ms=3)
        ax.fill_between(layers, retention.loc[rows, f"{task}:ci_low"], retention.loc[rows, f"{task}:ci_high"],
                        color=line.get_color(), alpha=0.15, lw=0)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("retention", fontsize=8)
        ax.set_title(legend[task], fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    bottom = axes[-1, 0]
    bottom.set_xlabel("removed layer")
    bottom.set_xticks(layers)
    bottom.tick_params(axis="x", labelsize=7)
    fig.suptitle(title if title.startswith("Layer sensitivity") else f"Layer sensitivity: {title}", fontsize=10)
    _save(fig, plt, path)


def dodge(n: int, width: float) -> list[float]:
    """x offsets that spread n series of points around each x, so their interval bars do not hide each other."""
    return [width * (i - (n - 1) / 2) for i in range(n)]


def strategies(table: pd.DataFrame, columns: list[str], path: Path, title: str) -> None:
    """One panel per task group (its mean retention, 95% interval): retention against the ratio, one line per
    strategy; with a single ratio, a dot plot (one row per strategy) instead of lines over one x."""
    plt = _figure()
    groups = [c for c in columns if c.endswith("_mean")] or columns
    ratios = sorted(table["ratio"].unique())
    names = list(dict.fromkeys(table["strategy"]))
    single = len(ratios) == 1
    size = (4.5 * len(groups), 0.6 + 0.45 * len(names)) if single else (4.5 * len(groups), 3.6)
    fig, axes = plt.subplots(1, len(groups), figsize=(size[0], max(size[1], 2.2)), squeeze=False)
    span = (ratios[-1] - ratios[0]) if not single else 0
    offsets = dodge(len(names), 0.012 * span if span else 0)
    for ax, column in zip(axes[0], groups):
        for i, strategy in enumerate(names):
            group = table[table["strategy"] == strategy].sort_values("ratio")
            low = (group[column] - group[f"{column}:ci_low"]).clip(lower=0)
            high = (group[f"{column}:ci_high"] - group[column]).clip(lower=0)
            if single:
                ax.errorbar(group[column], [i] * len(group), xerr=[low, high], fmt="o", capsize=3)
            else:
                ax.errorbar(group["ratio"] + offsets[i], group[column], yerr=[low, high], marker="o", ms=4,
                            capsize=3, label=strategy)
        label = column.replace("_mean", " mean").replace("_", " ")
        if single:
            ax.axvline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_yticks(range(len(names)), names)
            ax.set_ylim(-0.6, len(names) - 0.4)
            ax.invert_yaxis()
            ax.set_xlabel(f"{label} retention (pruned / base)")
        else:
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.set_xlabel("fraction of layers removed")
            ax.set_ylabel(f"{label} retention")
        ax.grid(alpha=0.3)
    if not single:
        axes[0][-1].legend(fontsize=8)
    fig.suptitle(title + (f" (ratio {ratios[0]:g})" if single else ""), fontsize=10)
    _save(fig, plt, path)


def scaling(curve: pd.DataFrame, path: Path, title: str) -> None:
    """Test-time scaling: one panel per (task, pass@k / maj@k), accuracy against k (log scale) for each candidate,
    with its 95% interval as error bars."""
    plt = _figure()
    panels = list(curve.groupby(["task", "kind"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, ((task, kind), group) in zip(axes[0], panels):
        for candidate, rows in group.groupby("candidate", sort=False):
            ax.errorbar(rows.k, rows.value, yerr=[rows.value - rows.ci_low, rows.ci_high - rows.value], marker="o",
                        capsize=3, label=candidate, linewidth=2 if candidate == "base" else 1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel(kind)
        ax.set_title(f"{task}: {kind}")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, plt, path)
