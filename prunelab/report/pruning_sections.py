"""The pruning's sections of the pipeline's report page, each declared by its stage (`prunelab.stages.registry`,
`ReportSection`): Table 1 and the strategies' finding (compare-strategies), what a cut buys (cost), where the
pruned models break and their samples (compare-strategies), Figure 1, the arithmetic probe and the layer finding
(sweep). Each is `section(page, run) -> findings`."""

from pathlib import Path

import pandas as pd

from prunelab.artifacts import CompareArtifact, CostArtifact, SweepArtifact
from prunelab.report import findings as paper
from prunelab.report import interactive as plotly
from prunelab.report.page_parts import clip_text, noise, retention_columns, samples_section
from prunelab.report.plots import _figure, _save, single_layer_rows
from prunelab.report.tables import format_interval, with_interval
from prunelab.results import Candidate


def strategies(page, run) -> list[paper.Finding]:
    """Table 1, and whether classification retention exceeds generative retention after pruning."""
    stage = run.first("compare-strategies")
    if stage is None:
        return []
    compare = CompareArtifact(stage.dir)
    found = paper.classification_over_generative(compare.strategies(), _strategy_gaps(compare), run.alpha, run.adjust)
    _strategies(page, compare, run.alpha)
    return [found]


def cost(page, run) -> list[paper.Finding]:
    """Retention against measured speed-up and memory (the cost stage, with compare's retention)."""
    stage, compare = run.first("cost"), run.first("compare-strategies")
    if stage is not None and compare is not None:
        _cost(page, CostArtifact(stage.dir), CompareArtifact(compare.dir), run.out)
    return []


def pruned_outputs(page, run) -> list[paper.Finding]:
    """Items each pruned model lost, and the samples view of the pruned models."""
    stage = run.first("compare-strategies")
    if stage is None:
        return []
    compare = CompareArtifact(stage.dir)
    _flipped_examples(page, compare)
    samples_section(page, compare.root, "Samples: the pruned models",
                    "Each generative item: the base model's output and each strategy's pruned model's, what was "
                    "scored from it, the outcome and the error class; items the base model solved and a model lost "
                    "are marked.", {Candidate(tuple(v.removed)).name: k for k, v in compare.selections().items()})
    return []


def sweep(page, run) -> list[paper.Finding]:
    """Figure 1 and the probe, and the layer finding (not measured without a sweep)."""
    stage = run.first("sweep")
    if stage is None:
        return [paper.layer_sensitivity(None, {})]
    artifact = SweepArtifact(stage.dir)
    found = paper.layer_sensitivity(artifact.retention(), artifact.tasks(), _layer_groups(artifact), run.alpha,
                                    run.adjust)
    _sweep(page, artifact, run.out, run.alpha)
    return [found]


def _strategies(page, compare: CompareArtifact, alpha: float) -> None:
    table = compare.strategies()
    page.section("Table 1: retention by strategy and ratio",
                 "Classification against generative retention of each strategy's pruned model (retention = metric "
                 f"/ the base model's, 95% paired bootstrap interval; * differs from the base model, p < {alpha:g} after "
                 "Holm's adjustment over the table's pruned models).")
    cols = retention_columns(table, compare.tasks(), alpha)
    page.table("table1_strategies", pd.concat([table[["strategy", "ratio", "removed"]], cols], axis=1))
    columns = [t for t in compare.tasks() if t in table] + [g for g in ("classification_mean", "generative_mean")
                                                             if g in table]
    page.figure(compare.strategies_plot(), "Retention by strategy and ratio", "table1_strategies.png",
                plotly.strategies(table, columns))
    noise(page, compare.meta(), compare.tasks())


def _strategy_gaps(compare: CompareArtifact) -> dict[str, tuple[float, float, float, float]]:
    """"strategy@ratio" -> (classification (chance-normalised) minus generative retention, its 95% interval, its
    bootstrap p), from the compare stage's per-item results."""
    from prunelab.report.retention import group_gap
    from prunelab.results import ResultsStore

    keys = {Candidate(tuple(c.removed)).name: key for key, c in compare.selections().items()}
    frame = group_gap(ResultsStore(compare.root).read(), compare.tasks(), list(keys))
    return {keys[r[0]]: (r[1], r[2], r[3], r[4]) for r in frame.itertuples(index=False)}


def _layer_groups(sweep: SweepArtifact) -> dict:
    """(a)'s group test from the sweep's per-item results (`retention.layer_groups`)."""
    from prunelab.report.retention import layer_groups
    from prunelab.results import ResultsStore

    rows = [str(i) for i in single_layer_rows(sweep.retention())]
    return layer_groups(ResultsStore(sweep.root).read(), sweep.tasks(), rows)


