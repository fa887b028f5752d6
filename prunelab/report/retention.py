"""Retention tables and the layer-sensitivity plot from a results store.

Retention of a candidate on a task = its mean metric / the base model's mean metric, over the items both have.
The classification mean and the generative mean are the means of their tasks' retentions, each with a bootstrap
interval and a paired test against the base model.
"""

import pandas as pd

from prunelab.stats import (
    mean_paired_p_value,
    mean_retention_ci,
    paired_p_value,
    retention_ci,
    retention_difference_ci,
    retention_gap_ci,
)


def item_rows(table) -> pd.DataFrame:
    """The store's rows as a DataFrame, each (task, candidate, item, metric) once: an item can be stored twice if a
    resumed run cut units differently (another batch_tokens)."""
    return table.to_pandas().drop_duplicates(["task", "candidate", "item_id", "metric"], keep="last")


def per_item_values(items: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    """One task's metric per item (rows) and candidate (columns)."""
    return items[(items.task == task) & (items.metric == metric)].pivot(index="item_id", columns="candidate",
                                                                        values="value")


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


def retention_table(table, tasks: dict[str, dict]) -> pd.DataFrame:
    """Rows: candidates (base first, then by removed layer). Columns per task: `<task>` retention of its primary
    metric with `<task>:ci_low` / `<task>:ci_high` (paired bootstrap, 95%), `<task>:p_value` (paired test against
    the base model) and `<task>:items` (the paired items it rests on); `<group>_mean` (and its interval, p-value and
    items, summed over its tasks) for the classification and generative groups;
    then `<task>:<metric>` raw means of every metric. `tasks`: name -> its description (`prunelab.tasks.describe`:
    primary_metric and kind), as recorded in meta.json."""
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
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
        per_item = per_item_values(items, task, metric)
        if "base" not in per_item:
            continue
        cols = {task: [], f"{task}:ci_low": [], f"{task}:ci_high": [], f"{task}:p_value": [], f"{task}:items": []}
        for cand in out.index:
            if cand not in per_item:
                for v in cols.values():
                    v.append(float("nan"))
                continue
            pair = per_item[["base", cand]].dropna().to_numpy().T if cand != "base" else [per_item["base"].dropna()] * 2
            point, low, high = retention_ci(pair[0], pair[1])
            for key, v in zip(cols, (point, low, high, paired_p_value(pair[0], pair[1]), len(pair[0]))):
                cols[key].append(v)
        for key, v in cols.items():
            out[key] = v
    for group in GROUPS:
        members = [t for t in tasks if tasks[t]["kind"] == group and t in out]
        if members:
            _group_columns(out, items, {t: primary[t] for t in members}, f"{group}_mean")
    return out.join(wide)


def _group_columns(out: pd.DataFrame, items: pd.DataFrame, primary: dict[str, str], column: str) -> None:
    per_task = {t: per_item_values(items, t, m) for t, m in primary.items()}
    cols = {column: [], f"{column}:ci_low": [], f"{column}:ci_high": [], f"{column}:p_value": [],
            f"{column}:items": []}
    for cand in out.index:
        pairs = []
        for table in per_task.values():
            if "base" in table and cand in table:
                pair = table[["base", cand]].dropna().to_numpy().T if cand != "base" else [table["base"].dropna()] * 2
                pairs.append((pair[0], pair[1]))
        point, low, high = mean_retention_ci(pairs)
        # the items of the tasks that have a retention (a base model scoring 0 has none)
        items = sum(len(b) for b, _ in pairs if len(b) and b.mean() != 0)
        for key, v in zip(cols, (point, low, high, mean_paired_p_value(pairs) if pairs else float("nan"), items)):
            cols[key].append(v)
    for key, v in cols.items():
        out[key] = v


def head_to_head(table, tasks: dict[str, dict], a: str, b: str) -> pd.DataFrame:
    """Candidate `a` against candidate `b` (two recoveries of one pruned model, say), each against the base model on
    the items all three have. Rows: the classification and generative means, then each task. Columns: each one's
    retention, `a - b` with its paired bootstrap interval (items resampled once for all three models), the p-value of
    a paired sign-flip test of a against b, and the number of items."""
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
    items = item_rows(table)
    per_task = {}
    for task, metric in primary.items():
        wide = per_item_values(items, task, metric)
        if {"base", a, b} <= set(wide):
            per_task[task] = wide[["base", a, b]].dropna().to_numpy().T
    rows = []
    for label, members in [*[(f"{g} mean", [t for t in per_task if tasks[t]["kind"] == g]) for g in GROUPS],
                           *[(tasks[t]["label"], [t]) for t in per_task]]:
        if not members:
            continue
        triples = [per_task[t] for t in members if per_task[t][0].mean() != 0]  # those with a retention
        if not triples:
            continue
        diff, low, high = retention_difference_ci(triples)
        rows.append({"task": label, a: mean_retention_ci([(x, y) for x, y, _ in triples])[0],
                     b: mean_retention_ci([(x, z) for x, _, z in triples])[0], f"{a} - {b}": diff,
                     "ci_low": low, "ci_high": high,
                     "p_value": mean_paired_p_value([(z, y) for _, y, z in triples]),
                     "items": sum(len(t[0]) for t in triples)})
    return pd.DataFrame(rows)


def against(table, tasks: dict[str, dict], models: list[str], references: list[str]) -> pd.DataFrame:
    """Each model against each reference (the pruned model, a baseline recovery) on the items all three (with the
    base model) have: per task group and task, `model - reference` retention with its paired bootstrap interval
    and the p-value of a paired sign-flip test (`head_to_head`, one row each)."""
    rows = []
    for reference in references:
        for model in models:
            if model == reference:
                continue
            frame = head_to_head(table, tasks, model, reference)
            for r in frame.to_dict("records"):
                rows.append({"model": model, "against": reference, "task": r["task"],
                             "difference": r[f"{model} - {reference}"], "ci_low": r["ci_low"],
                             "ci_high": r["ci_high"], "p_value": r["p_value"], "items": r["items"]})
    return pd.DataFrame(rows, columns=["model", "against", "task", "difference", "ci_low", "ci_high", "p_value",
                                       "items"])


def group_gap(table, tasks: dict[str, dict], candidates: list[str]) -> pd.DataFrame:
    """Per candidate: classification mean retention minus generative mean retention, with a bootstrap interval
    (the two groups' items resampled independently: they are different tasks)."""
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
    items = item_rows(table)
    per_task = {task: per_item_values(items, task, metric) for task, metric in primary.items()}
    rows = []
    for cand in candidates:
        pairs = {g: [] for g in GROUPS}
        for task, wide in per_task.items():
            if {"base", cand} <= set(wide):
                pair = wide[["base", cand]].dropna().to_numpy().T
                pairs[tasks[task]["kind"]].append((pair[0], pair[1]))
        if all(pairs.values()):
            gap, low, high = retention_gap_ci(pairs["classification"], pairs["generative"])
            rows.append({"model": cand, "classification - generative": gap, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["model", "classification - generative", "ci_low", "ci_high"])
