"""`prunelab pipeline`: the stages of `plan.py` run in order, each reused when its directory holds a verified
artifact of the same key (`cache.py`), then the report (`prunelab.report.page`).

    run_pipeline(config, runtime)   # the CLI and jobs/pipeline.py build the runtime (Ray or this process)

Progress: one line per stage (reused, or computing and why) and the stage's own progress bars; at the end a summary
of what was reused and what was computed, also written to `OUTPUT_DIR/pipeline.json`, which `prunelab report DIR`
re-renders the report from. Nothing is evaluated twice: the base model once (stage eval-base), whose rows compare
and every later evaluation start with; a pruned checkpoint's evaluation starts with compare's rows for the same
layers (`seed_pruned_rows`).
"""

import json
import logging
import time
from pathlib import Path

from prunelab.artifacts import (
    BASE_EVAL,
    COMPARE_STAGE,
    PIPELINE_SUMMARY,
    CompareArtifact,
    PipelineArtifact,
    PruneArtifact,
    prune_stage,
)
from prunelab.atomic import write_json
from prunelab.config import PipelineConfig
from prunelab.metadata import build_meta
from prunelab.pipeline import cache
from prunelab.pipeline.plan import Stage, plan_pipeline
from prunelab.results import BASE, Candidate, ResultsStore
from prunelab.stages.runtime import Runtime

log = logging.getLogger(__name__)
SUMMARY = PIPELINE_SUMMARY
SEEDED = "seeded.json"  # in a stage directory: the rows copied from other stages


def seed_rows(stage: Stage, source: Stage, which: str, candidate: Candidate, sub: str = "") -> int:
    """Starts `stage`'s store with candidate `which`'s rows (and generations) from `source`'s, as `candidate`
    (`ResultsStore.copy_candidate`); returns how many items it copied. The stage then computes only the rest. `sub`:
    a store inside both directories (the noise floor's) instead of theirs. What was copied, from where, is kept in
    the stage's `seeded.json`."""
    if not (source.output_dir / sub / "results").exists():
        return 0
    store = ResultsStore(stage.output_dir / sub, model=stage.config.model.name)
    seeded = store.copy_candidate(ResultsStore(source.output_dir / sub), which, candidate, stage.config.identity())
    if not seeded:
        return 0
    record = stage.output_dir / SEEDED
    log_ = json.loads(record.read_text()) if record.exists() else []
    write_json(record, [*log_, {"from": str(source.output_dir / sub), "stage": source.name, "candidate": which,
                                "as": candidate.name, "items": {t: len(i) for t, i in seeded.items()}}])
    return sum(len(i) for i in seeded.values())


def _base_name(source: Stage) -> str:
    """The base model's candidate in a store: "model" in an evaluation of the base alone (eval-base), "base" in
    one against it or in a comparison of strategies."""
    return "model" if source.kind == "eval" and source.config.base_model is None else "base"


def seed_base_rows(stage: Stage, base: Stage) -> int:
    """Starts a stage's store with the base model's rows from eval-base: the stage then computes only its own
    models, and with its noise floor's rows (`execution.noise`). eval-base, compare and every later evaluation get
    the same tasks, items and generation settings."""
    from prunelab.execution.noise import LAYOUTS, NOISE_DIR

    if seed_rows(stage, base, _base_name(base), BASE, sub=NOISE_DIR):
        layouts = base.output_dir / NOISE_DIR / LAYOUTS
        if layouts.exists():
            write_json(stage.output_dir / NOISE_DIR / LAYOUTS, json.loads(layouts.read_text()))
    return seed_rows(stage, base, _base_name(base), BASE)


def seed_pruned_rows(stage: Stage, pruned: Stage, compare: Stage, target: str) -> int:
    """Starts the evaluation of a pruned checkpoint with compare's rows for the same layers removed in memory
    (equal up to float rounding: tests/test_generation.py, tests/test_sweep.py); nothing when prune chose other
    layers than compare did."""
    chosen = CompareArtifact(compare.output_dir).selections().get(target)
    removed = PruneArtifact(pruned.output_dir).removed_layers()
    if chosen is None or sorted(chosen.removed) != sorted(removed):
        log.warning("%s: compare chose layers %s for %s, prune %s; evaluating the checkpoint in full", stage.name,
                    chosen and chosen.removed, target, removed)
        return 0
    from prunelab.stages.evaluate import MODEL

    return seed_rows(stage, compare, Candidate(tuple(removed)).name, MODEL)


def run_stage(stage: Stage, stages: dict[str, Stage], runtime: Runtime) -> None:
    """Seeds what the stage can take from earlier ones, then runs it as its registry entry runs it on its own."""
    from prunelab.stages.registry import STAGES

    entry = STAGES.get(stage.kind)
    if stage.kind in ("eval", "compare-strategies") and BASE_EVAL in stage.needs:
        seed_base_rows(stage, stages[BASE_EVAL])
    if stage.pruned_from is not None:  # the checkpoint of a strategy that compare evaluated already
        seed_pruned_rows(stage, stages[prune_stage(stage.pruned_from)], stages[COMPARE_STAGE], stage.pruned_from)
    entry.run(with_inputs(stage, stages), runtime)


