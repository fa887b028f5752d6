"""The report's findings: each verdict follows from the numbers it states (significant, not significant, does not
hold), on tables built to sit on each side of the line."""

import pandas as pd
import pytest

from prunelab.report import findings

TASKS = {"arithmetic": {"kind": "classification", "label": "arithmetic"},
         "arc_easy": {"kind": "classification", "label": "arc_easy"},
         "gsm8k": {"kind": "generative", "label": "gsm8k"}}


def with_interval(column: str, values: list[float], width: float, p: list[float]) -> dict:
    return {column: values, f"{column}:ci_low": [v - width for v in values],
            f"{column}:ci_high": [v + width for v in values], f"{column}:p_value": p}


def sweep_table(arithmetic_p: list[float], generative: list[float]) -> pd.DataFrame:
    n = len(arithmetic_p)
    data = {**with_interval("arithmetic", [0.9 - 0.4 * (p < 0.05) for p in arithmetic_p], 0.1, arithmetic_p),
            **with_interval("arc_easy", [0.95] * n, 0.1, [0.6] * n),
            **with_interval("gsm8k", generative, 0.2, [0.5] * n),
            **with_interval("classification_mean", [0.9] * n, 0.1, [0.3] * n),
            **with_interval("generative_mean", generative, 0.2, [0.5] * n)}
    return pd.DataFrame(data, index=[f"drop-{i}" for i in range(n)])


def test_layer_sensitivity_names_the_layers_with_a_significant_drop():
    found = findings.layer_sensitivity(sweep_table([0.5, 0.01, 0.4, 0.02], [0.3, 0.2, 0.4, 0.1]), TASKS)
    assert found.verdict == findings.HOLDS
    assert "arithmetic: a significant drop at 2 of 4 layers (1, 3); the worst, layer 1, keeps 0.500" in found.evidence[0]
    assert "arc_easy: a significant drop at 0 of 4 layers (none)" in found.evidence[1]
    # no significant drop anywhere: the claim is not shown at this size
    flat = findings.layer_sensitivity(sweep_table([0.5, 0.3, 0.4, 0.2], [0.3, 0.2, 0.4, 0.1]), TASKS)
    assert flat.verdict == findings.NOT_SIGNIFICANT
    assert findings.layer_sensitivity(None, {}).verdict == findings.NOT_MEASURED


@pytest.mark.parametrize("gaps, verdict", [
    ({"bi@0.25": (0.7, 0.5, 0.9), "rev@0.25": (0.6, 0.1, 0.9)}, findings.HOLDS),
    ({"bi@0.25": (0.7, 0.5, 0.9), "rev@0.25": (0.2, -0.1, 0.5)}, f"{findings.PARTLY}: 1 of 2 pruned models"),
    ({"bi@0.25": (0.2, -0.1, 0.5), "rev@0.25": (0.1, -0.2, 0.4)}, findings.NOT_SIGNIFICANT),
    ({"bi@0.25": (-0.2, -0.5, 0.1), "rev@0.25": (-0.1, -0.2, 0.1)}, findings.DOES_NOT_HOLD),
])
def test_classification_over_generative_holds_only_where_the_interval_of_the_gap_excludes_zero(gaps, verdict):
    strategies = pd.DataFrame({"strategy": ["bi", "rev"], "ratio": [0.25, 0.25], "removed": ["1 2", "3 4"],
                               **with_interval("classification_mean", [0.8, 0.7], 0.1, [0.01, 0.01]),
                               **with_interval("generative_mean", [0.1, 0.5], 0.1, [0.01, 0.2])})
    found = findings.classification_over_generative(strategies, gaps)
    assert found.verdict == verdict
    gap, low, high = gaps["bi@0.25"]
    assert found.evidence[0] == (f"bi@0.25 (layers 1 2 removed): classification 0.800 [0.70, 0.90], generative "
                                 f"0.100 [0.00, 0.20]; difference {gap:.3f} [{low:.2f}, {high:.2f}]"
                                 + (" (significant)" if low > 0 else ""))


@pytest.mark.parametrize("difference, p, verdict", [
    (0.2, 0.01, findings.HOLDS), (0.2, 0.3, findings.NOT_SIGNIFICANT), (-0.2, 0.01, findings.DOES_NOT_HOLD)])
def test_sgr_over_reference_needs_a_significant_paired_difference(difference, p, verdict):
    frame = pd.DataFrame({"task": ["generative mean"], "SGR": [0.5], "ref": [0.5 - difference],
                          "SGR - ref": [difference], "ci_low": [difference - 0.1], "ci_high": [difference + 0.1],
                          "p_value": [p], "items": [64]})
    found = findings.sgr_over_reference({"bi@0.25": frame})
    assert found.verdict == verdict and f"p {p:.3f}" in found.evidence[0]
    assert findings.sgr_over_reference({}).verdict == findings.NOT_MEASURED


@pytest.mark.parametrize("p_over_pruned, verdict", [(0.01, findings.SIGNIFICANT_LEAD), (0.4, findings.NOT_SIGNIFICANT)])
def test_best_method_names_the_highest_generative_retention_and_its_paired_gains(p_over_pruned, verdict):
    methods = pd.DataFrame({"target": ["bi@0.25"] * 4, "method": ["pruned", "SFT sgr", "KD", "linear"],
                            "_generative": [0.0, 0.1, 0.3, float("nan")]})
    labels = {"bi@0.25": {"pruned": "bi@0.25", "SFT sgr": "bi@0.25-sgr", "KD": "bi@0.25-kd", "linear": "bi@0.25-lin"}}
    against = pd.DataFrame({"model": ["bi@0.25-kd", "bi@0.25-kd", "bi@0.25-kd"],
                            "against": ["bi@0.25", "bi@0.25-sgr", "bi@0.25"],
                            "task": ["generative mean", "generative mean", "classification mean"],
                            "difference": [0.3, 0.2, -0.5], "ci_low": [0.1, -0.1, -0.6], "ci_high": [0.5, 0.4, -0.4],
                            "p_value": [p_over_pruned, 0.3, 0.001]})
    found = findings.best_method(methods, {"bi@0.25": against}, labels)
    assert found.verdict == verdict  # the classification difference (p 0.001) is not the claim's
    assert found.evidence == [f"bi@0.25: KD keeps 0.300 of the generative mean; gain over pruned 0.300 [0.10, 0.50], "
                              f"p {p_over_pruned:.3f}; gain over SFT sgr 0.200 [-0.10, 0.40], p 0.300"]
    one_method = methods[methods["method"].isin(["pruned", "SFT sgr"])]
    assert findings.best_method(one_method, {"bi@0.25": against}, labels) is None  # nothing to choose between
