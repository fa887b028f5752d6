"""The paper's findings, stated with this run's numbers and whether each holds at this run's size, computed from the
report's tables (never written by hand):

    (a) single-layer removal: arithmetic and generation drop at specific layers, multiple choice stays flatter
    (b) after pruning, classification retention exceeds generative retention
    (c) SFT on self-generated responses recovers more than on the corpus's original answers, and generative recovery
        stays below classification recovery
    methods: which recovery method gets generation back, against the pruned model and against SFT on SGR

"Significant" is the report's test throughout: a paired sign-flip p < 0.05 against the base model (or between two
models), or a 95% bootstrap interval of a difference that excludes 0 where the difference has no paired test
(classification minus generative retention).
"""

from dataclasses import dataclass, field

import pandas as pd

from prunelab.report.tables import format_interval

ALPHA = 0.05
HOLDS, PARTLY, NOT_SIGNIFICANT, DOES_NOT_HOLD, NOT_MEASURED = (
    "holds", "holds in part", "not significant at this size", "does not hold", "not measured")
SIGNIFICANT_LEAD = "a significant lead"  # which method is best is a question, not a claim that holds


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str
    evidence: list[str] = field(default_factory=list)


NO_RETENTION = "none (the base model scores 0)"


def _interval(row, column: str) -> str:
    if pd.isna(row[column]):
        return NO_RETENTION
    return format_interval(row[column], row[f"{column}:ci_low"], row[f"{column}:ci_high"])


def _finite(gap: tuple) -> bool:
    return not any(pd.isna(x) for x in gap)


def _layers(layers: list[int]) -> str:
    return ", ".join(map(str, layers)) if layers else "none"


def layer_sensitivity(table: pd.DataFrame | None, tasks: dict[str, dict]) -> Finding:
    """(a) from the sweep's retention table (None: no sweep): rows `drop-L`, per task its retention, interval and
    p-value."""
    claim = "Removing one layer: arithmetic and generation drop at specific layers, multiple choice stays flatter."
    rows = pd.DataFrame() if table is None else \
        table.loc[[i for i in table.index if str(i).startswith("drop-") and "+" not in str(i)]]
    if rows.empty:
        return Finding(claim, NOT_MEASURED, ["the run has no single-layer sweep"])
    if not any(task in rows and rows[task].notna().any() for task in tasks):
        return Finding(claim, NOT_MEASURED, [f"no task has a retention: {NO_RETENTION} on every task"])
    layer = {i: int(str(i).split("-")[1]) for i in rows.index}
    evidence, drops = [], {}
    for task, desc in tasks.items():
        if task not in rows or rows[task].isna().all():
            continue
        significant = rows[(rows[task] < 1) & (rows[f"{task}:p_value"] < ALPHA)]
        worst = rows[task].idxmin()
        sensitive = task == "arithmetic" or desc["kind"] == "generative"
        drops[task] = (sensitive, len(significant))
        evidence.append(f"{desc['label']}: a significant drop at {len(significant)} of {len(rows)} layers "
                        f"({_layers(sorted(layer[i] for i in significant.index))}); the worst, layer "
                        f"{layer[worst]}, keeps {rows.loc[worst, task]:.3f}; median {rows[task].median():.3f}")
    medians = {g: rows[f"{g}_mean"].median() for g in ("classification", "generative") if f"{g}_mean" in rows}
    if len(medians) == 2:
        evidence.append(f"the median layer keeps {medians['classification']:.3f} of the classification mean and "
                        f"{medians['generative']:.3f} of the generative mean")
    sensitive = max((n for s, n in drops.values() if s), default=None)
    flat = max((n for s, n in drops.values() if not s), default=0)
    if not sensitive:
        verdict = NOT_SIGNIFICANT if sensitive == 0 else NOT_MEASURED
    else:
        lower = len(medians) < 2 or medians["generative"] < medians["classification"]
        verdict = HOLDS if sensitive > flat and lower else PARTLY
    return Finding(claim, verdict, evidence)


def classification_over_generative(strategies: pd.DataFrame, gaps: dict[str, tuple[float, float, float]]) -> Finding:
    """(b) from Table 1 and, per `strategy@ratio`, classification minus generative retention with its interval."""
    claim = "After pruning, classification retention exceeds generative retention."
    if "generative_mean" not in strategies or "classification_mean" not in strategies:
        return Finding(claim, NOT_MEASURED, ["the run evaluates one task group only"])
    evidence, positive, measured = [], 0, 0
    for _, r in strategies.iterrows():
        key = f"{r['strategy']}@{r['ratio']:g}"
        line = (f"{key} (layers {r['removed']} removed): classification {_interval(r, 'classification_mean')}, "
                f"generative {_interval(r, 'generative_mean')}")
        if key in gaps and _finite(gaps[key]):
            gap, low, high = gaps[key]
            measured += 1
            positive += low > 0
            line += f"; difference {format_interval(gap, low, high)}" + (" (significant)" if low > 0 else "")
        evidence.append(line)
    if not measured:
        return Finding(claim, NOT_MEASURED, evidence)
    if positive == measured:
        verdict = HOLDS
    elif positive:
        verdict = f"{PARTLY}: {positive} of {measured} pruned models"
    else:
        verdict = NOT_SIGNIFICANT if any(g[0] > 0 for g in gaps.values() if _finite(g)) else DOES_NOT_HOLD
    return Finding(claim, verdict, evidence)


