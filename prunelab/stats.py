"""Uncertainty of retention: bootstrap confidence intervals over items, and a paired test against the base model.

Both are paired: the pruned and the base model answer the same items, so resampling and sign flips act on items,
which keeps the strong item-to-item correlation that an unpaired test would throw away.
"""

import warnings

import numpy as np
from scipy import stats


def _ratio(base, cand, axis=-1):
    b = np.mean(base, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(cand, axis=axis) / b


def retention_ci(base, cand, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(retention, low, high): mean(cand) / mean(base) and its percentile-bootstrap interval over paired items.

    NaN where the base mean is 0, or the interval where there are fewer than 2 items.
    """
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    if len(base) == 0 or base.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    point = float(_ratio(base, cand))
    if len(base) < 2:
        return point, float("nan"), float("nan")
    if np.ptp(base) == 0 and np.ptp(cand) == 0:  # every resample gives the same ratio
        return point, point, point
    with warnings.catch_warnings():  # a degenerate resample distribution still gives a valid percentile interval
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((base, cand), _ratio, paired=True, vectorized=True, confidence_level=confidence,
                              n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_p_value(base, cand, n_resamples: int = 5000, seed: int = 0) -> float:
    """Two-sided p-value that the mean per-item difference (cand - base) is 0: a paired sign-flip permutation
    test (exact when there are few enough items). 1.0 when the two models agree on every item."""
    diff = np.asarray(cand, float) - np.asarray(base, float)
    diff = diff[diff != 0]  # flipping the sign of a zero changes nothing; dropping them makes small cases exact
    if len(diff) == 0:
        return 1.0
    if len(diff) == 1:  # the two sign assignments: one as extreme as observed in each direction
        return 1.0
    res = stats.permutation_test((diff,), np.mean, permutation_type="samples", vectorized=True,
                                 n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def mean_retention_ci(pairs, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0, block: int = 250):
    """(mean retention, low, high) over several tasks: the mean of per-task retentions, with a percentile bootstrap
    that resamples items within each task (paired, independently across tasks). `pairs`: [(base, cand)] per task;
    tasks whose base mean is 0 are left out (their retention is undefined)."""
    pairs = [(np.asarray(b, float), np.asarray(c, float)) for b, c in pairs]
    pairs = [(b, c) for b, c in pairs if len(b) and b.mean() != 0]
    if not pairs:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([c.mean() / b.mean() for b, c in pairs]))
    if min(len(b) for b, _ in pairs) < 2:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for b, c in pairs:
        for start in range(0, n_resamples, block):  # bounded memory for large tasks (MMLU: 14k items)
            idx = rng.integers(0, len(b), size=(min(block, n_resamples - start), len(b)))
            with np.errstate(divide="ignore", invalid="ignore"):
                total[start : start + len(idx)] += c[idx].mean(1) / b[idx].mean(1)
    total /= len(pairs)
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(total, [alpha, 1 - alpha])
    return point, float(low), float(high)


def mean_paired_p_value(pairs, n_resamples: int = 5000, seed: int = 0) -> float:
    """Two-sided p-value that several tasks' candidates match the base model on average: a paired sign-flip test of
    the mean over tasks of mean(cand - base) / mean((cand + base) / 2). The denominator does not change when an
    item's pair is swapped, so under "no difference" every sign pattern is equally likely."""
    diffs, scales = [], []
    for b, c in pairs:
        b, c = np.asarray(b, float), np.asarray(c, float)
        scale = np.mean((b + c) / 2)
        if len(b) and scale != 0:
            diffs.append(c - b)
            scales.append(scale)
    if not diffs or all(not d.any() for d in diffs):
        return 1.0
    observed = np.mean([d.mean() / s for d, s in zip(diffs, scales)])
    rng = np.random.default_rng(seed)
    null = np.zeros(n_resamples)
    for d, s in zip(diffs, scales):
        signs = rng.choice((-1.0, 1.0), size=(n_resamples, len(d)))
        null += (signs * d).mean(1) / s
    null /= len(diffs)
    return float((1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + n_resamples))
