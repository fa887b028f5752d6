"""Retention intervals and the paired test against hand-checkable cases."""

import numpy as np
import pytest

from prunelab.stats import paired_p_value, retention_ci


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