def _difference(frame: pd.DataFrame, group: str) -> tuple[float, float, float, float] | None:
    hit = frame[frame["task"] == f"{group} mean"]
    if hit.empty:
        return None
    h = hit.iloc[0]
    return h[frame.columns[3]], h["ci_low"], h["ci_high"], h["p_value"]


def sgr_over_reference(head_to_heads: dict[str, pd.DataFrame]) -> Finding:
    """(c), first half: per target, SGR's generative retention minus the original answers', paired."""
    claim = "SFT on the base model's own answers (SGR) recovers generation better than SFT on the original answers."
    if not head_to_heads:
        return Finding(claim, NOT_MEASURED, ["the run does not train both on SGR and on the original answers"])
    evidence, verdicts = [], []
    for target, frame in head_to_heads.items():
        found = _difference(frame, "generative")
        if found is None:
            continue
        diff, low, high, p = found
        evidence.append(f"{target}: SGR minus the original answers, generative retention "
                        f"{format_interval(diff, low, high)}, p {p:.3f}")
        verdicts.append(HOLDS if diff > 0 and p < ALPHA else DOES_NOT_HOLD if diff < 0 and p < ALPHA
                        else NOT_SIGNIFICANT)
    if not verdicts:
        return Finding(claim, NOT_MEASURED, ["no generative task has a retention (the base model solved none)"])
    return Finding(claim, verdicts[0] if len(set(verdicts)) == 1 else PARTLY, evidence)


def recovery_gap(gaps: dict[str, pd.DataFrame], recovered: dict[str, list[str]]) -> Finding:
    """(c), second half: each recovered model's classification minus generative retention, with its interval."""
    claim = "After recovery, generative retention stays below classification retention."
    evidence, positive, measured = [], 0, 0
    for target, frame in gaps.items():
        for r in frame[frame["model"].isin(recovered.get(target, []))].itertuples(index=False):
            gap, low, high = r[1], r.ci_low, r.ci_high
            if not _finite((gap, low, high)):
                continue
            measured += 1
            positive += low > 0
            evidence.append(f"{r.model}: classification minus generative {format_interval(gap, low, high)}"
                            + (" (significant)" if low > 0 else ""))
    if not measured:
        return Finding(claim, NOT_MEASURED, [f"no recovered model has a retention in both task groups ({NO_RETENTION} "
                                             "on the tasks of one group, or the run has one group only)"])
    verdict = HOLDS if positive == measured else f"{PARTLY}: {positive} of {measured} models" if positive \
        else NOT_SIGNIFICANT
    return Finding(claim, verdict, evidence)


def best_method(methods: pd.DataFrame, against: dict[str, pd.DataFrame], labels: dict[str, dict[str, str]]
                ) -> Finding | None:
    """Per target, the recovery method with the highest generative retention, against the pruned model and
    against SFT on SGR. `methods`: the method table's numeric columns (target, method, _generative);
    `labels[target]`: method -> its row label in against.csv, with "pruned" and "SFT sgr" among them."""
    trained = methods[methods["method"] != "pruned"] if "method" in methods else methods
    if trained.empty or trained["method"].nunique() < 2 or "_generative" not in trained:
        return None
    claim = "Which recovery method gets generation back (the highest generative retention per pruned model)."
    evidence, any_significant = [], False
    for target, group in trained.groupby("target", sort=False):
        group = group.dropna(subset=["_generative"])
        if group.empty:
            continue
        best = group.loc[group["_generative"].idxmax()]
        line = f"{target}: {best['method']} keeps {best['_generative']:.3f} of the generative mean"
        frame, names = against.get(target), labels.get(target, {})
        for reference in ("pruned", "SFT sgr"):
            if frame is None or reference not in names or best["method"] == reference:
                continue
            hit = frame[(frame["model"] == names[best["method"]]) & (frame["against"] == names[reference])
                        & (frame["task"] == "generative mean")]
            if not hit.empty:
                h = hit.iloc[0]
                any_significant |= bool(h.p_value < ALPHA)
                line += (f"; gain over {reference} {format_interval(h.difference, h.ci_low, h.ci_high)}, "
                         f"p {h.p_value:.3f}")
        evidence.append(line)
    if not evidence:
        return Finding(claim, NOT_MEASURED, [f"no model has a generative retention: {NO_RETENTION}"])
    return Finding(claim, SIGNIFICANT_LEAD if any_significant else NOT_SIGNIFICANT, evidence)


def markdown(findings: list[Finding]) -> str:
    return "\n".join(f"- **{f.claim}** {f.verdict.capitalize()}." + "".join(f"\n  - {e}" for e in f.evidence)
                     for f in findings) + "\n"


__all__ = ["Finding", "best_method", "classification_over_generative", "layer_sensitivity", "markdown",
           "recovery_gap", "sgr_over_reference"]
