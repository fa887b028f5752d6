"""Strategies by name, imported lazily. An entry's kind says what the strategy needs before it can choose:

    calibration  one batched pass over calibration texts (hidden states of every layer)
    sweep        a finished `prunelab sweep` (its retention.csv)
    selection    evaluations on a selection split, run as rounds on the sweep machinery
    (empty)      nothing but the number of layers

A new strategy is one module with `select(n, context) -> Selection` plus one line here.
"""

from prunelab.registry import Entry, Registry

STRATEGIES = Registry("strategy", {
    "block_influence": Entry("prunelab.strategies.block_influence:select", "calibration"),
    "angular": Entry("prunelab.strategies.angular:select", "calibration"),
    "reverse": Entry("prunelab.strategies.reverse:select", ""),
    "sweep_score": Entry("prunelab.strategies.sweep_score:select", "sweep"),
    "iterative": Entry("prunelab.strategies.iterative:select", "selection"),
})
