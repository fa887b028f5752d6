"""The report page's interactive figures, in a browser: under the mouse each point shows the retention its table
holds, the interval and the items it rests on; a legend entry hides its series; the page draws them with the
plotly.js it carries (no network), and renders byte for byte the same for the same tables."""

import re

import numpy as np
import pandas as pd
import pytest
from browser import browse, hovered, needs_chromium

from prunelab.report import interactive, plots
from prunelab.report.page import Page


def retention(layers: int = 4, seed: int = 0) -> pd.DataFrame:
    """A sweep's retention table: base, then drop-0..drop-N, two tasks with intervals and item counts."""
    rng = np.random.default_rng(seed)
    rows = {}
    for name in ["base", *[f"drop-{i}" for i in range(layers)]]:
        row = {}
        for task, items in (("arc", 40), ("gsm", 16)):
            value = 1.0 if name == "base" else float(rng.uniform(0.2, 1.1))
            low, high = (1.0, 1.0) if name == "base" else (value - rng.uniform(0.01, 0.2), value + rng.uniform(0.01, 0.2))
            row |= {task: value, f"{task}:ci_low": low, f"{task}:ci_high": high, f"{task}:p_value": 0.01,
                    f"{task}:items": items}
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["drop-2", ["gsm", "gsm:ci_low", "gsm:ci_high"]] = float("nan")  # a base model scoring 0 has none
    return table


def page_with_figure_1(root, table: pd.DataFrame) -> Page:
    legend = {"arc": "ARC (acc_norm)", "gsm": "GSM8K (exact_match)"}
    page = Page(root, "figures")
    page.section("Figure 1")
    plots.layer_sensitivity(table, list(legend), legend, root / "f1.png", "tiny")
    page.figure(root / "f1.png", "retention per layer", interactive=interactive.layer_sensitivity(table, list(legend),
                                                                                                   legend))
    return page


@needs_chromium
def test_each_point_shows_its_value_interval_and_items_and_a_legend_entry_hides_its_task(tmp_path):
    table = retention()
    page = tmp_path / "report.html"
    page.write_text(page_with_figure_1(tmp_path, table).html())
    labels, toggled, body = hovered(page, tmp_path)
    points = labels["figure-f1"]
    assert body["data-interactive"] == body["data-interactive-drawn"] == "1"
    expected = [(task, layer) for task in ("ARC (acc_norm)", "GSM8K (exact_match)") for layer in range(4)
                if not (task.startswith("GSM") and layer == 2)]  # no retention, no point
    assert [(name, i) for name, i, _ in points] == expected
    for name, layer, text in points:
        task = "arc" if name.startswith("ARC") else "gsm"
        row = table.loc[f"drop-{layer}"]
        assert (f"layer {layer} removed" in text and f"retention {row[task]:.3f} [{row[f'{task}:ci_low']:.2f}, "
                f"{row[f'{task}:ci_high']:.2f}]" in text and text.endswith(f"{int(row[f'{task}:items'])} items")), text
    assert toggled == {"figure-f1": "legendonly"}  # the click hid ARC; GSM8K still shows


@needs_chromium
def test_the_page_needs_no_network_and_renders_the_same_bytes_twice(tmp_path):
    table = retention()
    first = page_with_figure_1(tmp_path / "a", table).html()
    assert first == page_with_figure_1(tmp_path / "a", table).html()
    assert not re.search(r"<script[^>]+src=", first)
    page = tmp_path / "report.html"
    page.write_text(first)
    dom = browse(page, tmp_path)  # `browse` gives Chromium no network
    assert 'data-interactive-drawn="1"' in dom.stdout and "Uncaught" not in dom.stderr


def test_the_strategy_and_method_figures_carry_every_row_of_their_tables():
    """Each strategy (a series, toggled together across the task-group panels) has one point per ratio, at its
    table's value; with one ratio, the values lie on x (a dot plot)."""
    table = pd.DataFrame({"strategy": ["angular", "angular", "reverse", "reverse"], "ratio": [0.25, 0.5, 0.25, 0.5],
                          "removed": ["3 4", "1 2 3 4", "6 7", "4 5 6 7"]})
    for group, values in (("classification_mean", [0.9, 0.7, 0.8, 0.6]), ("generative_mean", [0.5, 0.1, 0.4, 0.0])):
        table[group] = values
        table[f"{group}:ci_low"], table[f"{group}:ci_high"] = table[group] - 0.05, table[group] + 0.05
        table[f"{group}:items"] = 64
    fig = interactive.strategies(table, ["classification_mean", "generative_mean"])
    series = [(t.name, t.legendgroup, list(t.x), list(t.y)) for t in fig.data]
    assert series == [("angular", "angular", [0.25, 0.5], [0.9, 0.7]), ("reverse", "reverse", [0.25, 0.5], [0.8, 0.6]),
                      ("angular", "angular", [0.25, 0.5], [0.5, 0.1]), ("reverse", "reverse", [0.25, 0.5], [0.4, 0.0])]
    assert [t.showlegend for t in fig.data] == [True, True, False, False]
    assert list(fig.data[2].error_y.arrayminus) == pytest.approx([0.05, 0.05])
    one = interactive.strategies(table[table.ratio == 0.25], ["classification_mean", "generative_mean"])
    assert [(list(t.x), list(t.y)) for t in one.data][:2] == [([0.9], ["angular"]), ([0.8], ["reverse"])]
