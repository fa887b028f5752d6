"""Retention tables and the layer-sensitivity plot from a results store.

Retention of a candidate on a task = its mean metric / the base model's mean metric, over the items both have.
The classification mean and the generative mean are the means of their tasks' retentions, each with a bootstrap
interval and a paired test against the base model. Every p-value has an adjusted one beside it (Holm by default)
within its family: one column's candidates (a task's layers in a sweep, a task's models in a recovery table).
Classification tasks whose chance floor is known (meta.json) also get a chance-normalised retention,
(accuracy - floor) / (base - floor), and binary tasks the smallest drop their sizes can detect.
"""

import numpy as np
import pandas as pd

from prunelab.results import item_rows
from prunelab.significance import adjust, detectable_drop, equivalence_p, testable
from prunelab.stats import (
    group_difference,
    mean_paired_p_value,
    mean_retention_ci,
    paired_p_value,
    recovered_share,
    retention_ci,
    retention_difference_ci,
    retention_gap,
)

ADJUSTED = ":p_adj"  # beside every `:p_value` column: adjusted within its family (`add_adjusted`)


def per_item_values(items: pd.DataFrame, task: str, metric: str) -> pd.DataFrame:
    """One task's metric per item (rows) and candidate (columns)."""
    return items[(items.task == task) & (items.metric == metric)].pivot(index="item_id", columns="candidate",
                                                                        values="value")


def primary_values(table, tasks: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Per task, its primary metric per item (rows) and candidate (columns)."""
    items = item_rows(table)
    return {task: per_item_values(items, task, desc["primary_metric"]) for task, desc in tasks.items()}


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


def retention_table(table, tasks: dict[str, dict], method: str = "holm") -> pd.DataFrame:
    """Rows: candidates (base first, then by removed layer). Columns per task: `<task>` retention of its primary
    metric with `<task>:ci_low` / `<task>:ci_high` (paired bootstrap, 95%), `<task>:p_value` (paired test against
    the base model) and `<task>:items` (the paired items it rests on); `<group>_mean` (and its interval, p-value and
    items, summed over its tasks) for the classification and generative groups;
    `<task>:p_adj` and the rest of `_normalised_columns`, `_power_column`, `add_adjusted` (`method`: holm or bh);
    then `<task>:<metric>` raw means of every metric. `tasks`: name -> its description (`prunelab.tasks.describe`:
    primary_metric, kind and, for classification, the chance floor), as recorded in meta.json."""
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
    floors = {name: task["floor"] for name, task in tasks.items() if task.get("floor") is not None}
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
            pair = _pairs(per_item, cand)
            point, low, high = retention_ci(pair[0], pair[1])
            for key, v in zip(cols, (point, low, high, paired_p_value(pair[0], pair[1]), len(pair[0]))):
                cols[key].append(v)
        for key, v in cols.items():
            out[key] = v
        if task in floors:
            _normalised_columns(out, {task: per_item}, {task: floors[task]}, task)
        _power_column(out, per_item, task)
    for group in GROUPS:
        members = [t for t in tasks if tasks[t]["kind"] == group and t in out]
        if members:
            _group_columns(out, items, {t: primary[t] for t in members}, f"{group}_mean")
            normed = [t for t in members if t in floors]
            if normed:
                _normalised_columns(out, {t: per_item_values(items, t, primary[t]) for t in normed},
                                    {t: floors[t] for t in normed}, f"{group}_mean")
    return add_adjusted(out, method).join(wide)


def _pairs(table: pd.DataFrame, cand: str):
    """(base, cand) per-item arrays on the items both have; the base against itself for "base"."""
    if cand == "base":
        return [table["base"].dropna().to_numpy()] * 2
    return table[["base", cand]].dropna().to_numpy().T


def _normalised_columns(out: pd.DataFrame, per_task: dict, floors: dict[str, float], column: str) -> None:
    """`<column>:norm` with its interval: chance-normalised retention, the mean over tasks of (cand - floor) /
    (base - floor) (a retention of the values shifted by the floor); NaN where the base model is at or below it."""
    values = {f"{column}:norm": [], f"{column}:norm_ci_low": [], f"{column}:norm_ci_high": []}
    for cand in out.index:
        pairs = []
        for task, table in per_task.items():
            if "base" in table and cand in table:
                b, c = _pairs(table, cand)
                if len(b) and b.mean() > floors[task]:
                    pairs.append((b - floors[task], c - floors[task]))
        point = mean_retention_ci(pairs) if pairs else (float("nan"),) * 3
        for v, x in zip(values.values(), point):
            v.append(x)
    for key, v in values.items():
        out[key] = v


def _power_column(out: pd.DataFrame, per_item: pd.DataFrame, task: str) -> None:
    """`<task>:detectable`: on a 0/1 metric, the smallest retention drop found with 80% power at the first step of
    Holm over the table's candidates (NaN: cannot be tested at this size); `<task>:base_solved` beside it."""
    base = per_item["base"].dropna().to_numpy()
    if not len(base) or not np.isin(base, (0.0, 1.0)).all():
        return
    family = max(1, sum(1 for c in out.index if c != "base" and c in per_item))
    solved = int(base.sum())
    out[f"{task}:base_solved"] = solved
    out[f"{task}:detectable"] = detectable_drop(solved, family)


def add_adjusted(frame: pd.DataFrame, method: str = "holm", exclude: tuple = ("base",)) -> pd.DataFrame:
    """A copy with `<column>:p_adj` beside every `<column>:p_value`: adjusted over the rows (the family: one
    column's candidates), leaving out the rows named in `exclude` (the base model against itself)."""
    frame = frame.copy()
    rows = [i for i in frame.index if i not in exclude]
    for col in [c for c in frame.columns if str(c).endswith(":p_value")]:
        adjusted = pd.Series(float("nan"), index=frame.index)
        adjusted[rows] = adjust(frame.loc[rows, col].to_numpy(float), method)
        frame[col[: -len(":p_value")] + ADJUSTED] = adjusted
    return frame


def _group_columns(out: pd.DataFrame, items: pd.DataFrame, primary: dict[str, str], column: str) -> None:
    per_task = {t: per_item_values(items, t, m) for t, m in primary.items()}
    cols = {column: [], f"{column}:ci_low": [], f"{column}:ci_high": [], f"{column}:p_value": [],
            f"{column}:items": []}
    for cand in out.index:
        pairs = []
        for table in per_task.values():
            if "base" in table and cand in table:
                pair = _pairs(table, cand)
                pairs.append((pair[0], pair[1]))
        point, low, high = mean_retention_ci(pairs)
        # the items of the tasks that have a retention (a base model scoring 0 has none)
        items = sum(len(b) for b, _ in pairs if len(b) and b.mean() != 0)
        for key, v in zip(cols, (point, low, high, mean_paired_p_value(pairs) if pairs else float("nan"), items)):
            cols[key].append(v)
    for key, v in cols.items():
        out[key] = v


def head_to_head(table, tasks: dict[str, dict], a: str, b: str, margin: float = 0.05) -> pd.DataFrame:
    """Candidate `a` against candidate `b` (two recoveries of one pruned model, say), each against the base model on
    the items all three have. Rows: the classification and generative means, then each task. Columns: each one's
    retention, `a - b` with its paired bootstrap interval (items resampled once for all three models), the p-value of
    a paired sign-flip test of a against b, the number of items and of items where the two differ (`changed`: with
    d of them no split reaches p below 2 * 0.5**d), and `equivalence_p`: TOST that the retention difference lies
    within +-`margin`."""
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
                     "items": sum(len(t[0]) for t in triples),
                     "changed": int(sum((y != z).sum() for _, y, z in triples)),
                     "equivalence_p": equivalence_p(_retention_differences(triples), margin)})
    return pd.DataFrame(rows)


