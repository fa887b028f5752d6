"""Uncertainty of retention: bootstrap confidence intervals over items, and a paired test against the base model.

Both are paired: the pruned and the base model answer the same items, so resampling and sign flips act on items,
which keeps the strong item-to-item correlation that an unpaired test would throw away.
"""

import warnings

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
    test (exact when there are few enough items; on 0/1 items always exact, as McNemar's test). 1.0 when the two
    models agree on every item."""
    diff = np.asarray(cand, float) - np.asarray(base, float)
    diff = diff[diff != 0]  # flipping the sign of a zero changes nothing; dropping them makes small cases exact
    if len(diff) == 0:
        return 1.0
    if len(diff) == 1:  # the two sign assignments: one as extreme as observed in each direction
        return 1.0
    if np.all(np.abs(diff) == 1):  # 0/1 items: the sign-flip test is exact McNemar, a binomial test on the changes
        return float(stats.binomtest(int((diff > 0).sum()), len(diff), 0.5).pvalue)
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
    return retention_gap(pairs_x, pairs_y, confidence, n_resamples, seed)[:3]


def bootstrap_p(samples: np.ndarray) -> float:
    """Two-sided bootstrap test of 0: twice the share of defined resamples on the far side, at least 1 / their
    number; NaN with none."""
    defined = samples[np.isfinite(samples)]
    if not len(defined):
        return float("nan")
    return max(min(1.0, 2 * min((defined <= 0).mean(), (defined >= 0).mean())), 1 / len(defined))


def retention_gap(pairs_x, pairs_y, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """`retention_gap_ci` and its bootstrap p-value: (gap, low, high, p)."""
    x, y = mean_retention_ci(pairs_x)[0], mean_retention_ci(pairs_y)[0]
    clean = [[(np.asarray(b, float), np.asarray(c, float)) for b, c in pairs] for pairs in (pairs_x, pairs_y)]
    clean = [[(b, c) for b, c in pairs if len(b) and b.mean() != 0] for pairs in clean]
    if not all(clean) or min(len(b) for pairs in clean for b, _ in pairs) < 2:
        return x - y, float("nan"), float("nan"), float("nan")
    samples = (_resampled_retention(clean[0], n_resamples, seed)
               - _resampled_retention(clean[1], n_resamples, seed + 1))
    return (x - y, *_interval(samples, confidence), bootstrap_p(samples))


def _task_retentions(base: np.ndarray, cands: np.ndarray, floor: float, idx: np.ndarray | None) -> np.ndarray:
    """Per candidate (and resample, when `idx` draws items), (mean(cand) - floor) / (mean(base) - floor); NaN
    where the base mean is not above the floor."""
    b = base[idx].mean(-1) if idx is not None else base.mean()
    c = cands[:, idx].mean(-1) if idx is not None else cands.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > floor, (c - floor) / (b - floor), np.nan)


def group_difference(flat, sensitive, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(difference, low, high, p): over candidates (a sweep's layers), the mean of [mean retention over the `flat`
    tasks minus mean retention over the `sensitive` tasks]. Each task: (base items, candidates x items, floor);
    retention is chance-normalised by the floor (0 for none). The bootstrap resamples each task's items once for
    the base model and every candidate alike, so the base model's own luck on a task, which every candidate's
    retention shares, is in the interval (a test across layers that took the layers as independent would not see
    it). p: twice the share of resamples on the far side of 0 (bootstrap test), at least 1 / resamples."""
    def statistic(idx_of):
        per_group = []
        for tasks in (flat, sensitive):
            r = np.array([_task_retentions(b, c, f, idx_of(i, len(b))) for i, (b, c, f) in tasks])
            per_group.append(np.nanmean(r, axis=0))  # over tasks: candidates (x resamples)
        return np.nanmean(per_group[0] - per_group[1], axis=0)  # over candidates

    flat = [(i, (np.asarray(b, float), np.asarray(c, float), f)) for i, (b, c, f) in enumerate(flat)]
    sensitive = [(len(flat) + i, (np.asarray(b, float), np.asarray(c, float), f)) for i, (b, c, f) in
                 enumerate(sensitive)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: undefined resamples
        point = float(statistic(lambda i, n: None))
        rng = np.random.default_rng(seed)
        draws = {i: rng.integers(0, len(b), size=(n_resamples, len(b))) for i, (b, _, _) in flat + sensitive}
        samples = statistic(lambda i, n: draws[i])
    low, high = _interval(samples, confidence)
    if not np.isfinite(point) or not np.isfinite(low):
        return point, float("nan"), float("nan"), float("nan")
    return point, low, high, bootstrap_p(samples)


def recovered_share(groups: dict[str, list], confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """How much of what pruning lost recovery wins back, per group of tasks: the mean over a group's tasks of
    (mean(recovered) - mean(pruned)) / (mean(base) - mean(pruned)), over tasks where the pruned model lost
    something. `groups`: name -> [(base, pruned, recovered) per task]. Returns {group: (share, low, high)} and,
    with two groups, "difference": (first - second, low, high, bootstrap p). Items are resampled once for the
    three models of a task (paired), each task independently."""
    def share(triples, idx):
        out = []
        for (b, p, r), i in zip(triples, idx):
            lost = b[i].mean(-1) - p[i].mean(-1) if i is not None else b.mean() - p.mean()
            won = r[i].mean(-1) - p[i].mean(-1) if i is not None else r.mean() - p.mean()
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.where(lost > 0, won / lost, np.nan))
        return np.nanmean(np.array(out, float), axis=0)

    rng = np.random.default_rng(seed)
    clean = {g: [tuple(np.asarray(x, float) for x in t) for t in ts] for g, ts in groups.items()}
    clean = {g: [t for t in ts if len(t[0]) >= 2 and t[0].mean() > t[1].mean()] for g, ts in clean.items()}
    points, samples, out = {}, {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples: nothing lost in that draw
        for g, ts in clean.items():
            if not ts:
                out[g] = (float("nan"),) * 3
                continue
            points[g] = float(share(ts, [None] * len(ts)))
            samples[g] = share(ts, [rng.integers(0, len(t[0]), size=(n_resamples, len(t[0]))) for t in ts])
            out[g] = (points[g], *_interval(samples[g], confidence))
    if len(groups) == 2:
        first, second = list(groups)
        if first in points and second in points:
            diff = samples[first] - samples[second]
            out["difference"] = (points[first] - points[second], *_interval(diff, confidence), bootstrap_p(diff))
        else:
            out["difference"] = (float("nan"),) * 4
    return out


def seed_item_retention_ci(tasks, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """(retention, low, high) of a method trained with several seeds: the mean over tasks of the mean over seeds of
    mean(seed run) / mean(base), with a bootstrap that resamples items (the same draw for the base model and every
    seed of a task) and seeds (with replacement, the same draw for every task), so the interval holds the spread
    between training runs as well as between items. `tasks`: [(base items, seeds x items)]; tasks whose base mean
    is 0 are left out."""
    tasks = [(np.asarray(b, float), np.atleast_2d(np.asarray(c, float))) for b, c in tasks]
    tasks = [(b, c) for b, c in tasks if len(b) and b.mean() != 0]
    if not tasks:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([c.mean(1).mean() / b.mean() for b, c in tasks]))
    n_seeds = tasks[0][1].shape[0]
    if n_seeds < 2 or min(len(b) for b, _ in tasks) < 2:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    total = np.zeros(n_resamples)
    for b, c in tasks:
        idx = rng.integers(0, len(b), size=(n_resamples, len(b)))
        per_seed = c[:, idx].mean(-1)  # seeds x resamples
        drawn = np.take_along_axis(per_seed.T, seeds, axis=1).mean(1)  # the drawn seeds' mean, per resample
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = drawn / b[idx].mean(1)
        total += np.where(np.isfinite(ratio), ratio, np.nan)
    return (point, *_interval(total / len(tasks), confidence))
