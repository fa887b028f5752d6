"""`prunelab pipeline`: the stages of `plan.py` run in order, each reused when its directory holds a verified
artifact of the same key (`cache.py`), then the report (`prunelab.report.page`).

    run_pipeline(config, Runners(...))   # the CLI and jobs/pipeline.py build the runners (Ray or this process)

Progress: one line per stage (reused, or computing and why) and the stage's own progress bars; at the end a summary
of what was reused and what was computed, also written to `OUTPUT_DIR/pipeline.json`, which `prunelab report DIR`
re-renders the report from. The base model is evaluated once (stage eval-base): every later evaluation starts with
its rows, so each computes only its own model.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prunelab.atomic import write_json
from prunelab.config import PipelineConfig
from prunelab.metadata import build_meta
from prunelab.pipeline import cache
from prunelab.pipeline.plan import BASE_EVAL, Stage, plan_pipeline
from prunelab.results import BASE, ResultsStore

log = logging.getLogger(__name__)
SUMMARY = "pipeline.json"


@dataclass
class Runners:
    """How stages compute: `executor(ray_spec)` for the stages that evaluate candidates, `sgr` (a runner factory for
    `generate_corpus`; None: in this process), `trainer(workers)` (a recovery trainer; None: in this process)."""

    executor: Callable
    sgr: Callable | None = None
    trainer: Callable | None = None


def seed_base_rows(stage: Stage, base: Stage) -> int:
    """Starts an evaluation's store with the base model's rows (and generations) from eval-base; returns how many
    (task, item) pairs it wrote. The evaluation then computes only its own model."""
    import pyarrow.compute as pc

    store = ResultsStore(stage.output_dir, model=stage.config.model.name)
    store.check_claim(stage.config.identity())
    if any(c.is_base for _, c, _ in store.done()):
        return 0
    source = ResultsStore(base.output_dir)
    rows = source.read().to_pandas()
    # the base model's rows: "model" in an evaluation of the base alone (eval-base), "base" in one against it
    which = "base" if (rows.candidate == "base").any() else "model"
    rows = rows[rows.candidate == which]
    if rows.empty:
        return 0
    store.claim(stage.config.identity())
    seeded = 0
    for task, group in rows.groupby("task", sort=False):
        items = [(str(i), dict(zip(g["metric"], g["value"]))) for i, g in group.groupby("item_id", sort=False)]
        store.write(task, BASE, items)
        seeded += len(items)
    generations = source.generations()
    if generations is not None:  # in arrow, not pandas: a missing text (no sample) must stay null, never NaN
        table = generations.filter(pc.equal(generations["candidate"], which))
        for task in dict.fromkeys(table["task"].to_pylist()):
            group = table.filter(pc.equal(table["task"], task)).drop_columns(["model", "task", "candidate"])
            store.write_generations(task, BASE, group.to_pylist())
    return seeded


def run_stage(stage: Stage, stages: dict[str, Stage], runners: Runners, progress: bool) -> None:
    from prunelab.stages.compare import compare_strategies
    from prunelab.stages.evaluate import evaluate
    from prunelab.stages.prune import prune
    from prunelab.stages.recover import recover
    from prunelab.stages.sgr import generate_corpus
    from prunelab.stages.sweep import run_sweep

    c = stage.config
    if stage.kind == "eval":
        if BASE_EVAL in stage.needs:
            seed_base_rows(stage, stages[BASE_EVAL])
        with runners.executor(None) as executor:
            evaluate(c, executor, progress=progress)
    elif stage.kind == "sweep":
        with runners.executor(c.ray) as executor:
            run_sweep(c, executor, progress=progress)
    elif stage.kind == "compare-strategies":
        with runners.executor(c.ray) as executor:
            compare_strategies(c, executor, progress=progress)
    elif stage.kind == "prune":
        with runners.executor(c.ray) as executor:
            prune(c, executor, progress=progress)
    elif stage.kind == "cost":
        from prunelab.stages.cost import measure_costs

        chosen = json.loads((stages["compare"].output_dir / "selections.json").read_text())["selections"]
        measure_costs(c.model_copy(update={"removed": {k: v["removed"] for k, v in chosen.items()}}),
                      progress=progress)
    elif stage.kind == "sgr":
        generate_corpus(c, runners.sgr, progress=progress)
    elif stage.kind == "recover":
        recover(c, runners.trainer(c.workers) if runners.trainer else None, progress=progress)
    else:
        raise AssertionError(f"no runner for stage kind {stage.kind!r}")


def run_pipeline(config: PipelineConfig, runners: Runners, progress: bool = True, say=print) -> dict:
    """Runs (or reuses) every stage, then writes the report; returns the summary."""
    from prunelab.report.page import write_pipeline_report

    stages = plan_pipeline(config)
    by_name = {s.name: s for s in stages}
    root = Path(config.output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    summary = {**build_meta("pipeline", config), "stages": []}
    start = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        reusable, why = cache.check(stage.output_dir, stage.key)
        entry = {"name": stage.name, "kind": stage.kind, "key": stage.key, "dir": str(stage.output_dir),
                 "needs": list(stage.needs)}
        if reusable:
            say(f"[{i}/{len(stages)}] {stage.name}: reused ({why})")
            summary["stages"].append({**entry, "status": "reused"})
            continue
        if (stage.output_dir / cache.MARKER).exists():  # finished once, but changed or foreign since: keep it aside
            why += f"; the old directory is kept at {cache.set_aside(stage.output_dir)}"
        say(f"[{i}/{len(stages)}] {stage.name}: computing ({why})")
        t0 = time.perf_counter()
        run_stage(stage, by_name, runners, progress)
        seconds = time.perf_counter() - t0
        cache.mark_done(stage.output_dir, stage.name, stage.key, seconds)
        summary["stages"].append({**entry, "status": "computed", "reason": why, "seconds": round(seconds, 1)})
        write_json(root / SUMMARY, summary, sort_keys=False)  # what is finished so far, for a report mid-way
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_json(root / SUMMARY, summary, sort_keys=False)
    summary["report"] = {k: str(v) for k, v in write_pipeline_report(root).items()}
    computed = [s["name"] for s in summary["stages"] if s["status"] == "computed"]
    reused = [s["name"] for s in summary["stages"] if s["status"] == "reused"]
    say(f"pipeline {config.name}: {len(computed)} stages computed ({', '.join(computed) or 'none'}), {len(reused)} "
        f"reused ({', '.join(reused) or 'none'}) in {summary['seconds']:.0f} s; report: {summary['report']['html']}")
    return summary


__all__ = ["Runners", "run_pipeline", "seed_base_rows"]
