"""Tables: retention.csv / retention.md (every stage with a base model), strategies.csv / strategies.md
(compare-strategies). Everything is read from the results store and meta.json, never from live tasks."""

from pathlib import Path

import pandas as pd

from prunelab.artifacts import LAYER_PLOT, RETENTION, RETENTION_MD, STRATEGIES, STRATEGIES_MD, STRATEGIES_PLOT
from prunelab.atomic import write_text
from prunelab.report import plots
from prunelab.report.retention import GROUPS, add_adjusted, retention_table

NOTE = ("Retention = metric / base model's metric, with a 95% paired bootstrap interval over items; * = differs from "
        "the base model (paired sign-flip test, exact McNemar on 0/1 items) at p < 0.05 after Holm's adjustment "
        "within the column: a column's candidates are one family. The CSV has both p-values (`:p_value` raw, "
        "`:p_adj` adjusted), the chance-normalised retention of classification tasks (`:norm`) and, on 0/1 "
        "tasks, the smallest drop detectable with 80% power (`:detectable`; empty: cannot be tested at this size).")


def marking_p(table: pd.DataFrame, column: str) -> pd.Series:
    """The p-value that marks and verdicts use: the adjusted one where the table has it (tables written before
    adjustment existed have only the raw one)."""
    return table[f"{column}:p_adj"] if f"{column}:p_adj" in table else table[f"{column}:p_value"]


def format_interval(value, low, high) -> str:
    """'value [low, high]'; empty where there is no value (a base model scoring 0 has no retention), and 'value (no
    interval)' where the bootstrap has none (resamples on which the base model scores 0 have no retention)."""
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{value:.3f} (no interval)"
    return f"{value:.3f} [{low:.2f}, {high:.2f}]"


def with_interval(table: pd.DataFrame, column: str, alpha: float = 0.05) -> list[str]:
    return [format_interval(r, lo, hi) + (" *" if p < alpha else "")
            for r, lo, hi, p in zip(table[column], table[f"{column}:ci_low"], table[f"{column}:ci_high"],
                                    marking_p(table, column))]


def retention_report(root: Path, results, tasks: dict[str, dict], title: str,
                     order: list[str] | None = None, stats: dict | None = None,
                     noise: str | None = None) -> dict[str, Path]:
    """Writes retention.csv, retention.md and (for sweeps) layer_sensitivity.png under `root`; returns their paths.
    `tasks`: name -> description (kind, label, primary_metric) from meta.json; `order`: rows to put first;
    `stats`: the config's stats section (adjustment, alpha); `noise`: the engine's noise floor, in words."""
    stats = {"adjust": "holm", "alpha": 0.05, **(stats or {})}
    primary = {name: task["primary_metric"] for name, task in tasks.items()}
    labels = {name: task["label"] for name, task in tasks.items()}
    retention = retention_table(results, tasks, stats["adjust"])
    if retention.empty:
        return {}
    if order:
        first = [c for c in order if c in retention.index]
        retention = retention.reindex(first + [c for c in retention.index if c not in first])
    paths = {"csv": root / RETENTION, "markdown": root / RETENTION_MD}
    write_text(paths["csv"], retention.to_csv(float_format="%.4f"))
    compared = [t for t in primary if t in retention]  # tasks with a base model to compare with
    md = pd.DataFrame(index=retention.index)
    for t, metric in primary.items():
        if f"{t}:{metric}" in retention:
            md[f"{labels[t]} {metric}"] = retention[f"{t}:{metric}"].map("{:.4f}".format)
        if t in compared:
            md[f"{labels[t]} retention"] = with_interval(retention, t, stats["alpha"])
        if f"{t}:norm" in retention:
            md[f"{labels[t]} above chance"] = [format_interval(*v) for v in retention[
                [f"{t}:norm", f"{t}:norm_ci_low", f"{t}:norm_ci_high"]].itertuples(index=False)]
    for group in GROUPS:
        if f"{group}_mean" in retention:
            md[f"{group} mean retention"] = with_interval(retention, f"{group}_mean", stats["alpha"])
    note = NOTE.replace("Holm's", "Benjamini-Hochberg's") if stats["adjust"] == "bh" else NOTE
    header = f"# {title}\n\n" + (note + "\n\n" if compared else "") + (noise + "\n\n" if noise else "")
    write_text(paths["markdown"], header + md.to_markdown() + "\n")
    if compared and plots.single_layer_rows(retention):
        paths["plot"] = root / LAYER_PLOT
        plots.layer_sensitivity(retention, compared, {t: f"{labels[t]} ({primary[t]})" for t in compared},
                                paths["plot"], title)
    return paths


def strategies_report(root: Path, retention: pd.DataFrame, tasks: dict[str, dict], selections: dict,
                      title: str, method: str = "holm") -> dict[str, Path]:
    """strategies.csv / .md / .png: retention of each (strategy, ratio)'s removed layers, from `retention`; the
    p-values adjusted over the table's rows (its strategy x ratio models are one family)."""
    from prunelab.results import Candidate

    columns = [t for t in tasks if t in retention] + [f"{g}_mean" for g in GROUPS if f"{g}_mean" in retention]
    rows = []
    for sel in selections.values():
        cand = Candidate(tuple(sel.removed)).name
        row = {"strategy": sel.strategy, "ratio": sel.ratio, "removed": " ".join(map(str, sel.removed))}
        for c in columns:
            for suffix in ("", ":ci_low", ":ci_high", ":p_value", ":items", ":norm", ":norm_ci_low", ":norm_ci_high"):
                if c + suffix in retention:  # a table written before it counted items has no `:items`
                    row[c + suffix] = retention.loc[cand, c + suffix] if cand in retention.index else float("nan")
        rows.append(row)
    table = add_adjusted(pd.DataFrame(rows).sort_values(["strategy", "ratio"]), method)
    paths = {"strategies_csv": root / STRATEGIES, "strategies_markdown": root / STRATEGIES_MD,
             "strategies_plot": root / STRATEGIES_PLOT}
    write_text(paths["strategies_csv"], table.to_csv(index=False, float_format="%.4f"))
    md = table[["strategy", "ratio", "removed"]].copy()
    for c in columns:
        md[f"{c} retention"] = with_interval(table, c)
    write_text(paths["strategies_markdown"], f"# Retention by strategy and ratio: {title}\n\n{NOTE}\n\n"
               + md.to_markdown(index=False) + "\n")
    plots.strategies(table, columns, paths["strategies_plot"], title)
    return paths
