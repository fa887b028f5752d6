"""Pruning strategies: which layers to remove, by name (`STRATEGIES`, imported lazily).

    block_influence  ShortGPT's BI = 1 - mean cos(layer input, layer output) over calibration tokens; removes the n
                     layers of lowest BI
    angular          Gromov et al.: the contiguous block of n layers whose input and output are closest in angle
                     at the last token (arccos(cos) / pi)
    reverse          the last n layers (Gromov et al.'s and many others' baseline); `keep_last` keeps the final layer
    sweep_score      the n layers whose single-layer removal kept the most (mean retention over chosen tasks) in a
                     finished `prunelab sweep`
    iterative        greedy: n rounds, each removing the layer whose removal (on top of those already removed)
                     keeps the most of a selection task's metric, run on the sweep machinery

Each is `select(n, context, settings)`, handed its own settings alone (`StrategyOptions.settings_for`).
`prunelab.strategies.select.LayerChooser` is the one selection path of `prunelab prune` and compare-strategies.
"""

from prunelab.strategies.base import Context, Selection, count_to_remove
from prunelab.strategies.registry import STRATEGIES

__all__ = ["STRATEGIES", "Context", "Selection", "count_to_remove"]
