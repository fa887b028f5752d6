"""The paper's findings, stated with this run's numbers and a verdict by rule, computed from the report's tables
(never written by hand):

    (a) single-layer removal: arithmetic and generation drop at specific layers, multiple choice stays flatter
    (b) after pruning, classification retention exceeds generative retention
    (c) SFT on self-generated responses recovers generation better than SFT on the original answers, and recovery
        wins back less of the generative loss than of the classification loss
    methods: which recovery method leads

Rules, the same for every finding:
- each finding has one primary test, declared here; a claim made over several models (pruned models in (b),
  targets in (c), recovered models) is one family, its p-values adjusted (Holm by default, `stats.adjust`);
- "holds" needs the adjusted p below alpha in the claimed direction; "does not hold" needs it below alpha in the
  other direction; anything else is "not significant at this size", or "cannot be tested at this size" where no
  outcome on these items could reach alpha (too few solved or differing items);
- over a family: "holds" when every member holds, "holds in part: k of m" when some do and none goes the other
  way, "mixed" when members go both ways, "does not hold" when some go the other way and none holds;
- where a bootstrap interval and the test disagree (an interval that excludes 0 with p above alpha, possible
  at small sizes), the test decides and the evidence says so.
"""

from dataclasses import dataclass, field

import pandas as pd

from prunelab.report.tables import format_interval
from prunelab.significance import adjust, smallest_p, successes_needed

ALPHA = 0.05
HOLDS, PARTLY, MIXED, NOT_SIGNIFICANT, DOES_NOT_HOLD, UNTESTABLE, NOT_MEASURED = (
    "holds", "holds in part", "mixed", "not significant at this size", "does not hold",
    "cannot be tested at this size", "not measured")
NO_LEAD = "no method leads"  # which method is best is a question: a lead must be significant


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str
    evidence: list[str] = field(default_factory=list)


# the paper's claims, in the paper's order (the report lists its findings so)
LAYERS_CLAIM = "Removing one layer: arithmetic and generation drop at specific layers, multiple choice stays flatter."
GROUPS_CLAIM = "After pruning, classification retention exceeds generative retention."
SGR_CLAIM = "SFT on the base model's own answers (SGR) recovers generation better than SFT on the original answers."
SHARE_CLAIM = "Recovery wins back less of what pruning lost on generation than on classification."
BEST_CLAIM = "Which recovery method gets generation back: a lead over the runner-up, significant after adjustment."
CLAIMS = (LAYERS_CLAIM, GROUPS_CLAIM, SGR_CLAIM, SHARE_CLAIM, BEST_CLAIM)


NO_RETENTION = "none (the base model scores 0)"


def in_paper_order(found: list[Finding]) -> list[Finding]:
    """The findings in the order the paper makes its claims (`CLAIMS`), whichever section checked them; a claim of
    a plugin's section after them, in the order found."""
    return sorted(found, key=lambda f: CLAIMS.index(f.claim) if f.claim in CLAIMS else len(CLAIMS))


def _interval(row, column: str) -> str:
    if pd.isna(row[column]):
        return NO_RETENTION
    return format_interval(row[column], row[f"{column}:ci_low"], row[f"{column}:ci_high"])


def _finite(*values) -> bool:
    return not any(pd.isna(x) for x in values)


def _layers(layers: list[int]) -> str:
    return ", ".join(map(str, layers)) if layers else "none"


def directed(diff: float, p: float, alpha: float = ALPHA) -> str:
    """One comparison's verdict: the claim is `diff > 0`."""
    if pd.isna(p) or pd.isna(diff):
        return NOT_MEASURED
    if p < alpha:
        return HOLDS if diff > 0 else DOES_NOT_HOLD
    return NOT_SIGNIFICANT


