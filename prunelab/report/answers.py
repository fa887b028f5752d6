"""What an answer costs in tokens, and what sampling more buys, per candidate and generative task.

    answer_tokens(...)  tokens generated per item (reasoning and answer apart, where the model reasons), the share
                        of items that hit a budget (and that were cut inside their thinking), and tokens per solved
                        item: what the cost stage turns into time to a correct answer
    scaling(...)        sampled tasks: pass@k and maj@k for each k with a bootstrap interval over items, and each
                        candidate's gain from sampling (metric at the largest k minus at k = 1) against the base
                        model's, paired over items: whether pruning removes the gain from sampling more

Both read a results store's rows; the item is the unit of every interval and test.
"""

import re

import numpy as np
import pandas as pd

from prunelab.results import item_rows

SAMPLED = re.compile(r"^(pass|maj)@(\d+)(_plus)?$")


def _mean_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(mean, low, high): a percentile bootstrap over items."""
    values = np.asarray(values, float)
    if len(values) < 2 or np.ptp(values) == 0:
        point = float(values.mean()) if len(values) else float("nan")
        return point, point, point
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(1)
    alpha = (1 - confidence) / 2
    return float(values.mean()), *(float(q) for q in np.quantile(means, [alpha, 1 - alpha]))


def answer_tokens(table, tasks: dict[str, dict]) -> pd.DataFrame:
    """One row per (generative task, candidate)."""
    rows = item_rows(table)
    out = []
    for task, desc in tasks.items():
        if desc.get("kind") != "generative":
            continue
        mine = rows[rows.task == task]
        for candidate, group in mine.groupby("candidate", sort=False):
            values = group.pivot(index="item_id", columns="metric", values="value")
            solved = float(values[desc["primary_metric"]].sum()) if desc["primary_metric"] in values else 0.0
            tokens = values["output_tokens"] if "output_tokens" in values else pd.Series(dtype=float)
            row = {"task": task, "candidate": candidate, "items": len(values),
                   "tokens_per_item": float(tokens.mean()) if len(tokens) else float("nan"),
                   "budget_hit": float(values["truncated"].mean()) if "truncated" in values else float("nan"),
                   "solved": solved,
                   # every token spent, on solved and unsolved items alike, per item solved
                   "tokens_per_solved": float(tokens.sum() / solved) if solved else float("nan")}
            if "thinking_tokens" in values:
                row |= {"thinking_tokens_per_item": float(values["thinking_tokens"].mean()),
                        "answer_tokens_per_item": float(values["answer_tokens"].mean()),
                        "cut_in_thinking": float(values["cut_in_thinking"].mean())}
            out.append(row)
    return pd.DataFrame(out)


def _sampled_metrics(names, primary: str) -> dict[str, dict[int, str]]:
    """kind (pass / maj) -> k -> the metric holding it; pass@1 is the primary metric (its mean over samples)."""
    suffix = "_plus" if primary.endswith("_plus") else ""
    out: dict[str, dict[int, str]] = {}
    for name in names:
        match = SAMPLED.match(name)
        if not match or (match.group(3) or "") != (suffix if match.group(1) == "pass" else ""):
            continue
        kind, k = match.group(1), int(match.group(2))
        if kind == "pass" and k == 1:
            continue
        out.setdefault(kind, {})[k] = name
    if "pass" in out:
        out["pass"][1] = primary
    return out


def _gain_row(task: str, candidate: str, kind: str, k: int, gain: pd.Series, base: pd.Series,
              confidence: float) -> dict:
    from prunelab.stats import paired_p_value

    both = gain.index.intersection(base.index)
    difference = gain[both].to_numpy() - base[both].to_numpy()
    mean, low, high = _mean_ci(difference, confidence)
    return {"task": task, "candidate": candidate, "kind": f"{kind}@k", "k": k, "gain": float(gain[both].mean()),
            "base_gain": float(base[both].mean()), "difference": mean, "ci_low": low, "ci_high": high,
            "items": len(both), "p_value": paired_p_value(base[both].to_numpy(), gain[both].to_numpy())}


def scaling(table, tasks: dict[str, dict], confidence: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curve, gain). curve: one row per (task, candidate, kind: pass@k / maj@k, k) with the mean over items and its
    interval; gain: per (task, candidate other than the base, kind), the gain from k = 1 to the largest k, the base
    model's, and the paired difference (candidate gain - base gain) with its interval and p-value."""
    rows = item_rows(table)
    curve, gains = [], []
    for task, desc in tasks.items():
        mine = rows[rows.task == task]
        kinds = _sampled_metrics(mine.metric.unique(), desc["primary_metric"])
        for kind, by_k in kinds.items():
            values = mine[mine.metric.isin(by_k.values())].pivot_table(index=["candidate", "item_id"],
                                                                     columns="metric", values="value")
            ks = sorted(by_k)
            gain = {}
            for candidate, group in values.groupby(level="candidate", sort=False):
                group = group.droplevel("candidate")
                for k in ks:
                    mean, low, high = _mean_ci(group[by_k[k]].to_numpy(), confidence)
                    curve.append({"task": task, "candidate": candidate, "kind": f"{kind}@k", "k": k, "value": mean,
                                  "ci_low": low, "ci_high": high, "items": len(group)})
                gain[candidate] = group[by_k[ks[-1]]] - group[by_k[ks[0]]]
            if "base" in gain:
                gains += [_gain_row(task, c, kind, ks[-1], g, gain["base"], confidence)
                          for c, g in gain.items() if c != "base"]
    return pd.DataFrame(curve), pd.DataFrame(gains)


def time_to_answer(tokens: pd.DataFrame, decode_tps: dict[str, float], candidates: dict[str, str]) -> pd.DataFrame:
    """Per pruned model and generative task: every token spent per item solved (`answer_tokens`) at the model's
    measured batch-1 decode rate, as seconds per solved item, against the base model's. `decode_tps`: label ->
    tokens/s (the base model's label "base"); `candidates`: label -> its candidate in `tokens` (the base: "base").
    A pruned model that decodes faster but needs more tokens per solved item can be slower to a correct answer."""
    out = []
    for task, group in tokens.groupby("task", sort=False):
        per = group.set_index("candidate")["tokens_per_solved"]
        if "base" not in per or "base" not in decode_tps:
            continue
        base_s = per["base"] / decode_tps["base"]
        for label, candidate in candidates.items():
            if label == "base" or candidate not in per or label not in decode_tps:
                continue
            seconds = per[candidate] / decode_tps[label]
            speedup = base_s / seconds if np.isfinite(seconds) and seconds > 0 else float("nan")
            out.append({"model": label, "task": task, "tokens_per_solved": per[candidate],
                        "base_tokens_per_solved": per["base"], "decode_speedup": decode_tps[label] / decode_tps["base"],
                        "seconds_per_solved": seconds, "base_seconds_per_solved": base_s,
                        "answer_speedup": speedup,
                        "survives": ("none solved" if not np.isfinite(speedup) else
                                     "yes" if speedup > 1 else "no")})
    return pd.DataFrame(out)


__all__ = ["answer_tokens", "scaling", "time_to_answer"]
