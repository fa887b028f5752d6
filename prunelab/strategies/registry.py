"""Strategies by name, imported lazily. Each entry says what the strategy needs before it can choose, and which
config fields are its settings (its knobs: the strategy reads these alone, and a knob set for a strategy that does
not run is refused, naming the strategies that own it):

    needs        calibration  one batched pass over calibration texts (hidden states of every layer)
                 sweep        a finished `prunelab sweep` (its retention.csv)
                 selection    evaluations on a selection split, run as rounds on the sweep machinery
                 (empty)      nothing but the number of layers
    settings     fields of `prunelab.config.StrategyOptions`

A new strategy is one module with `select(n, context, settings) -> Selection` plus one line here (and, if it has a
knob, a field of `StrategyOptions` named in its `settings`).
"""

from dataclasses import dataclass

from prunelab.registry import Entry, Registry


@dataclass(frozen=True)
class StrategyEntry(Entry):
    needs: str = ""  # calibration, sweep, selection, or nothing
    settings: tuple[str, ...] = ()  # its knobs: fields of StrategyOptions


STRATEGIES = Registry("strategy", {
    "block_influence": StrategyEntry("prunelab.strategies.block_influence:select", "calibration", ("calibration",)),
    "angular": StrategyEntry("prunelab.strategies.angular:select", "calibration", ("calibration",)),
    "reverse": StrategyEntry("prunelab.strategies.reverse:select", "", ("keep_last",)),
    "sweep_score": StrategyEntry("prunelab.strategies.sweep_score:select", "sweep", ("sweep_dir", "sweep_tasks")),
    "iterative": StrategyEntry("prunelab.strategies.iterative:select", "selection", ("selection",)),
})


def owners(setting: str) -> tuple[str, ...]:
    """The strategies that read config field `setting`."""
    return tuple(n for n, e in STRATEGIES.entries.items() if setting in e.settings)
