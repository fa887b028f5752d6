"""Sweep score: the n layers whose single-layer removal kept the most (mean retention over chosen tasks) in a
finished `prunelab sweep`."""

from prunelab.artifacts import ArtifactMissing, SweepArtifact
from prunelab.errors import ConfigError, DataError
from prunelab.results import Candidate
from prunelab.strategies.base import Context, Selection


def select(n: int, ctx: Context) -> Selection:
    sweep_dir, tasks = ctx.options.sweep_dir, ctx.options.sweep_tasks
    if not sweep_dir:
        raise ConfigError("strategy sweep_score needs sweep_dir (a finished `prunelab sweep` output directory)")
    try:
        table = SweepArtifact(sweep_dir).retention()
    except ArtifactMissing as exc:
        raise DataError(f"sweep_dir: {exc}") from None
    available = [c[: -len(":ci_low")] for c in table.columns if c.endswith(":ci_low") and not c.endswith("_mean:ci_low")]
    tasks = tasks or available
    missing = [t for t in tasks if t not in available]
    if missing:
        raise ConfigError(f"sweep_tasks {missing} are not in the sweep {sweep_dir!r}; it has: {', '.join(available)}")
    rows = {Candidate.parse(c).single_layer: c for c in table.index if Candidate.parse(c).single_layer is not None}
    if len(rows) < n:
        raise DataError(f"the sweep in {sweep_dir!r} removed {len(rows)} single layers; {n} are needed")
    if max(rows) >= ctx.num_layers:
        raise DataError(f"the sweep in {sweep_dir!r} has layer {max(rows)}; this model has {ctx.num_layers} layers")
    score = {layer: float(table.loc[c, tasks].mean()) for layer, c in rows.items()}
    removed = sorted(sorted(score, key=lambda layer: -score[layer])[:n])
    return Selection("sweep_score", removed, {str(layer): v for layer, v in sorted(score.items())},
                     {"tasks": tasks, "sweep_dir": str(sweep_dir)})
