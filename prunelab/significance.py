"""What a set of paired tests can claim: p-values adjusted for how many were made, the chance floor of a task,
the power its sizes allow, and equivalence.

- `adjust(p, method)`: Holm (family-wise error, the default) or Benjamini-Hochberg (false discovery rate), by
  statsmodels' `multipletests`. NaN p-values (comparisons that were not made) stay NaN and do not count.
- `chance_floor(golds, choices)`: what a model scores on these items without reading them: the best constant
  answer (always the same choice position; for the arithmetic probe, always the same first digit), or a uniform
  guess if that is higher.
- Power of the exact paired test on a binary metric (McNemar's, which the sign-flip test is on 0/1 items): with
  `k` items the base model solves, the smallest two-sided p any candidate can reach is 2 * 0.5**k (it loses all k
  and gains none). After Holm over `family` comparisons the first step is at alpha / family, so a task is testable
  only if family * 2 * 0.5**k < alpha. `detectable_drop` is the smallest share of the base model's solved items a
  candidate must lose (each independently, gaining none) to be found with the stated power.
- `equivalence_p(diffs, margin)`: two one-sided paired t-tests (TOST, statsmodels' `ttost_paired`): small when the
  mean difference lies within +-margin.
"""

from collections.abc import Sequence

import numpy as np
from scipy import stats

ADJUSTMENTS = {"holm": "holm", "bh": "fdr_bh"}  # config name -> statsmodels' name


def adjust(p_values: Sequence[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family, in the input's order; NaN where the input is NaN."""
    from statsmodels.stats.multitest import multipletests

    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown adjustment {method!r}; allowed: {', '.join(ADJUSTMENTS)}")
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    made = np.isfinite(p)
    if made.any():
        out[made] = multipletests(p[made], method=ADJUSTMENTS[method])[1]
    return out


def chance_floor(golds: Sequence[int], choices: Sequence[int]) -> float:
    """The best of: always answering one choice position (the most frequent gold position's share), and a uniform
    guess (the mean of 1 / choices)."""
    golds = np.asarray(golds, int)
    if len(golds) == 0:
        return float("nan")
    constant = np.bincount(golds).max() / len(golds)
    return float(max(constant, np.mean(1.0 / np.asarray(choices, float))))


def normalised(value: float, base: float, floor: float) -> float:
    """(value - floor) / (base - floor): the share of the base model's above-chance accuracy a model keeps; NaN
    where the base model is not above the floor."""
    return (value - floor) / (base - floor) if base > floor else float("nan")


def smallest_p(successes: int) -> float:
    """The smallest two-sided p of the exact paired test when the base model solves `successes` items."""
    return min(1.0, 2 * 0.5 ** successes) if successes > 0 else 1.0


def successes_needed(family: int, alpha: float = 0.05) -> int:
    """The fewest solved items of the base model for which a drop can be significant after Holm over `family`."""
    k = 1
    while family * smallest_p(k) >= alpha:
        k += 1
    return k


def testable(successes: int, family: int, alpha: float = 0.05) -> bool:
    return successes >= successes_needed(family, alpha)


def _critical_losses(successes: int, family: int, alpha: float) -> int | None:
    """The fewest losses (no gains) whose exact p (2 * 0.5**losses) is below alpha / family; None if no number of
    the base model's `successes` is."""
    losses = 1
    while smallest_p(losses) >= alpha / family:
        losses += 1
    return losses if losses <= successes else None


def drop_power(successes: int, drop: float, family: int = 1, alpha: float = 0.05) -> float:
    """Power to find a candidate that loses each of the base model's `successes` solved items with probability
    `drop` (and gains none), at the first step of Holm over `family` (alpha / family)."""
    critical = _critical_losses(successes, family, alpha)
    if critical is None:
        return 0.0
    return float(stats.binom.sf(critical - 1, successes, drop))


def detectable_drop(successes: int, family: int = 1, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest retention drop (share of the base model's solved items lost) found with `power`; NaN when the
    task cannot be tested at this size."""
    if _critical_losses(successes, family, alpha) is None:
        return float("nan")
    low, high = 0.0, 1.0
    for _ in range(40):  # bisection: power rises with the drop
        mid = (low + high) / 2
        low, high = (mid, high) if drop_power(successes, mid, family, alpha) < power else (low, mid)
    return high


def equivalence_p(diffs: Sequence[float], margin: float) -> float:
    """TOST p-value that the mean paired difference lies within (-margin, margin); 1.0 with fewer than 2 items."""
    from statsmodels.stats.weightstats import ttost_paired

    d = np.asarray(diffs, float)
    if len(d) < 2:
        return 1.0
    if np.ptp(d) == 0:  # no spread: the t statistics are infinite
        return 0.0 if abs(d[0]) < margin else 1.0
    return float(ttost_paired(d, np.zeros_like(d), -margin, margin)[0])


__all__ = ["ADJUSTMENTS", "adjust", "chance_floor", "detectable_drop", "drop_power", "equivalence_p", "normalised",
           "smallest_p", "successes_needed", "testable"]
