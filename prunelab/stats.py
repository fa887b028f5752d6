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
