"""Retention tables and the layer-sensitivity plot from a results store.

Retention of a candidate on a task = its mean metric / the base model's mean metric, over the items both have.
"""

from pathlib import Path

import pandas as pd

from prunelab.sweep.store import ResultsStore


def metric_means(table) -> pd.DataFrame:
    """Mean of each (task, candidate, metric) over the items the base model also has."""
    df = table.to_pandas()
    if df.empty:
        return pd.DataFrame(columns=["task", "candidate", "metric", "value", "n"])
    base_items = df[df.candidate == "base"][["task", "item_id"]].drop_duplicates()
    df = df.merge(base_items, on=["task", "item_id"])
    df["first_removed"] = df["removed"].map(lambda r: min(r) if len(r) else -1)
    grouped = df.groupby(["task", "candidate", "first_removed", "metric"], as_index=False)
    return grouped.agg(value=("value", "mean"), n=("value", "size"))


def retention_table(table, primary: dict[str, str]) -> pd.DataFrame:
    """Rows: candidates (base first, then by removed layer); columns: `<task>` retention of its primary metric,
    plus `<task>:<metric>` raw means of every metric."""
    means = metric_means(table)
    if means.empty:
        return pd.DataFrame()
    means["column"] = means["task"] + ":" + means["metric"]
    wide = means.pivot_table(index=["first_removed", "candidate"], columns="column", values="value")
    wide = wide.sort_index(level="first_removed")
    out = pd.DataFrame(index=wide.index)
    for task, metric in primary.items():
        col = f"{task}:{metric}"
        if col not in wide or (-1, "base") not in wide.index:
            continue
        base = wide.loc[(-1, "base"), col]
        out[task] = wide[col] / base if base else float("nan")
    out = out.join(wide)
    out.index = out.index.droplevel("first_removed")
    return out


def write_report(root: str | Path, primary: dict[str, str], title: str = "") -> dict[str, Path]:
    """Writes retention.csv, retention.md and layer_sensitivity.png under `root`; returns their paths."""
    root = Path(root)
    table = ResultsStore(root).read()
    retention = retention_table(table, primary)
    paths = {"csv": root / "retention.csv", "markdown": root / "retention.md", "plot": root / "layer_sensitivity.png"}
    if retention.empty:
        return {}
    _atomic_text(paths["csv"], retention.to_csv(float_format="%.4f"))
    tasks = [t for t in primary if t in retention]
    md = retention[tasks].rename(columns={t: f"{t} ({primary[t]})" for t in tasks})
    header = f"# Layer sensitivity: {title}\n\nRetention = metric with the layer removed / base metric.\n\n"
    base_line = ", ".join(f"{t} {primary[t]} = {retention.loc['base', f'{t}:{primary[t]}']:.4f}" for t in tasks)
    _atomic_text(paths["markdown"], header + f"Base model: {base_line}\n\n" + md.to_markdown(floatfmt=".3f") + "\n")
    _plot(retention, tasks, primary, paths["plot"], title)
    return paths


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _plot(retention: pd.DataFrame, tasks: list[str], primary: dict[str, str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in retention.index if c.startswith("drop-") and "+" not in c]
    layers = [int(c.split("-")[1]) for c in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
    for task in tasks:
        ax.plot(layers, retention.loc[rows, task], marker="o", ms=3, label=f"{task} ({primary[task]})")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("removed layer")
    ax.set_ylabel("retention (pruned / base)")
    ax.set_title(f"Single-layer ablation: {title}")
    ax.set_xticks(layers)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
