"""The recovery's sections of the pipeline's report page, each declared by its stage (`prunelab.stages.registry`,
`ReportSection`): Tables 2-3 per target, what recovery wins back, degeneration and code errors, every method at
every ratio and the recovery findings (from the evaluations of the targets and their recoveries), and the training
curves (from the recover stages). Which evaluation is which target's, arm's and seed's is the role the planner gave
each stage (pipeline.json), so nothing here rebuilds stage names from the config."""

from pathlib import Path

import pandas as pd

from prunelab.artifacts import EvalArtifact, RecoverArtifact
from prunelab.config import StatsSpec
from prunelab.report import findings as paper
from prunelab.report import interactive as plotly
from prunelab.report.page_parts import noise, retention_columns, samples_section
from prunelab.report.plots import _figure, _save, dodge
from prunelab.report.tables import format_interval

ERROR_GROUPS = {"bracket": ["err_bracket"], "other syntax": ["err_syntax"], "truncated": ["err_truncated"],
                "runtime": ["err_undefined_name", "err_timeout", "err_assertion", "err_other"]}
DEGENERATION = ("rep2", "rep3", "rep4", "self_bleu4")


def recovery(page, run) -> list[paper.Finding]:
    """Every target whose evaluations (pruned, each arm, each seed) are all finished: its tables, then every method
    at every ratio, then the recovery findings."""
    groups, seed_runs, names = _groups(run)
    return _recovery(page, groups, run.out, _budgets(run), names, run.stats, seed_runs)


def training(page, run) -> list[paper.Finding]:
    """Training perplexity per step of each arm's first run, where its method trains."""
    _training(page, [(f"{s.role['target']}-{s.role['arm']}", s.dir) for s in _first_runs(run) if s.role["trains"]],
              run.out)
    return []


def _groups(run) -> tuple[dict, dict, dict[str, str]]:
    """target -> (label, directory, arm) of its pruned model and each arm's first run; target -> (each later
    seed's (label, directory, run), `combine_evals`' seeds mapping); arm -> its label."""
    evaluations = {s.name: s for s in run.of_kind("eval")}
    groups, seed_runs, names = {}, {}, {}
    for pruned in evaluations.values():
        if "recovered" not in pruned.role:
            continue
        members = [evaluations.get(name) for name in pruned.role["recovered"]]
        if any(m is None for m in members):  # a report mid-way: not every recovery of this target is evaluated
            continue
        target = pruned.role["target"]
        rows, runs, seeds = [(f"pruned {target}", pruned.dir, None)], [], {}
        for member in members:
            role = member.role
            names[role["arm"]] = role["label"]
            label = f"+ {role['label']} ({target})"
            if role["run"] == role["arm"]:
                rows.append((label, member.dir, role["arm"]))
                seeds[label] = [(label, role["seed"])]
            else:
                runs.append((f"{label} [seed {role['seed']}]", member.dir, role["run"]))
                seeds.setdefault(label, []).append((runs[-1][0], role["seed"]))
        groups[target] = rows
        seed_runs[target] = (runs, {label: m for label, m in seeds.items() if len(m) > 1})
    return groups, seed_runs, names


def _budgets(run) -> dict:
    """(target, arm) -> the training budget of the arm's first run and its stage's seconds."""
    return {(s.role["target"], s.role["arm"]): {**RecoverArtifact(s.dir).meta().get("training", {}),
                                                "seconds": s.seconds}
            for s in _first_runs(run)}


def _first_runs(run) -> list:
    """The recover stages that are an arm's first (or only) seed."""
    return [s for s in run.of_kind("recover") if "arm" in s.role and s.role["run"] == s.role["arm"]]