def _retention_differences(triples) -> np.ndarray:
    """Per item, weighted so that their mean is the mean over tasks of (mean(a) - mean(b)) / mean(base): the
    values a paired test of the retention difference takes."""
    n = sum(len(base) for base, _, _ in triples)
    return np.concatenate([(a - b) / base.mean() * n / (len(triples) * len(base)) for base, a, b in triples])


def against(table, tasks: dict[str, dict], models: list[str], references: list[str],
            method: str = "holm") -> pd.DataFrame:
    """Each model against each reference (the pruned model, a baseline recovery) on the items all three (with the
    base model) have: per task group and task, `model - reference` retention with its paired bootstrap interval,
    the p-value of a paired sign-flip test (`head_to_head`, one row each) and `p_adj`, adjusted within the family
    of one task row: every model against every reference of this table (one pruned model's recoveries), a pair
    listed both ways (a reference against another) counted once."""
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
    frame = pd.DataFrame(rows, columns=["model", "against", "task", "difference", "ci_low", "ci_high", "p_value",
                                        "items"])
    return adjust_against(frame, method)


def adjust_against(frame: pd.DataFrame, method: str = "holm") -> pd.DataFrame:
    """`p_adj` for an `against` table: within each task row, over its comparisons, a pair listed both ways (one
    reference against another) counted once; works on a stored against.csv too."""
    frame = frame.copy()
    frame["p_adj"] = float("nan")
    if frame.empty:
        return frame
    pair = frame.apply(lambda r: tuple(sorted((r["model"], r["against"]))), axis=1)
    for _, rows_of_task in frame.groupby("task").groups.items():
        once = frame.loc[rows_of_task].assign(pair=pair[rows_of_task]).drop_duplicates("pair")
        adjusted = dict(zip(once["pair"], adjust(once["p_value"].to_numpy(float), method)))
        frame.loc[rows_of_task, "p_adj"] = [adjusted[p] for p in pair[rows_of_task]]
    return frame


