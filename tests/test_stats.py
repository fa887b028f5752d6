"""Retention intervals and the paired test against hand-checkable cases."""

import numpy as np
import pytest

from prunelab.stats import (
    mean_paired_p_value,
    mean_retention_ci,
    paired_p_value,
    retention_ci,
    retention_difference_ci,
    retention_gap_ci,
)


def test_retention_point_and_interval():
    base = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 1] * 5)
    cand = base.copy()
    cand[:8] = 0  # 7 of the 40 correct answers lost
    point, low, high = retention_ci(base, cand)
    assert point == pytest.approx(33 / 40)
    assert low < point < high <= 1.0
    assert retention_ci(base, base)[1:] == (1.0, 1.0)


def test_exact_sign_flip_p_value():
    # 4 items changed, all in one direction: exact two-sided p = 2 / 2**4 over the sign flips of the 4 non-zero diffs
    base = np.array([1, 1, 1, 1] + [0, 1] * 8)
    cand = np.array([0, 0, 0, 0] + [0, 1] * 8)
    assert paired_p_value(base, cand) == pytest.approx(2 / 16)
    assert paired_p_value(base, base) == 1.0


def test_degenerate_inputs():
    assert np.isnan(retention_ci([0, 0, 0], [1, 0, 1])[0])  # base mean 0: retention undefined
    point, low, high = retention_ci([1.0], [0.5])
    assert point == 0.5 and np.isnan(low) and np.isnan(high)


def test_mean_retention_over_tasks():
    rng = np.random.default_rng(0)
    a_base = rng.integers(0, 2, 200).astype(float)
    a_cand = a_base * (rng.random(200) > 0.3)  # loses ~30% of the correct answers
    b_base = rng.random(150) + 0.5
    b_cand = b_base * 0.9  # a continuous metric, 90% kept on every item
    point, low, high = mean_retention_ci([(a_base, a_cand), (b_base, b_cand)])
    assert point == pytest.approx((a_cand.mean() / a_base.mean() + 0.9) / 2)
    assert low < point < high
    # the interval of a mean of two tasks is narrower than the noisier task's own
    _, a_low, a_high = retention_ci(a_base, a_cand)
    assert high - low < a_high - a_low
    assert mean_paired_p_value([(a_base, a_cand), (b_base, b_cand)]) < 0.001
    assert mean_paired_p_value([(a_base, a_base), (b_base, b_base)]) == 1.0
    # tasks whose base model scores 0 have no retention and are left out
    assert mean_retention_ci([(np.zeros(5), np.ones(5)), (b_base, b_cand)])[0] == pytest.approx(0.9)


def test_mean_paired_p_value_has_no_signal_under_the_null():
    rng = np.random.default_rng(1)
    ps = []
    for seed in range(40):
        base = rng.integers(0, 2, 60).astype(float)
        cand = rng.integers(0, 2, 60).astype(float)  # the same distribution: no true difference
        ps.append(mean_paired_p_value([(base, cand)], n_resamples=400, seed=seed))
    assert 0.25 < np.mean(ps) < 0.75  # roughly uniform p-values


def test_rare_successes_give_an_interval_or_none_never_inf():
    # 16 items, the base model right on 2: a resample often has no success, so retention is often undefined
    base = np.array([1, 1] + [0] * 14, float)
    cand = np.array([1, 0, 1] + [0] * 13, float)
    point, low, high = retention_ci(base, cand)
    assert point == 1.0 and np.isnan(low) and np.isnan(high)
    # enough successes: a finite interval around the point
    base = np.array([1] * 10 + [0] * 6, float)
    cand = np.array([1] * 8 + [0] * 8, float)
    point, low, high = retention_ci(base, cand)
    assert np.isfinite([low, high]).all() and low <= point <= high
    point, low, high = mean_retention_ci([(base, cand), (np.array([1, 1] + [0] * 14, float), np.zeros(16))])
    assert point == pytest.approx(0.4) and np.isnan(low) and np.isnan(high)  # the rare task leaves it undefined


def test_difference_of_two_candidates_is_paired_over_the_same_items():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 2, 80).astype(float)
    b = base * (rng.random(80) > 0.6)  # keeps ~40% of the base model's successes
    a = np.maximum(b, base * (rng.random(80) > 0.5))  # b's successes and ~half of the rest: a >= b on every item
    point, low, high = retention_difference_ci([(base, a, b)])
    assert point == pytest.approx(retention_ci(base, a)[0] - retention_ci(base, b)[0])
    assert 0 < low < point < high
    # paired: far narrower than subtracting two independent intervals would suggest
    _, a_low, a_high = retention_ci(base, a)
    _, b_low, b_high = retention_ci(base, b)
    assert high - low < (a_high - a_low) + (b_high - b_low)
    assert retention_difference_ci([(base, b, a)])[0] == pytest.approx(-point)
    assert retention_difference_ci([(base, a, a)]) == (0.0, 0.0, 0.0)
    # over tasks: the mean of per-task differences; a task with base mean 0 is left out
    two = retention_difference_ci([(base, a, b), (np.zeros(10), np.ones(10), np.zeros(10))])
    assert two[0] == pytest.approx(point)


def test_gap_between_two_groups_of_tasks():
    rng = np.random.default_rng(3)
    cls_base = rng.integers(0, 2, 100).astype(float)
    cls_cand = cls_base * (rng.random(100) > 0.1)  # keeps ~90%
    gen_base = rng.integers(0, 2, 60).astype(float)
    gen_cand = gen_base * (rng.random(60) > 0.7)  # keeps ~30%
    gap, low, high = retention_gap_ci([(cls_base, cls_cand)], [(gen_base, gen_cand)])
    assert gap == pytest.approx(cls_cand.mean() / cls_base.mean() - gen_cand.mean() / gen_base.mean())
    assert 0 < low < gap < high
    gap, low, high = retention_gap_ci([(cls_base, cls_cand)], [(np.array([1.0]), np.array([1.0]))])
    assert np.isnan(low) and np.isnan(high)  # one item: no interval
