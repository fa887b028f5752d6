"""Retention tables and the layer-sensitivity plot from a results store.

Retention of a candidate on a task = its mean metric / the base model's mean metric, over the items both have.
The classification mean and the generative mean are the means of their tasks' retentions, each with a bootstrap
interval and a paired test against the base model.
"""

from pathlib import Path

import pandas as pd

from prunelab.atomic import write_text
from prunelab.stats import mean_paired_p_value, mean_retention_ci, paired_p_value, retention_ci
from prunelab.sweep.store import ResultsStore


def item_rows(table) -> pd.DataFrame:
    """The store's rows as a DataFrame, each (task, candidate, item, metric) once: an item can be stored twice if a
    resumed run cut units differently (another batch_tokens)."""
    return table.to_pandas().drop_duplicates(["task", "candidate", "item_id", "metric"], keep="last")


def metric_means(df: pd.DataFrame) -> pd.DataFrame:
    """Mean of each (task, candidate, metric) of `item_rows` over the items the base model also has."""
    if df.empty:
        return pd.DataFrame(columns=["task", "candidate", "metric", "value", "n"])
    if (df.candidate == "base").any():
        base_items = df[df.candidate == "base"][["task", "item_id"]].drop_duplicates()
        df = df.merge(base_items, on=["task", "item_id"])
    df["first_removed"] = df["removed"].map(lambda r: min(r) if len(r) else -1)
    grouped = df.groupby(["task", "candidate", "first_removed", "metric"], as_index=False)
    return grouped.agg(value=("value", "mean"), n=("value", "size"))


GROUPS = ("classification", "generative")


def task_kind(task) -> str:
    return getattr(task, "kind", "classification")


def retention_table(table, tasks: dict) -> pd.DataFrame:
    """Rows: candidates (base first, then by removed layer). Columns per task: `<task>` retention of its primary
    metric with `<task>:ci_low` / `<task>:ci_high` (paired bootstrap, 95%) and `<task>:p_value` (paired test against
    the base model); `<group>_mean` (and its interval and p-value) for the classification and generative groups;
    then `<task>:<metric>` raw means of every metric. `tasks`: name -> task (its primary_metric and kind)."""
    primary = {name: task.primary_metric for name, task in tasks.items()}
    items = item_rows(table)
    means = metric_means(items)
    if means.empty:
        return pd.DataFrame()
    means["column"] = means["task"] + ":" + means["metric"]
    wide = means.pivot_table(index=["first_removed", "candidate"], columns="column", values="value")
    wide = wide.sort_index(level="first_removed")
    wide.index = wide.index.droplevel("first_removed")
    out = pd.DataFrame(index=wide.index)
    for task, metric in primary.items():
        per_item = items[(items.task == task) & (items.metric == metric)].pivot(
            index="item_id", columns="candidate", values="value")
        if "base" not in per_item:
            continue
        cols = {task: [], f"{task}:ci_low": [], f"{task}:ci_high": [], f"{task}:p_value": []}
        for cand in out.index:
            if cand not in per_item:
                for v in cols.values():
                    v.append(float("nan"))
                continue
            pair = per_item[["base", cand]].dropna().to_numpy().T if cand != "base" else [per_item["base"].dropna()] * 2
            point, low, high = retention_ci(pair[0], pair[1])
            for key, v in zip(cols, (point, low, high, paired_p_value(pair[0], pair[1]))):
                cols[key].append(v)
        for key, v in cols.items():
            out[key] = v
    for group in GROUPS:
        members = [t for t in tasks if task_kind(tasks[t]) == group and t in out]
        if members:
            _group_columns(out, items, {t: primary[t] for t in members}, f"{group}_mean")
    return out.join(wide)


def _group_columns(out: pd.DataFrame, items: pd.DataFrame, primary: dict[str, str], column: str) -> None:
    per_task = {t: items[(items.task == t) & (items.metric == m)].pivot(index="item_id", columns="candidate",
                                                                      values="value") for t, m in primary.items()}
    cols = {column: [], f"{column}:ci_low": [], f"{column}:ci_high": [], f"{column}:p_value": []}
    for cand in out.index:
        pairs = []
        for table in per_task.values():
            if "base" in table and cand in table:
                pair = table[["base", cand]].dropna().to_numpy().T if cand != "base" else [table["base"].dropna()] * 2
                pairs.append((pair[0], pair[1]))
        point, low, high = mean_retention_ci(pairs)
        for key, v in zip(cols, (point, low, high, mean_paired_p_value(pairs) if pairs else float("nan"))):
            cols[key].append(v)
    for key, v in cols.items():
        out[key] = v


def write_report(root: str | Path, tasks: dict, title: str = "") -> dict[str, Path]:
    """Writes retention.csv, retention.md and (for sweeps) layer_sensitivity.png under `root`; returns their paths.
    `tasks`: name -> task (primary_metric, and optionally kind and label)."""
    root = Path(root)
    primary = {name: task.primary_metric for name, task in tasks.items()}
    labels = {name: getattr(task, "label", name) for name, task in tasks.items()}
    retention = retention_table(ResultsStore(root).read(), tasks)
    if retention.empty:
        return {}
    paths = {"csv": root / "retention.csv", "markdown": root / "retention.md"}
    write_text(paths["csv"], retention.to_csv(float_format="%.4f"))
    compared = [t for t in primary if t in retention]  # tasks with a base model to compare with
    md = pd.DataFrame(index=retention.index)
    for t, metric in primary.items():
        if f"{t}:{metric}" in retention:
            md[f"{labels[t]} {metric}"] = retention[f"{t}:{metric}"].map("{:.4f}".format)
        if t in compared:
            md[f"{labels[t]} retention"] = _with_interval(retention, t)
    for group in GROUPS:
        if f"{group}_mean" in retention:
            md[f"{group} mean retention"] = _with_interval(retention, f"{group}_mean")
    header = f"# {title}\n\n"
    if compared:
        header += ("Retention = metric / base model's metric, with a 95% paired bootstrap interval over items; "
                   "* = differs from the base model (paired sign-flip test, p < 0.05).\n\n")
    write_text(paths["markdown"], header + md.to_markdown() + "\n")
    if compared and any(c.startswith("drop-") and "+" not in c for c in retention.index):
        paths["plot"] = root / "layer_sensitivity.png"
        _plot(retention, compared, {t: f"{labels[t]} ({primary[t]})" for t in compared}, paths["plot"], title)
    return paths


def _with_interval(retention: pd.DataFrame, column: str) -> list[str]:
    return [f"{r:.3f} [{lo:.2f}, {hi:.2f}]" + (" *" if p < 0.05 else "")
            for r, lo, hi, p in zip(retention[column], retention[f"{column}:ci_low"], retention[f"{column}:ci_high"],
                                    retention[f"{column}:p_value"])]


def _plot(retention: pd.DataFrame, tasks: list[str], legend: dict[str, str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in retention.index if c.startswith("drop-") and "+" not in c]
    layers = [int(c.split("-")[1]) for c in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers) + 2), 4))
    for task in tasks:
        line, = ax.plot(layers, retention.loc[rows, task], marker="o", ms=3, label=legend[task])
        ax.fill_between(layers, retention.loc[rows, f"{task}:ci_low"], retention.loc[rows, f"{task}:ci_high"],
                        color=line.get_color(), alpha=0.15, lw=0)
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