def _recovery(page, groups: dict, out: Path, budgets: dict, names: dict[str, str], stats: dict,
              seed_runs: dict | None = None) -> list[paper.Finding]:
    """Tables 2-3 per target, then every arm of every target in one table (retention, paired differences against
    the pruned model and against SFT on SGR, the training budget) and one figure against the pruning ratio.
    `names`: arm -> how the report calls it. Returns the findings these tables show."""
    from prunelab.report import combine_evals

    if not groups:
        return []
    head_to_heads, shares, leads = {}, {}, {}
    page.section("Tables 2-3: recovery by method",
                 "Each model against the base model, on the same items (* p < alpha after Holm's adjustment over the "
                 "table's models: one family per column).")
    methods = []
    for target, rows in groups.items():
        runs, seeds = (seed_runs or {}).get(target, ([], {}))
        dirs = [Path(d) for _, d, _ in rows + runs]
        combined = out / f"recovery-{target.replace('@', '-at-')}"
        labels = [label for label, _, _ in rows + runs]
        by_arm = {arm: label for label, _, arm in rows}
        versus = (by_arm["sgr"], by_arm["reference"]) if {"sgr", "reference"} <= set(by_arm) else None
        references = [labels[0], *([by_arm["sgr"]] if "sgr" in by_arm else [])]
        paths = combine_evals(dirs, combined, labels, title=f"Recovery of {target}", versus=versus,
                              references=references, stats=stats, seeds=seeds)
        spread = pd.read_csv(paths["seeds"]) if "seeds" in paths else pd.DataFrame()
        table = EvalArtifact(combined).retention()  # the combined table has an eval directory's layout
        tasks = EvalArtifact(dirs[0]).tasks()
        name = target.replace("@", "_")
        page.table(f"table2_recovery_{name}", retention_columns(table, tasks, stats["alpha"]).reset_index(names="model"))
        noise(page, EvalArtifact(dirs[0]).meta(), tasks)
        if versus is not None:
            page.section(f"SGR against the original answers ({target})",
                         "Both recovered models against the base model on the same items: each one's retention, "
                         "SGR's minus the original answers' with a 95% paired bootstrap interval (items resampled "
                         "once for all three models), and a paired sign-flip test of one against the other "
                         "(* p < 0.05; the generative mean is the primary endpoint, the task rows describe it).")
            head_to_heads[target] = pd.read_csv(paths["head_to_head"])
            page.table(f"sgr_vs_reference_{name}", _difference_table(head_to_heads[target]))
        gap = pd.read_csv(paths["gap"])
        against = pd.read_csv(paths["against"])
        shares[target] = pd.read_csv(paths["shares"])
        lead = pd.read_csv(paths["lead"])
        if not lead.empty:
            leads[target] = lead.iloc[0].to_dict()
        if not gap.empty:
            page.section(f"Classification against generative retention ({target})",
                         "Per model: classification mean retention (chance-normalised where the floors are "
                         "recorded) minus generative mean retention, with a 95% bootstrap interval (the two "
                         "groups' items resampled independently).")
            page.table(f"gap_{name}", pd.DataFrame({
                "model": gap["model"],
                "classification - generative": [format_interval(d, lo, hi) for d, lo, hi in
                                                 zip(gap.iloc[:, 1], gap["ci_low"], gap["ci_high"])]}))
        _shares(page, shares[target], target)
        _degeneration(page, table, tasks, target)
        _code_errors(page, table, tasks, target, out)
        samples_section(page, combined, f"Samples: {target} and its recoveries",
                 "Each generative item: the base model's output and each model's, what was scored from it, the "
                 "outcome and the error class; items the base model solved and a model lost are marked.")
        methods += _method_rows(target, rows, table, against, references, budgets, names, stats["alpha"], spread)
    _methods(page, pd.DataFrame(methods), out)
    method, alpha = stats["adjust"], stats["alpha"]
    endpoint = StatsSpec(primary=stats.get("primary", "generative")).primary_row(tasks)[1] if groups else ""
    found = [paper.sgr_over_reference(head_to_heads, alpha, method, endpoint),
             paper.recovery_share(shares, alpha, method)]
    best = paper.best_method(leads, alpha, method, stats["equivalence_margin"])
    return found + ([best] if best else [])


def _shares(page, shares: pd.DataFrame, target: str) -> None:
    """What recovery wins back: per model and task group, (recovered - pruned) / (base - pruned)."""
    if shares.empty:
        return
    name = target.replace("@", "_")
    page.section(f"How much of the loss recovery wins back ({target})",
                 "Per recovered model and task group: (recovered - pruned) / (base - pruned), the mean over the "
                 "group's tasks where the pruned model lost something (95% paired bootstrap interval), and "
                 "classification's share minus generation's (bootstrap p).")
    frame = pd.DataFrame({"model": shares["model"]})
    for group in ("classification", "generative"):
        col = f"{group}_share"
        frame[f"{group} share"] = [format_interval(v, lo, hi) or "not measured" for v, lo, hi in
                                   zip(shares[col], shares[f"{col}:ci_low"], shares[f"{col}:ci_high"])]
    frame["classification - generative"] = [format_interval(v, lo, hi) or "not measured" for v, lo, hi in
                                            zip(shares["difference"], shares["ci_low"], shares["ci_high"])]
    frame["p"] = shares["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.3f}")
    page.table(f"shares_{name}", frame)


