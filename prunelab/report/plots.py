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
    plt = _figure()
    from prunelab.results import Candidate

    rows = single_layer_rows(retention)
    layers = [Candidate.parse(c).single_layer for c in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
    for task in tasks:
        line, = ax.plot(layers, retention.loc[rows, task], marker="o", ms=3, label=legend[task])
        ax.fill_between(layers, retention.loc[rows, f"{task}:ci_low"], retention.loc[rows, f"{task}:ci_high"],
                        color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("removed layer")
    ax.set_ylabel("retention (pruned / base)")
    ax.set_title(title if title.startswith("Layer sensitivity") else f"Layer sensitivity: {title}")
    ax.set_xticks(layers)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    _save(fig, plt, path)


def strategies(table: pd.DataFrame, columns: list[str], path: Path, title: str) -> None:
    plt = _figure()
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.6), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for strategy, group in table.groupby("strategy"):
            low = group[column] - group[f"{column}:ci_low"]
            high = group[f"{column}:ci_high"] - group[column]
            ax.errorbar(group["ratio"], group[column], yerr=[low, high], marker="o", ms=4, capsize=3, label=strategy)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("fraction of layers removed")
    axes[0][0].set_ylabel("retention (pruned / base)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, plt, path)
