"""Uncertainty of retention: bootstrap confidence intervals over items, and a paired test against the base model.

Both are paired: the pruned and the base model answer the same items, so resampling and sign flips act on items,
which keeps the strong item-to-item correlation that an unpaired test would throw away.
"""

import numpy as np
from scipy import stats


def _resampled_retention(pairs, n_resamples: int, seed: int, block: int = 250) -> np.ndarray:
    """Per bootstrap resample, the mean over tasks of mean(cand) / mean(base), items resampled within each task
    (paired). A resample whose base mean is 0 has no retention: NaN (inf ratios included), dropped by the caller."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for b, c in pairs:
        for start in range(0, n_resamples, block):  # bounded memory for large tasks (MMLU: 14k items)
            idx = rng.integers(0, len(b), size=(min(block, n_resamples - start), len(b)))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = c[idx].mean(1) / b[idx].mean(1)
            total[start : start + len(idx)] += np.where(np.isfinite(ratio), ratio, np.nan)
    return total / len(pairs)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval over the resamples where retention is defined; NaN if fewer than 90% of them are (few
    items and a rare success: the interval would describe only the lucky resamples)."""
    defined = samples[np.isfinite(samples)]
    if len(defined) < 0.9 * len(samples):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return float(low), float(high)


def retention_ci(base, cand, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(retention, low, high): mean(cand) / mean(base) and its percentile-bootstrap interval over paired items.

    NaN where the base mean is 0; the interval NaN with fewer than 2 items, or when the base mean is 0 in more than
    10% of resamples (see `_interval`).
    """
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    if len(base) == 0 or base.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    point = float(cand.mean() / base.mean())
    if len(base) < 2:
        return point, float("nan"), float("nan")
    if (np.ptp(base) == 0 and np.ptp(cand) == 0) or np.array_equal(base, cand):  # every resample: the same ratio
        return point, point, point
    return (point, *_interval(_resampled_retention([(base, cand)], n_resamples, seed), confidence))


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


def mean_retention_ci(pairs, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
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
    return (point, *_interval(_resampled_retention(pairs, n_resamples, seed), confidence))


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