def _method_rows(target: str, rows: list, table: pd.DataFrame, against: pd.DataFrame, references: list[str],
                 budgets: dict, names: dict[str, str], alpha: float = 0.05, spread: pd.DataFrame | None = None
                 ) -> list[dict]:
    """One row per model of a target's recovery: its retention per group, the paired differences, its budget;
    for a method trained with several seeds (`spread`, seeds.csv), the mean over seeds, the spread between them
    and the interval over seeds and items."""
    shorts = {references[0]: "pruned", **({references[1]: "SFT sgr"} if len(references) > 1 else {})}
    out = []
    for label, _, arm in rows:
        row = {"target": target, "ratio": float(target.rsplit("@", 1)[1]),
               "method": "pruned" if arm is None else names[arm]}
        for group in ("classification", "generative"):
            col = f"{group}_mean"
            if col in table:
                row[f"{group} retention"] = format_interval(table.loc[label, col], table.loc[label, f"{col}:ci_low"],
                                                            table.loc[label, f"{col}:ci_high"])
                row[f"_{group}"] = table.loc[label, col]
                row[f"_{group}_low"], row[f"_{group}_high"] = (table.loc[label, f"{col}:ci_low"],
                                                              table.loc[label, f"{col}:ci_high"])
                row[f"_{group}_items"] = table.loc[label, f"{col}:items"] if f"{col}:items" in table else None
            for reference, short in shorts.items():
                hit = against[(against.model == label) & (against.against == reference)
                              & (against.task == f"{group} mean")]
                if not hit.empty:
                    h = hit.iloc[0]
                    p_adj = getattr(h, "p_adj", h.p_value)
                    row[f"{group} vs {short}"] = (format_interval(h.difference, h.ci_low, h.ci_high)
                                                  + (" *" if p_adj < alpha else "")
                                                  + f" (p {h.p_value:.3f}, adjusted {p_adj:.3f})")
        if spread is not None and not spread.empty and label in set(spread["model"]):
            s = spread[spread["model"] == label].iloc[0]
            row["seeds"] = "; ".join(
                f"{g} {s[f'{g}_min']:.3f}-{s[f'{g}_max']:.3f}, over seeds and items "
                f"{format_interval(s[f'{g}_mean'], s[f'{g}_mean:ci_low'], s[f'{g}_mean:ci_high'])}"
                for g in ("classification", "generative") if f"{g}_min" in s and pd.notna(s[f"{g}_min"]))
            row["seeds"] = f"{s['seeds']}: {row['seeds']}"
        budget = budgets.get((target, arm), {})
        row |= {"steps": budget.get("steps", ""), "tokens": budget.get("tokens", ""),
                "trainable parameters": budget.get("trainable_parameters", ""), "seconds": budget.get("seconds", "")}
        out.append(row)
    return out


def _methods(page, frame: pd.DataFrame, out: Path) -> None:
    if frame.empty:
        return
    if "seeds" in frame:  # only methods trained with several seeds have a spread
        frame = frame.assign(seeds=frame["seeds"].fillna("one run"))
    page.section("Which healing gets generation back: every method at every ratio",
                 "Each model's mean retention per task group (95% paired bootstrap interval), and its difference "
                 "from the pruned model it started from and from SFT on SGR, on the same items (95% paired "
                 "bootstrap interval; * p < alpha in a paired sign-flip test after adjustment within the target's "
                 "methods and references, one family per task row, else the difference is not significant). Budget: optimizer steps, input tokens trained on, trainable parameters, and the "
                 "stage's seconds (training and merge, or the linear fit). A method trained with several seeds "
                 "(recover.seeds) is the mean over its runs, item by item; its seeds column gives the runs' "
                 "retentions and an interval over seeds and items.")
    page.table("recovery_methods", frame[[c for c in frame.columns if not c.startswith("_")]])
    plt = _figure()
    groups = [g for g in ("classification", "generative") if f"_{g}" in frame]
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    ratios = sorted(frame["ratio"].unique())
    offsets = dodge(frame["method"].nunique(), 0.012 * (ratios[-1] - ratios[0]))
    for ax, group in zip(axes[0], groups):
        for offset, (method, g) in zip(offsets, frame.groupby("method", sort=False)):
            g = g.sort_values("ratio")
            err = [(g[f"_{group}"] - g[f"_{group}_low"]).clip(lower=0),
                   (g[f"_{group}_high"] - g[f"_{group}"]).clip(lower=0)]
            ax.errorbar(g["ratio"] + offset, g[f"_{group}"], yerr=err, marker="o", capsize=3, label=method)
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.axhline(1.0, linestyle="--", color="gray")
        ax.set_xlabel("fraction of layers removed")
        ax.set_ylabel(f"{group} retention")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    path = out / "figures" / "recovery_methods.png"
    _save(fig, plt, path)
    page.figure(path, "Retention against the pruning ratio, one line per recovery method (95% intervals)",
                interactive=plotly.methods(frame))