def _sweep(page, sweep: SweepArtifact, out: Path, alpha: float) -> None:
    table = sweep.retention()
    tasks = sweep.tasks()
    page.section("Figure 1: layer sensitivity",
                 "Retention of each task with one layer removed (the single-layer sweep); * p < alpha after Holm's "
                 "adjustment over the task's layers (one family per task).")
    compared = [t for t in tasks if t in table]
    legend = {t: f"{tasks[t]['label']} ({tasks[t]['primary_metric']})" for t in compared}
    page.figure(sweep.layer_plot(), "Retention against the removed layer", "figure1_layers.png",
                plotly.layer_sensitivity(table, compared, legend))
    layers = single_layer_rows(table)
    cols = retention_columns(table.loc[layers], tasks, alpha)
    page.table("figure1_layers", cols.reset_index(names="removed layer"))
    noise(page, sweep.meta(), tasks)
    samples_section(page, sweep.root, "Samples: the single-layer sweep",
             "Each generative item of the sweep: the base model's output and the output with each layer removed, what "
             "was scored from it, the outcome and the error class; items the base model solved and a model lost are "
             "marked.")
    if "arithmetic:acc" in table and "arithmetic:logprob" in table:
        page.section("The arithmetic probe per layer",
                     "Accuracy (argmax over the ten digits) and the target digit's log-probability with each layer "
                     "removed; the dashed line is the base model.")
        probe = pd.DataFrame({"removed layer": [int(c.split("-")[1]) for c in layers],
                              "accuracy": table.loc[layers, "arithmetic:acc"].to_numpy(),
                              "target log-prob": table.loc[layers, "arithmetic:logprob"].to_numpy()})
        page.table("arithmetic_probe", probe)
        plt = _figure()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, col, metric in zip(axes, ("accuracy", "target log-prob"), ("acc", "logprob")):
            ax.plot(probe["removed layer"], probe[col], marker="o")
            ax.axhline(table.loc["base", f"arithmetic:{metric}"], linestyle="--", color="gray")
            ax.set_xlabel("removed layer")
            ax.set_ylabel(col)
            ax.grid(alpha=0.3)
        path = out / "figures" / "arithmetic_probe.png"
        _save(fig, plt, path)
        page.figure(path, "The arithmetic probe per removed layer",
                    interactive=plotly.probe(probe, {"accuracy": table.loc["base", "arithmetic:acc"],
                                                     "target log-prob": table.loc["base", "arithmetic:logprob"]}))


def _gain(row, what: str) -> str:
    """A measured speed-up with its interval over rounds, marked where the interval covers 1 (no measured gain)."""
    low, high = row.get(f"{what}_speedup:ci_low", float("nan")), row.get(f"{what}_speedup:ci_high", float("nan"))
    text = format_interval(row[f"{what}_speedup"], low, high) if pd.notna(low) else f"{row[f'{what}_speedup']:.3f}"
    return text + (" (covers 1)" if pd.notna(low) and low <= 1 <= high else "")


def _time_to_answer(page, cost: pd.DataFrame, compare: CompareArtifact) -> None:
    """Seconds to a correct answer: compare's tokens per solved item at each model's measured decode rate."""
    from prunelab.report.answers import time_to_answer

    path = compare.root / "answers.csv"
    if not path.exists():
        return
    names = {"base": "base"} | {k: Candidate(tuple(v.removed)).name for k, v in compare.selections().items()}
    table = time_to_answer(pd.read_csv(path), cost["decode_b1_tps"].to_dict(), names)
    if table.empty:
        return
    page.section("Time to a correct answer",
                 "Every token each model generated per item it solved (compare-strategies, reasoning included), at "
                 "its measured batch-1 decode rate: a pruned model that decodes faster but needs more tokens per "
                 "solved item can be slower to a correct answer ('survives': the decode speed-up is still a speed-up "
                 "in time to a correct answer).")
    page.table("time_to_answer", table)


