"""What a strategy returns, how a ratio becomes a layer count, and what a strategy may read (`Context`)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prunelab.errors import ConfigError


@dataclass
class Selection:
    strategy: str
    removed: list[int]
    scores: dict[str, float]  # per layer ("12") or, for angular, per block ("12-15"); what the choice was made on
    details: dict = field(default_factory=dict)


def count_to_remove(ratio: float, num_layers: int) -> int:
    """round(ratio x layers), which must remove at least one layer and keep at least one."""
    if not 0 < ratio < 1:
        raise ConfigError(f"ratio {ratio} is outside (0, 1): it is the fraction of the {num_layers} layers to remove")
    n = round(ratio * num_layers)
    if n == 0:
        raise ConfigError(f"ratio {ratio} of {num_layers} layers rounds to 0 layers; the smallest useful ratio is "
                          f"{0.5 / num_layers:.3f}")
    if n >= num_layers:
        raise ConfigError(f"ratio {ratio} of {num_layers} layers rounds to all {n} of them; at least one must remain")
    return n


@dataclass
class Context:
    """What strategies read besides their own settings (`select(n, context, settings)`). The expensive parts are
    computed once, on first use, and shared by every strategy and ratio of a run: `calibration()` is (block influence
    per layer, last-token states [texts, layers + 1, hidden]) from one pass, made with the calibration settings of
    the strategies that need it; `greedy(n)` runs (or resumes) n greedy rounds and returns their Selection."""

    num_layers: int
    calibration: Callable[[], tuple[list[float], Any]] | None = None
    greedy: Callable[[int], Selection] | None = None
    # task -> the ids of its test items (what the pruned model will be evaluated on): strategies that rank layers
    # by scores on items (sweep_score) leave these out; None: no test sample was given
    test_items: dict[str, set[str]] | None = None
