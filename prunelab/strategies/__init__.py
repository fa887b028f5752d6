"""Pruning strategies: which layers to remove, by name.

    block_influence  ShortGPT's BI = 1 - mean cos(layer input, layer output) over calibration tokens; removes the n
                     layers of lowest BI                                              (prunelab.strategies.similarity)
    angular          Gromov et al.: the contiguous block of n layers whose input and output are closest in angle
                     at the last token (arccos(cos) / pi)                            (prunelab.strategies.similarity)
    reverse          the last n layers (Gromov et al.'s and many others' baseline); `keep_last` keeps the final layer
    sweep_score      the n layers whose single-layer removal kept the most (mean retention over chosen tasks) in a
                     finished `prunelab sweep`
    iterative        greedy: n rounds, each removing the layer whose removal (on top of those already removed)
                     keeps the most of a selection task's metric            (prunelab.strategies.greedy; needs Ray)
"""

from dataclasses import dataclass, field
from pathlib import Path

from prunelab.errors import ConfigError, DataError

STRATEGIES = ("block_influence", "angular", "reverse", "sweep_score", "iterative")


@dataclass
class Selection:
    strategy: str
    removed: list[int]
    scores: dict[str, float]  # per layer ("12") or, for angular, per block ("12-15"); what the choice was made on
    details: dict = field(default_factory=dict)


def count_to_remove(ratio: float, num_layers: int) -> int:
    """round(ratio x layers), which must remove at least one layer and keep at least one."""
    if not 0 < ratio < 1:
        raise ConfigError(f"--ratio {ratio} is outside (0, 1): it is the fraction of the {num_layers} layers to remove")
    n = round(ratio * num_layers)
    if n == 0:
        raise ConfigError(f"--ratio {ratio} of {num_layers} layers rounds to 0 layers; the smallest useful ratio is "
                          f"{0.5 / num_layers:.3f}")
    if n >= num_layers:
        raise ConfigError(f"--ratio {ratio} of {num_layers} layers rounds to all {n} of them; at least one must remain")
    return n


def _check_name(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")


def select_layers(strategy: str, n: int, num_layers: int, *, model=None, tokenizer=None, texts=None,
                  keep_last: bool = False, sweep_dir: str | None = None, tasks: list[str] | None = None,
                  max_length: int = 512, batch_size: int = 8, cache: dict | None = None) -> Selection:
    """The `n` layers `strategy` removes from a model of `num_layers` layers, with the scores behind the choice.
    `cache` (a dict kept by the caller) holds the calibration pass, so several ratios cost one pass."""
    _check_name(strategy)
    if strategy == "iterative":
        raise ConfigError("strategy iterative runs rounds of evaluations: use prunelab.strategies.greedy")
    if strategy == "reverse":
        last = num_layers - 1 if keep_last else num_layers
        removed = list(range(last - n, last))
        return Selection(strategy, removed, {str(l): float(l) for l in range(num_layers)}, {"keep_last": keep_last})
    if strategy == "sweep_score":
        return _from_sweep(n, num_layers, sweep_dir, tasks)
    if not texts:
        raise DataError(f"strategy {strategy} needs calibration texts")
    from prunelab.strategies.similarity import angular_distances, calibration_pass

    cache = {} if cache is None else cache
    if "calibration_pass" not in cache:  # one pass serves both strategies and every ratio
        cache["calibration_pass"] = calibration_pass(model, tokenizer, texts, max_length, batch_size)
    bi, last_states = cache["calibration_pass"]
    if strategy == "block_influence":
        removed = sorted(sorted(range(num_layers), key=lambda l: bi[l])[:n])
        return Selection(strategy, removed, {str(l): v for l, v in enumerate(bi)})
    distances = angular_distances(last_states, n)
    start = min(range(len(distances)), key=lambda l: distances[l])
    return Selection(strategy, list(range(start, start + n)),
                     {f"{l}-{l + n - 1}": d for l, d in enumerate(distances)}, {"block_size": n})


def _from_sweep(n: int, num_layers: int, sweep_dir: str | None, tasks: list[str] | None) -> Selection:
    import pandas as pd

    if not sweep_dir:
        raise ConfigError("strategy sweep_score needs --from-sweep DIR (a finished `prunelab sweep` output directory)")
    path = Path(sweep_dir) / "retention.csv"
    if not path.exists():
        raise DataError(f"{str(path)!r} does not exist; run `prunelab sweep` first (it writes retention.csv)")
    table = pd.read_csv(path, index_col=0)
    available = [c[: -len(":ci_low")] for c in table.columns if c.endswith(":ci_low") and not c.endswith("_mean:ci_low")]
    tasks = tasks or available
    missing = [t for t in tasks if t not in available]
    if missing:
        raise ConfigError(f"tasks {missing} are not in the sweep {sweep_dir!r}; it has: {', '.join(available)}")
    rows = {int(c.split("-")[1]): c for c in table.index if c.startswith("drop-") and "+" not in c}
    if len(rows) < n:
        raise DataError(f"the sweep in {sweep_dir!r} removed {len(rows)} single layers; {n} are needed")
    if max(rows) >= num_layers:
        raise DataError(f"the sweep in {sweep_dir!r} has layer {max(rows)}; this model has {num_layers} layers")
    score = {l: float(table.loc[c, tasks].mean()) for l, c in rows.items()}
    removed = sorted(sorted(score, key=lambda l: -score[l])[:n])
    return Selection("sweep_score", removed, {str(l): v for l, v in sorted(score.items())},
                     {"tasks": tasks, "sweep_dir": str(sweep_dir)})