def _shifted(tasks: dict[str, dict], task: str, pair) -> tuple | None:
    """A (base, cand) pair shifted by the task's chance floor (classification tasks whose floor is recorded), so
    that its retention is chance-normalised; None where the base model is not above the floor."""
    floor = tasks[task].get("floor") if tasks[task]["kind"] == "classification" else None
    if floor is None:
        return pair
    return (pair[0] - floor, pair[1] - floor) if pair[0].mean() > floor else None


def group_gap(table, tasks: dict[str, dict], candidates: list[str]) -> pd.DataFrame:
    """Per candidate: classification mean retention minus generative mean retention, with a bootstrap interval
    and p-value (the two groups' items resampled independently: they are different tasks). Classification tasks
    with a recorded floor are chance-normalised (`normalised` says whether any was)."""
    per_task = primary_values(table, tasks)
    rows = []
    for cand in candidates:
        pairs = {g: [] for g in GROUPS}
        for task, wide in per_task.items():
            if {"base", cand} <= set(wide):
                pair = _shifted(tasks, task, wide[["base", cand]].dropna().to_numpy().T)
                if pair is not None:
                    pairs[tasks[task]["kind"]].append(pair)
        if all(pairs.values()):
            gap, low, high, p = retention_gap(pairs["classification"], pairs["generative"])
            rows.append({"model": cand, "classification - generative": gap, "ci_low": low, "ci_high": high,
                         "p_value": p, "normalised": any(tasks[t].get("floor") is not None for t in per_task
                                                         if tasks[t]["kind"] == "classification")})
    return pd.DataFrame(rows, columns=["model", "classification - generative", "ci_low", "ci_high", "p_value",
                                       "normalised"])


def is_sensitive(task: str, description: dict) -> bool:
    """The paper's (a): arithmetic and generation are what drops at specific layers; multiple choice stays flat."""
    return task == "arithmetic" or description["kind"] == "generative"


def _untestable(base: np.ndarray) -> bool:
    """A 0/1 task on which the base model solves too few items for any drop to reach p < 0.05."""
    return bool(np.isin(base, (0.0, 1.0)).all() and not testable(int(base.sum()), family=1))


def layer_groups(table, tasks: dict[str, dict], candidates: list[str]) -> dict:
    """(a)'s one test: over `candidates` (a sweep's single-layer rows), multiple choice's chance-normalised
    retention minus that of arithmetic and generation (`stats.group_difference`). Tasks that cannot be tested at
    their size are left out and named. Returns difference, ci_low, ci_high, p_value, flat, sensitive, untestable."""
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
    items = item_rows(table)
    groups, untestable = {True: [], False: []}, []
    names = {True: [], False: []}
    for task, metric in primary.items():
        wide = per_item_values(items, task, metric)
        present = [c for c in candidates if c in wide]
        if "base" not in wide or not present:
            continue
        wide = wide[["base", *present]].dropna()
        base = wide["base"].to_numpy(float)
        if _untestable(base):
            untestable.append(task)
            continue
        floor = (tasks[task].get("floor") or 0.0) if tasks[task]["kind"] == "classification" else 0.0
        sensitive = is_sensitive(task, tasks[task])
        groups[sensitive].append((base, wide[present].to_numpy(float).T, floor))
        names[sensitive].append(task)
    out = {"flat": names[False], "sensitive": names[True], "untestable": untestable}
    if not groups[True] or not groups[False]:
        return out | {"difference": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                      "p_value": float("nan")}
    diff, low, high, p = group_difference(groups[False], groups[True])
    return out | {"difference": diff, "ci_low": low, "ci_high": high, "p_value": p}


def recovery_shares(table, tasks: dict[str, dict], pruned: str, recovered: list[str]) -> pd.DataFrame:
    """Per recovered model: the share of the pruned model's loss it wins back in each task group
    (`stats.recovered_share`), and classification's share minus generation's with its interval and p-value."""
    per_task = primary_values(table, tasks)
    rows = []
    for model in recovered:
        groups = {g: [] for g in GROUPS}
        for task, wide in per_task.items():
            if {"base", pruned, model} <= set(wide):
                groups[tasks[task]["kind"]].append(wide[["base", pruned, model]].dropna().to_numpy(float).T)
        found = recovered_share({g: ts for g, ts in groups.items() if ts})
        row = {"model": model}
        for g in GROUPS:
            row |= dict(zip((f"{g}_share", f"{g}_share:ci_low", f"{g}_share:ci_high"), found.get(g, (np.nan,) * 3)))
        row |= dict(zip(("difference", "ci_low", "ci_high", "p_value"), found.get("difference", (np.nan,) * 4)))
        rows.append(row)
    return pd.DataFrame(rows)