def _cost(page, cost_artifact: CostArtifact, compare: CompareArtifact, out: Path) -> None:
    """Retention against measured decode speed-up and memory, one point per strategy x ratio; the base model's
    point at speed-up 1, nothing saved, retention 1."""
    cost = cost_artifact.cost().set_index("model")
    strategies = compare.strategies()
    groups = [g for g in ("classification_mean", "generative_mean") if g in strategies]
    rows = [{"model": "base", "removed": "", "decode speed-up b1": 1.0, "decode bound b1": 1.0,
             "decode speed-up batched": 1.0, "memory saved": 0.0, "classification mean": "1.000",
             "generative mean": "1.000"}]
    points = [{"model": "base", "speedup": 1.0, "memory_saved": 0.0}
              | {f"{g}{suffix}": 1.0 for g in groups for suffix in ("", ":ci_low", ":ci_high")}]
    for _, r in strategies.iterrows():
        key = f"{r['strategy']}@{r['ratio']:g}"
        if key not in cost.index:
            continue
        c = cost.loc[key]
        one = strategies[(strategies.strategy == r["strategy"]) & (strategies.ratio == r["ratio"])]
        cls, gen = (with_interval(one, g)[0] if g in one else "" for g in ("classification_mean", "generative_mean"))
        rows.append({"model": key, "removed": r["removed"], "decode speed-up b1": _gain(c, "decode_b1"),
                     "decode bound b1": c["decode_b1_bound"], "decode speed-up batched": _gain(c, "decode_batch"),
                     "memory saved": c["memory_saved"], "classification mean": cls, "generative mean": gen})
        points.append({"model": key, "speedup": c["decode_b1_speedup"], "memory_saved": c["memory_saved"],
                       # the speed-up's own interval over rounds, where it has one
                       "speedup:ci_low": c.get("decode_b1_speedup:ci_low", float("nan")),
                       "speedup:ci_high": c.get("decode_b1_speedup:ci_high", float("nan"))}
                      | {f"{g}{suffix}": r.get(f"{g}{suffix}", float("nan")) for g in groups
                         for suffix in ("", ":ci_low", ":ci_high", ":items")})
    if len(rows) == 1:
        return
    page.section("What a cut buys: retention against measured speed-up and memory",
                 "Decode speed-up (batch 1 and batched) and peak memory saved, measured on the same workload "
                 "(prunelab cost), beside the bound the architecture allows; the retention of the same removed layers. "
                 "A speed-up is the geometric mean over rounds (the models taking turns, each in a fresh process) of "
                 "its rate over the base model's, with a 95% interval over rounds; '(covers 1)': no measured gain.")
    page.table("cost_retention", pd.DataFrame(rows))
    page.table("cost", cost.reset_index())
    _time_to_answer(page, cost, compare)
    points = pd.DataFrame(points).reindex(columns=["model", "speedup", "speedup:ci_low", "speedup:ci_high",
                                                   "memory_saved", *[f"{g}{suffix}" for g in groups for suffix in
                                                                     ("", ":ci_low", ":ci_high", ":items")]])
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, x, xlabel in ((axes[0], "speedup", "decode speed-up (batch 1)"), (axes[1], "memory_saved",
                                                                              "peak memory saved")):
        for group, marker in zip(groups, ("o", "^")):
            error = [(points[group] - points[f"{group}:ci_low"]).clip(lower=0).fillna(0),
                     (points[f"{group}:ci_high"] - points[group]).clip(lower=0).fillna(0)]
            xerr = None if x != "speedup" else [(points[x] - points[f"{x}:ci_low"]).clip(lower=0).fillna(0),
                                                (points[f"{x}:ci_high"] - points[x]).clip(lower=0).fillna(0)]
            ax.errorbar(points[x], points[group], yerr=error, xerr=xerr, fmt=marker, capsize=3,
                        label=group.split("_")[0])
        for p in points.itertuples(index=False):
            ax.annotate(p.model, (getattr(p, x), getattr(p, groups[0]) if groups else 1.0), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean retention")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    path = out / "figures" / "cost_retention.png"
    _save(fig, plt, path)
    page.figure(path, "Retention against decode speed-up and memory saved (base at speed-up 1, nothing saved)",
                interactive=plotly.cost(points))


def _flipped_examples(page, compare: CompareArtifact, per_candidate: int = 2) -> None:
    """For each candidate, a few items the base model solved and it failed, with both outputs."""
    from prunelab.errors import ResultsError
    from prunelab.report.samples import samples

    try:
        flipped = samples(compare.root, flipped=True)
    except ResultsError:
        return  # no generative task, or a run made before samples were kept
    if flipped.empty:
        return
    names = {Candidate(tuple(v.removed)).name: k for k, v in compare.selections().items()}
    page.section("Where it breaks: items the base model solved and the pruned model lost",
                 "The first items of each pruned model whose primary metric fell below the base model's, with both "
                 "outputs and what was scored from them.")
    for candidate, group in flipped.groupby("candidate", sort=True):
        for r in group.head(per_candidate).itertuples(index=False):
            label = names.get(candidate, candidate)
            error = clip_text(getattr(r, "error_class", None))  # NaN where the task has no error classes
            blocks = [(f"{label}: {r.outcome}" + (f", {error}" if error else ""),
                       clip_text(r.output)), (f"base: {r.base_outcome}", clip_text(r.base_output))]
            page.example(f"{r.task} {r.item_id}: {label} ({candidate})", blocks)


__all__ = ["cost", "pruned_outputs", "strategies", "sweep"]