def with_inputs(stage: Stage, stages: dict[str, Stage]):
    """The stage's config with the fields it takes from upstream artifacts that exist only once those have run
    (`StageEntry.inputs` with a reader: cost's `removed` from compare's selections). They are not in the stage key:
    the upstream's key is, and it decides them."""
    from prunelab.stages.registry import STAGES

    update = {}
    for given in STAGES.get(stage.kind).inputs:
        if given.read is None:  # a path, set when the stage was planned
            continue
        upstream = next(stages[n] for n in stage.needs if stages[n].kind in given.upstream)
        update[given.field] = given.value(upstream.output_dir)
    return stage.config.model_copy(update=update) if update else stage.config


def _warn_power(config: PipelineConfig, base: Stage) -> None:
    """Once the base model's scores are known, what later stages will not be able to test
    (`report.power.pipeline_warnings`)."""
    from prunelab.report.power import pipeline_warnings

    rows = ResultsStore(base.output_dir).read().to_pandas()
    primary = {t.name: t.build().primary_metric for t in config.tasks}
    rows = rows[(rows.candidate == _base_name(base)) & (rows.metric == rows.task.map(primary))]
    pipeline_warnings(config, {task: g.drop_duplicates("item_id", keep="last")["value"].to_numpy()
                               for task, g in rows.groupby("task")})


def _code_since(stage: Stage) -> str:
    """For a reused stage: whether the code it runs changed since it was computed (same code version: the change
    was declared not to move its numbers, `prunelab.pipeline.code`)."""
    from prunelab.pipeline.code import stage_code

    meta = stage.output_dir / "meta.json"
    then = json.loads(meta.read_text()).get("code") if meta.exists() else None
    if not then or then["digest"] == stage_code(stage.kind)["digest"]:
        return ""
    return (f"; its code changed since (digest {then['digest'][:12]}), at the same code version "
            f"{then['version']}: declared not to move its numbers")


def run(config: PipelineConfig, runtime: Runtime) -> PipelineArtifact:
    """The stage's entry point (`prunelab.stages.registry`)."""
    run_pipeline(config, runtime)
    return PipelineArtifact(config.output_dir)


def run_pipeline(config: PipelineConfig, runtime: Runtime, say=print) -> dict:
    """Runs (or reuses) every stage, then writes the report; returns the summary. A power warning (a task too small
    to test) is logged once per run, not once per stage that evaluates the task."""
    from prunelab.report.power import each_warning_once

    with each_warning_once():
        return _run_pipeline(config, runtime, say)


def _run_pipeline(config: PipelineConfig, runtime: Runtime, say) -> dict:
    from prunelab.report.page import write_pipeline_report
    from prunelab.stages.sgr import check_runner

    if config.sgr is not None and config.recover is not None:
        check_runner(config.sgr.engine, runtime.sgr, "sgr.engine")
    stages = plan_pipeline(config)
    by_name = {s.name: s for s in stages}
    root = Path(config.output_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    summary = {**build_meta("pipeline", config), "stages": []}
    start = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        reusable, why = cache.check(stage.output_dir, stage.key)
        if reusable:
            why += _code_since(stage)
        entry = {"name": stage.name, "kind": stage.kind, "key": stage.key, "dir": str(stage.output_dir),
                 "needs": list(stage.needs), "role": stage.role}
        if reusable:
            say(f"[{i}/{len(stages)}] {stage.name}: reused ({why})")
            summary["stages"].append({**entry, "status": "reused",
                                      "seconds": cache.recorded_seconds(stage.output_dir)})
            if stage.name == BASE_EVAL:
                _warn_power(config, stage)
            continue
        if (stage.output_dir / cache.MARKER).exists():  # finished once, but changed or foreign since: keep it aside
            why += f"; the old directory is kept at {cache.set_aside(stage.output_dir)}"
        elif not stage.output_dir.exists():
            changed = cache.what_changed(stage.output_dir, stage.name, stage.config.stage_identity())
            why += f": the config changed {changed}" if changed else ""
        say(f"[{i}/{len(stages)}] {stage.name}: computing ({why})")
        cache.begin_segment(stage.output_dir)
        run_stage(stage, by_name, runtime)
        seconds = cache.mark_done(stage.output_dir, stage.name, stage.key, stage.config.stage_identity())
        summary["stages"].append({**entry, "status": "computed", "reason": why, "seconds": seconds})
        write_json(root / SUMMARY, summary, sort_keys=False)  # what is finished so far, for a report mid-way
        if stage.name == BASE_EVAL:
            _warn_power(config, stage)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_json(root / SUMMARY, summary, sort_keys=False)
    summary["report"] = {k: str(v) for k, v in write_pipeline_report(root).items()}
    computed = [s["name"] for s in summary["stages"] if s["status"] == "computed"]
    reused = [s["name"] for s in summary["stages"] if s["status"] == "reused"]
    say(f"pipeline {config.name}: {len(computed)} stages computed ({', '.join(computed) or 'none'}), {len(reused)} "
        f"reused ({', '.join(reused) or 'none'}) in {summary['seconds']:.0f} s; report: {summary['report']['html']}")
    return summary


__all__ = ["run", "run_pipeline", "run_stage", "with_inputs", "seed_base_rows", "seed_pruned_rows", "seed_rows"]
