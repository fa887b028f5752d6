"""Uncertainty of retention: bootstrap confidence intervals over items, and a paired test against the base model.

Both are paired: the pruned and the base model answer the same items, so resampling and sign flips act on items,
which keeps the strong item-to-item correlation that an unpaired test would throw away.
"""

import numpy as np
from scipy import stats


def _resampled_retentions(tasks, n_resamples: int, seed: int, block: int = 250) -> np.ndarray:
    """Per candidate and bootstrap resample (shape: candidates x resamples), the mean over tasks of mean(cand) /
    mean(base). `tasks`: [(base, [cand, ...])] per task; each resample draws one set of items per task for the base
    and every candidate alike (paired). A resample whose base mean is 0 has no retention: NaN (inf ratios included),
    dropped by the caller."""
    rng = np.random.default_rng(seed)
    total = np.zeros((len(tasks[0][1]), n_resamples))
    for b, cands in tasks:
        for start in range(0, n_resamples, block):  # bounded memory for large tasks (MMLU: 14k items)
            idx = rng.integers(0, len(b), size=(min(block, n_resamples - start), len(b)))
            base = b[idx].mean(1)
            for i, c in enumerate(cands):
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = c[idx].mean(1) / base
                total[i, start : start + len(idx)] += np.where(np.isfinite(ratio), ratio, np.nan)
    return total / len(tasks)


def _resampled_retention(pairs, n_resamples: int, seed: int) -> np.ndarray:
    return _resampled_retentions([(b, [c]) for b, c in pairs], n_resamples, seed)[0]


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


def retention_difference_ci(triples, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(difference, low, high): mean retention of candidate `a` minus that of candidate `b` over several tasks, both
    against the same base model on the same items. `triples`: [(base, a, b)] per task; tasks whose base mean is 0
    are left out. The bootstrap resamples each task's items once for all three (paired), so what the two candidates
    share (an item every model finds hard) cancels out of the interval."""
    triples = [tuple(np.asarray(x, float) for x in t) for t in triples]
    triples = [t for t in triples if len(t[0]) and t[0].mean() != 0]
    if not triples:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([(a.mean() - b.mean()) / base.mean() for base, a, b in triples]))
    if min(len(t[0]) for t in triples) < 2:
        return point, float("nan"), float("nan")
    if all(np.array_equal(a, b) for _, a, b in triples):
        return point, point, point
    ra, rb = _resampled_retentions([(base, [a, b]) for base, a, b in triples], n_resamples, seed)
    return (point, *_interval(ra - rb, confidence))


def retention_gap_ci(pairs_x, pairs_y, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(gap, low, high): mean retention over the tasks of `pairs_x` minus that over the tasks of `pairs_y`, one
    candidate against its base model on both (say classification against generative tasks). The two sets are
    different tasks, so their items are resampled independently."""
    x, y = mean_retention_ci(pairs_x)[0], mean_retention_ci(pairs_y)[0]
    clean = [[(np.asarray(b, float), np.asarray(c, float)) for b, c in pairs] for pairs in (pairs_x, pairs_y)]
    clean = [[(b, c) for b, c in pairs if len(b) and b.mean() != 0] for pairs in clean]
    if not all(clean) or min(len(b) for pairs in clean for b, _ in pairs) < 2:
        return x - y, float("nan"), float("nan")
    samples = (_resampled_retention(clean[0], n_resamples, seed)
               - _resampled_retention(clean[1], n_resamples, seed + 1))
    return (x - y, *_interval(samples, confidence))