def _difference_table(frame: pd.DataFrame) -> pd.DataFrame:
    """head_to_head.csv of SGR against the original answers as printed: retentions to 3 places, the difference
    with its interval and a star."""
    a, b, diff = frame.columns[1:4]
    return pd.DataFrame({
        "task": frame["task"], "SGR": frame[a].map("{:.3f}".format),
        "original answers": frame[b].map("{:.3f}".format),
        "SGR - original answers": [format_interval(d, lo, hi) + (" *" if p < 0.05 else "") for d, lo, hi, p in
                                   zip(frame[diff], frame["ci_low"], frame["ci_high"], frame["p_value"])],
        "p": frame["p_value"].map("{:.3f}".format), "items": frame["items"]})


def _degeneration(page, table: pd.DataFrame, tasks: dict, target: str) -> None:
    rows = []
    for task, desc in tasks.items():
        if desc["kind"] != "generative" or "base" not in table.index:
            continue
        for model in table.index:
            row = {"model": model, "task": desc["label"]}
            for m in DEGENERATION:
                col = f"{task}:{m}"
                if col in table:
                    row[m] = table.loc[model, col]
                    row[f"{m} delta"] = table.loc[model, col] - table.loc["base", col]
            rows.append(row)
    if rows:
        page.table(f"degeneration_{target.replace('@', '_')}", pd.DataFrame(rows))


def _code_errors(page, table: pd.DataFrame, tasks: dict, target: str, out: Path) -> None:
    rows = []
    for task, desc in tasks.items():
        if f"{task}:err_bracket" not in table:
            continue
        for model in table.index:
            row = {"model": model, "task": desc["label"]}
            for group, metrics in ERROR_GROUPS.items():
                row[group] = sum(table.loc[model, f"{task}:{m}"] for m in metrics if f"{task}:{m}" in table)
            rows.append(row)
    if not rows:
        return
    frame = pd.DataFrame(rows)
    page.table(f"code_errors_{target.replace('@', '_')}", frame)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(frame)))
    left = [0.0] * len(frame)
    labels = [f"{r.model} ({r.task})" for r in frame.itertuples()]
    for group in ERROR_GROUPS:
        ax.barh(labels, frame[group], left=left, label=group)
        left = [a + b for a, b in zip(left, frame[group])]
    ax.set_xlabel("fraction of samples")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    path = out / "figures" / f"code_errors_{target.replace('@', '_')}.png"
    _save(fig, plt, path)
    page.figure(path, f"Code error taxonomy ({target})",
                interactive=plotly.stacked_bars(frame.assign(label=labels), "label", list(ERROR_GROUPS),
                                                f"Code error taxonomy ({target})", "fraction of samples"))


def _training(page, recover_dirs: list[tuple[str, Path]], out: Path) -> None:
    from prunelab.report import combine_training_curves

    if not recover_dirs:
        return
    page.section("Training perplexity", "Perplexity per optimizer step of each recovery run.")
    # each run's curve is read through RecoverArtifact: a missing one names its file
    paths = combine_training_curves([d for _, d in recover_dirs], out / "training",
                                    [label for label, _ in recover_dirs])
    curves = pd.read_csv(paths["training_csv"])
    page.figure(paths["training_plot"], "Training perplexity per step",
                interactive=plotly.lines({run: g for run, g in curves.groupby("run", sort=False)}, "step",
                                         "perplexity", "Training perplexity per step", "optimizer step",
                                         "training perplexity", log_y=True))


__all__ = ["recovery", "training"]