def combine(verdicts: list[str]) -> str:
    """A family's verdict from its members' (see the module docstring)."""
    measured = [v for v in verdicts if v != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    holds, against = measured.count(HOLDS), measured.count(DOES_NOT_HOLD)
    if holds == len(measured):
        return HOLDS
    if holds and against:
        return f"{MIXED}: holds for {holds}, the opposite for {against} of {len(measured)}"
    if holds:
        return f"{PARTLY}: {holds} of {len(measured)}"
    if against:
        return DOES_NOT_HOLD
    if all(v == UNTESTABLE for v in measured):
        return UNTESTABLE
    return NOT_SIGNIFICANT


def _disagreement(low: float, high: float, p: float, alpha: float) -> str:
    if _finite(low, high, p) and (low > 0 or high < 0) and p >= alpha:
        return " (the interval excludes 0 but the test does not reach alpha: the test decides)"
    return ""


def _adjusted_column(rows: pd.DataFrame, task: str, method: str) -> pd.Series:
    if f"{task}:p_adj" in rows:
        return rows[f"{task}:p_adj"]
    return pd.Series(adjust(rows[f"{task}:p_value"].to_numpy(float), method), index=rows.index)


def layer_sensitivity(table: pd.DataFrame | None, tasks: dict[str, dict], groups: dict | None = None,
                      alpha: float = ALPHA, method: str = "holm") -> Finding:
    """(a). Primary test: `retention.layer_groups` (multiple choice's chance-normalised retention minus arithmetic
    and generation's, over the sweep's layers, items bootstrapped with the base model). Evidence per task: the
    layers whose drop is significant after adjustment over the task's layers, and what the task can detect.
    `table`: the sweep's retention table (None: no sweep)."""
    claim = LAYERS_CLAIM
    rows = pd.DataFrame() if table is None else \
        table.loc[[i for i in table.index if str(i).startswith("drop-") and "+" not in str(i)]]
    if rows.empty:
        return Finding(claim, NOT_MEASURED, ["the run has no single-layer sweep"])
    if not any(task in rows and rows[task].notna().any() for task in tasks):
        return Finding(claim, NOT_MEASURED, [f"no task has a retention: {NO_RETENTION} on every task"])
    layer = {i: int(str(i).split("-")[1]) for i in rows.index}
    evidence = []
    for task, desc in tasks.items():
        if task not in rows or rows[task].isna().all():
            continue
        p_adj = _adjusted_column(rows, task, method)
        significant = rows[(rows[task] < 1) & (p_adj < alpha)]
        worst = rows[task].idxmin()
        line = (f"{desc['label']}: a significant drop at {len(significant)} of {len(rows)} layers after adjustment "
                f"({_layers(sorted(layer[i] for i in significant.index))}); the worst, layer {layer[worst]}, keeps "
                f"{rows.loc[worst, task]:.3f}; median {rows[task].median():.3f}")
        if f"{task}:norm" in rows:
            line += f", above chance {rows[f'{task}:norm'].median():.3f}"
        line += _detectable(rows, task, len(rows), alpha)
        evidence.append(line)
    if groups is None:
        return Finding(claim, NOT_MEASURED, evidence + ["the per-item results the group test needs were not read"])
    if groups["untestable"]:
        evidence.append(f"left out of the group test, too few items solved by the base model to test: "
                        f"{', '.join(groups['untestable'])}")
    if not groups["flat"] or not groups["sensitive"]:
        missing = "multiple choice" if not groups["flat"] else "arithmetic or generation"
        verdict = UNTESTABLE if groups["untestable"] else NOT_MEASURED
        return Finding(claim, verdict, evidence + [f"no testable {missing} task to compare with"])
    diff, low, high, p = (groups[k] for k in ("difference", "ci_low", "ci_high", "p_value"))
    if not _finite(diff, low, high, p):
        return Finding(claim, NOT_MEASURED, evidence + ["the group difference is undefined on these items"])
    evidence.append(f"primary test, over the {len(rows)} layers: multiple choice ({', '.join(groups['flat'])}) keeps "
                    f"{format_interval(diff, low, high)} more of its above-chance accuracy than arithmetic and "
                    f"generation ({', '.join(groups['sensitive'])}), bootstrap p {p:.3f}"
                    + _disagreement(low, high, p, alpha))
    return Finding(claim, directed(diff, p, alpha), evidence)


def _detectable(rows: pd.DataFrame, task: str, family: int, alpha: float) -> str:
    if f"{task}:detectable" not in rows:
        return ""
    solved = rows[f"{task}:base_solved"].iloc[0]
    detectable = rows[f"{task}:detectable"].iloc[0]
    if pd.isna(detectable):
        return (f"; cannot be tested at this size (the base model solves {int(solved)}; a drop can reach "
                f"significance over {family} layers from {successes_needed(family, alpha)} solved items)")
    return f"; detects a drop of {detectable:.2f} or more with 80% power"


def classification_over_generative(strategies: pd.DataFrame, gaps: dict[str, tuple], alpha: float = ALPHA,
                                   method: str = "holm") -> Finding:
    """(b). Primary test per pruned model: classification (chance-normalised where floors are recorded) minus
    generative retention, bootstrap p, adjusted over the pruned models. `gaps`: `strategy@ratio` -> (gap, low,
    high, p)."""
    claim = GROUPS_CLAIM
    if "generative_mean" not in strategies or "classification_mean" not in strategies:
        return Finding(claim, NOT_MEASURED, ["the run evaluates one task group only"])
    keys = [k for k, g in gaps.items() if _finite(*g)]
    p_adj = dict(zip(keys, adjust([gaps[k][3] for k in keys], method))) if keys else {}
    evidence, verdicts = [], []
    for _, r in strategies.iterrows():
        key = f"{r['strategy']}@{r['ratio']:g}"
        line = (f"{key} (layers {r['removed']} removed): classification {_interval(r, 'classification_mean')}, "
                f"generative {_interval(r, 'generative_mean')}")
        if key in p_adj:
            gap, low, high, p = gaps[key]
            verdicts.append(directed(gap, p_adj[key], alpha))
            line += (f"; difference {format_interval(gap, low, high)}, p {p:.3f}, adjusted {p_adj[key]:.3f}"
                     + _disagreement(low, high, p_adj[key], alpha))
        evidence.append(line)
    return Finding(claim, combine(verdicts), evidence)


def _head_to_head_verdict(h, family: int, alpha: float) -> str:
    changed = h.get("changed")
    if changed is not None and _finite(changed) and family * smallest_p(int(changed)) >= alpha:
        return UNTESTABLE
    return directed(h["difference"], h["p_adj"], alpha)


def sgr_over_reference(head_to_heads: dict[str, pd.DataFrame], alpha: float = ALPHA, method: str = "holm",
                       endpoint: str = "generative mean") -> Finding:
    """(c), first half. Primary test per target: SGR's retention minus the original answers' on the primary
    endpoint (`endpoint`, a head-to-head row: the generative mean by default), paired, adjusted over the targets."""
    claim = SGR_CLAIM
    if not head_to_heads:
        return Finding(claim, NOT_MEASURED, ["the run does not train both on SGR and on the original answers"])
    found = {}
    for target, frame in head_to_heads.items():
        hit = frame[frame["task"] == endpoint]
        if not hit.empty:
            h = hit.iloc[0]
            found[target] = {"difference": h[frame.columns[3]], "ci_low": h["ci_low"], "ci_high": h["ci_high"],
                             "p_value": h["p_value"], "changed": h.get("changed")}
    if not found:
        return Finding(claim, NOT_MEASURED, [f"the primary endpoint ({endpoint}) has no retention (the base model "
                                             "solved none)"])
    for target, p in zip(found, adjust([f["p_value"] for f in found.values()], method)):
        found[target]["p_adj"] = p
    evidence, verdicts = [], []
    for target, h in found.items():
        verdict = _head_to_head_verdict(h, len(found), alpha)
        verdicts.append(verdict)
        evidence.append(f"{target}: SGR minus the original answers, {endpoint} retention "
                        f"{format_interval(h['difference'], h['ci_low'], h['ci_high'])}, p {h['p_value']:.3f}, "
                        f"adjusted {h['p_adj']:.3f}" + _changed(h, verdict)
                        + _disagreement(h["ci_low"], h["ci_high"], h["p_adj"], alpha))
    return Finding(claim, combine(verdicts), evidence)


def _changed(h, verdict: str) -> str:
    if verdict != UNTESTABLE:
        return ""
    return f" (cannot be tested at this size: the two differ on {int(h['changed'])} items)"


def recovery_share(shares: dict[str, pd.DataFrame], alpha: float = ALPHA, method: str = "holm") -> Finding:
    """(c), second half. Primary test per recovered model: the share of the pruned model's classification loss it
    wins back minus the share of its generative loss (`retention.recovery_shares`), bootstrap p adjusted over the
    recovered models of every target."""
    claim = SHARE_CLAIM
    rows = [r for frame in shares.values() for _, r in frame.iterrows() if _finite(r["difference"], r["p_value"])]
    if not rows:
        return Finding(claim, NOT_MEASURED, ["no recovered model has a share in both task groups (the pruned model "
                                             "lost nothing in one group, or the run has one group only)"])
    p_adj = adjust([r["p_value"] for r in rows], method)
    evidence, verdicts = [], []
    for r, p in zip(rows, p_adj):
        verdicts.append(directed(r["difference"], p, alpha))
        evidence.append(
            f"{r['model']}: wins back {format_interval(r['classification_share'], r['classification_share:ci_low'], r['classification_share:ci_high'])} "  # noqa: E501
            f"of the classification loss and {format_interval(r['generative_share'], r['generative_share:ci_low'], r['generative_share:ci_high'])} "  # noqa: E501
            f"of the generative loss; difference {format_interval(r['difference'], r['ci_low'], r['ci_high'])}, "
            f"p {r['p_value']:.3f}, adjusted {p:.3f}" + _disagreement(r["ci_low"], r["ci_high"], p, alpha))
    return Finding(claim, combine(verdicts), evidence)


def best_method(leads: dict[str, dict], alpha: float = ALPHA, method: str = "holm", margin: float = 0.05
                ) -> Finding | None:
    """Which recovery method leads, per target: the one with the highest generative retention, if its lead over
    the runner-up is significant after adjustment over the targets; else "no method leads" (and, where TOST says
    so, the two are equivalent within +-margin). `leads[target]`: best, runner_up, their retentions, difference,
    ci_low, ci_high, p_value, changed, equivalence_p (`retention.head_to_head` of the two)."""
    if not leads:
        return None
    claim = BEST_CLAIM
    measured = {t: lead for t, lead in leads.items() if _finite(lead["p_value"])}
    if not measured:
        return Finding(claim, NOT_MEASURED, [f"no model has a generative retention: {NO_RETENTION}"])
    p_adj = dict(zip(measured, adjust([lead["p_value"] for lead in measured.values()], method)))
    evidence, verdicts = [], []
    for target, lead in measured.items():
        h = {**lead, "p_adj": p_adj[target]}
        verdict = _head_to_head_verdict(h, len(measured), alpha)
        verdicts.append(verdict)
        line = (f"{target}: {lead['best']} keeps {lead['best_retention']:.3f} on the primary endpoint, "
                f"{lead['runner_up']} {lead['runner_up_retention']:.3f}; lead "
                f"{format_interval(lead['difference'], lead['ci_low'], lead['ci_high'])}, p {lead['p_value']:.3f}, "
                f"adjusted {p_adj[target]:.3f}" + _changed(h, verdict))
        if verdict == HOLDS:
            line += f": {lead['best']} leads"
        elif _finite(lead.get("equivalence_p")) and lead["equivalence_p"] < alpha:
            line += f": no lead; the two are equivalent within +-{margin:g} (TOST p {lead['equivalence_p']:.3f})"
        else:
            line += ": no lead"
        evidence.append(line)
    leaders = verdicts.count(HOLDS)
    verdict = (f"a significant lead at {leaders} of {len(measured)}" if leaders else
               UNTESTABLE if all(v == UNTESTABLE for v in verdicts) else NO_LEAD)
    return Finding(claim, verdict, evidence)


def markdown(findings: list[Finding]) -> str:
    return "\n".join(f"- **{f.claim}** {f.verdict[0].upper() + f.verdict[1:]}."
                     + "".join(f"\n  - {e}" for e in f.evidence) for f in findings) + "\n"


__all__ = ["CLAIMS", "Finding", "in_paper_order", "best_method", "classification_over_generative", "combine", "directed", "layer_sensitivity",
           "markdown", "recovery_share", "sgr_over_reference"]
