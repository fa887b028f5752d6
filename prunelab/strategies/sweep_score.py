"""Sweep score: the n layers whose single-layer removal kept the most (mean retention over chosen tasks) in a
finished `prunelab sweep`.

Ranking layers on the items the pruned model is then tested on would select on the test data. Given the test
sample (`Context.test_items`, which prune and compare-strategies always give), the retentions are recomputed from
the sweep's stored per-item results without the test items, by construction; a ranking task with no item left is
refused, naming both samples.
"""

from prunelab.artifacts import ArtifactMissing, SweepArtifact
from prunelab.errors import ConfigError, DataError
from prunelab.results import Candidate
from prunelab.strategies.base import Context, Selection


def _held_out_table(sweep: SweepArtifact, tasks: list[str], test_items: dict[str, set[str]]):
    """The sweep's retention table on its items outside the test sample, and per task (items kept, left out)."""
    import pyarrow as pa

    from prunelab.report.retention import retention_table
    from prunelab.results import SCHEMA, ResultsStore

    rows = ResultsStore(sweep.root).read().to_pandas()
    tested = rows.apply(lambda r: r["item_id"] in test_items.get(r["task"], ()), axis=1) if len(rows) else []
    kept = rows[~tested] if len(rows) else rows
    config = {t["name"]: t for t in sweep.meta()["config"]["tasks"]}
    counts = {}
    for task in tasks:
        items = rows.loc[rows.task == task, "item_id"].unique()
        left_out = sum(i in test_items.get(task, ()) for i in items)
        counts[task] = {"items": int(len(items) - left_out), "left_out": int(left_out)}
        if left_out and left_out == len(items):
            spec = config.get(task, {})
            raise DataError(
                f"sweep_score would rank layers on the test items: every {task} item of the sweep in "
                f"{str(sweep.root)!r} (limit {spec.get('limit')}, seed {spec.get('seed')}) is in the test sample "
                f"of {task}; sweep on other items (another tasks.{task}.seed or a larger limit in the sweep), or "
                f"leave {task} out of sweep_tasks")
    table = pa.Table.from_pandas(kept, schema=SCHEMA, preserve_index=False)
    return retention_table(table, sweep.tasks()), counts


def select(n: int, ctx: Context, settings) -> Selection:
    sweep_dir, tasks = settings.sweep_dir, settings.sweep_tasks
    if not sweep_dir:
        raise ConfigError("strategy sweep_score needs sweep_dir (a finished `prunelab sweep` output directory)")
    sweep = SweepArtifact(sweep_dir)
    try:
        table = sweep.retention()
    except ArtifactMissing as exc:
        raise DataError(f"sweep_dir: {exc}") from None
    available = [c[: -len(":ci_low")] for c in table.columns if c.endswith(":ci_low") and not c.endswith("_mean:ci_low")]
    tasks = tasks or available
    missing = [t for t in tasks if t not in available]
    if missing:
        raise ConfigError(f"sweep_tasks {missing} are not in the sweep {sweep_dir!r}; it has: {', '.join(available)}")
    details = {"tasks": tasks, "sweep_dir": str(sweep_dir)}
    if ctx.test_items is not None:
        table, details["held_out"] = _held_out_table(sweep, tasks, ctx.test_items)
    rows = {Candidate.parse(c).single_layer: c for c in table.index if Candidate.parse(c).single_layer is not None}
    if len(rows) < n:
        raise DataError(f"the sweep in {sweep_dir!r} removed {len(rows)} single layers; {n} are needed")
    if max(rows) >= ctx.num_layers:
        raise DataError(f"the sweep in {sweep_dir!r} has layer {max(rows)}; this model has {ctx.num_layers} layers")
    score = {layer: float(table.loc[c, tasks].mean()) for layer, c in rows.items()}
    removed = sorted(sorted(score, key=lambda layer: -score[layer])[:n])
    return Selection("sweep_score", removed, {str(layer): v for layer, v in sorted(score.items())}, details)
