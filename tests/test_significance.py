"""Multiplicity, chance floors, power and equivalence, each against a reference implementation (scipy,
statsmodels), and what `--check` and a finished run say about a size that cannot be tested."""

import logging

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from prunelab.config import SweepConfig
from prunelab.report.power import check_lines, warn_untestable
from prunelab.significance import (
    adjust,
    chance_floor,
    detectable_drop,
    drop_power,
    equivalence_p,
    smallest_p,
    successes_needed,
)
from prunelab.stats import paired_p_value


def test_adjustment_is_statsmodels_over_the_comparisons_made():
    p = [0.01, 0.04, float("nan"), 0.03, 0.2]
    made = [0.01, 0.04, 0.03, 0.2]
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        got = adjust(p, ours)
        assert np.isnan(got[2])  # a comparison not made is not in the family
        assert np.delete(got, 2) == pytest.approx(multipletests(made, method=theirs)[1])
    with pytest.raises(ValueError, match="allowed: holm, bh"):
        adjust(p, "bonferroni")


def test_the_paired_test_on_binary_items_is_exact_mcnemar():
    rng = np.random.default_rng(0)
    for _ in range(20):
        base = rng.integers(0, 2, 80)
        cand = np.where(rng.random(80) < 0.3, 1 - base, base)
        table = [[np.sum((base == 1) & (cand == 1)), np.sum((base == 1) & (cand == 0))],
                 [np.sum((base == 0) & (cand == 1)), np.sum((base == 0) & (cand == 0))]]
        assert paired_p_value(base, cand) == pytest.approx(mcnemar(table, exact=True).pvalue)


def test_the_smallest_p_and_the_successes_a_family_needs():
    for k in range(1, 12):
        assert smallest_p(k) == pytest.approx(stats.binomtest(k, k, 0.5).pvalue)
    # k <= 5 can never reach 0.05 in one test; over 24 layers (Holm's first step at 0.05 / 24) it takes 10
    assert successes_needed(1) == 6 and successes_needed(24) == 10
    assert np.isnan(detectable_drop(5)) and np.isnan(detectable_drop(9, family=24))


def test_the_stated_power_is_the_rejection_rate_of_scipys_exact_test():
    rng = np.random.default_rng(1)
    for solved, family in ((20, 1), (40, 24)):
        drop = detectable_drop(solved, family)
        losses = rng.binomial(solved, drop, 4000)  # each solved item lost with probability `drop`, none gained
        rejected = [stats.binomtest(int(k), int(k), 0.5).pvalue < 0.05 / family if k else False for k in losses]
        assert np.mean(rejected) == pytest.approx(0.8, abs=0.03)
        assert drop_power(solved, drop * 0.8, family) < 0.8 <= drop_power(solved, drop, family) + 1e-9


def test_equivalence_is_two_one_sided_t_tests():
    rng = np.random.default_rng(2)
    d = rng.normal(0.01, 0.1, 60)
    margin = 0.05
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    assert equivalence_p(d, margin) == pytest.approx(max(lower, upper))
    assert equivalence_p(d + 0.2, margin) > 0.5


def test_the_chance_floor_is_the_best_constant_answer():
    golds = [1, 1, 1, 0, 2, 3, 1, 0]
    assert chance_floor(golds, [4] * 8) == pytest.approx(4 / 8)  # always the second choice
    assert chance_floor([0, 1], [2, 2]) == pytest.approx(0.5)
    assert chance_floor([0, 1, 2, 3], [10] * 4) == pytest.approx(0.25)  # constant answer beats 1/10


def test_a_size_that_cannot_be_tested_is_said_before_and_after_the_run(caplog):
    config = SweepConfig.model_validate({
        "name": "s", "model": {"name": "m"}, "sweep": {"layers": list(range(24))}, "output_dir": "o",
        "tasks": [{"name": "arithmetic", "limit": 64}, {"name": "gsm8k", "limit": 8}, {"name": "xsum", "limit": 8}]})
    lines = check_lines(config)
    assert lines[0].startswith("arithmetic: 64 items, tested over 24 layers: a drop can be significant only if the "
                               "base model solves 10 or more; smallest drop detectable with 80% power if it solves "
                               f"all {detectable_drop(64, 24):.2f}")
    assert "solves all cannot be tested" in lines[1]  # 8 items < the 10 solved items needed
    assert "continuous metric" in lines[2]
    with caplog.at_level(logging.WARNING):
        messages = warn_untestable({"gsm8k": np.array([1.0] + [0.0] * 7), "arithmetic": np.ones(64)}, 24)
    assert len(messages) == 1 and messages[0] in caplog.text
    assert messages[0].startswith("gsm8k: the base model solves 1 of 8 items; over 24 candidates no drop can reach "
                                  "p < 0.05 after adjustment (that needs 10 solved items); at its rate (1 of 8) that "
                                  "takes about 80 items: raise gsm8k's limit")
    # within a pipeline run (each_warning_once), a limit already said is not logged again; another one is
    from prunelab.report.power import each_warning_once

    caplog.clear()
    with caplog.at_level(logging.WARNING), each_warning_once():
        for _ in range(3):
            again = warn_untestable({"gsm8k": np.array([1.0] + [0.0] * 7)}, 24)
        other = warn_untestable({"gsm8k": np.array([1.0] + [0.0] * 7)}, 4)
    assert again == messages and caplog.text.count("gsm8k: the base model solves 1 of 8") == 2
    assert other[0] in caplog.text


def test_a_pipeline_says_what_it_cannot_test_once_the_base_model_is_scored(caplog):
    from prunelab.config import load_config
    from prunelab.report.power import pipeline_warnings

    layers = ", ".join(str(i) for i in range(24))
    config = load_config("configs/repro/qwen-coder.yaml", [f"sweep.sweep.layers=[{layers}]"])
    base = {"arithmetic": np.array([1.0] * 60 + [0.0] * 4), "gsm8k": np.array([1.0] * 4 + [0.0] * 28),
            "humaneval": np.array([1.0] * 20 + [0.0] * 44)}
    with caplog.at_level(logging.WARNING):
        messages = pipeline_warnings(config, base)
    assert messages[0].startswith("gsm8k: the base model solves 4 of 32 items; over 3 candidates")  # the strategies
    sweep = [m for m in messages if m.startswith("sweep ")]
    assert [m.split(":")[0] for m in sweep] == ["sweep gsm8k", "sweep humaneval"]  # 8 items each in the sweep
    assert "raise the sweep's gsm8k limit to about 80" in sweep[0]
    assert "raise the sweep's humaneval limit to about 32" in sweep[1]
    assert all(m in caplog.text for m in messages)


def test_a_comparison_listed_both_ways_counts_once_in_its_family():
    import pandas as pd

    from prunelab.report.retention import adjust_against

    frame = pd.DataFrame({"model": ["A", "B", "pruned", "A"], "against": ["pruned", "pruned", "A", "pruned"],
                          "task": ["generative mean"] * 3 + ["classification mean"],
                          "p_value": [0.01, 0.02, 0.01, 0.04]})
    got = adjust_against(frame)
    # the generative row's family is {A-pruned, B-pruned}: Holm over 2, not 3
    assert got["p_adj"].tolist() == pytest.approx([0.02, 0.02, 0.02, 0.04])
