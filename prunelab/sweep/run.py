"""`prunelab sweep`: single-layer ablation of every layer, on Ray actors, resumable, with a retention report."""

import logging
from pathlib import Path

from tqdm import tqdm

from prunelab.config import SweepConfig
from prunelab.generation import Generation
from prunelab.report import write_report
from prunelab.scoring.requests import Scores
from prunelab.sweep.plan import SweepPlan, Unit, plan_sweep
from prunelab.sweep.store import ResultsStore, candidate_name
from prunelab.tasks import regroup

log = logging.getLogger(__name__)


def run_sweep(config: SweepConfig, address: str | None = None, progress: bool = True) -> dict[str, Path]:
    """Runs (or resumes) the sweep of `config` and writes its report; returns the report's paths."""
    store = ResultsStore(config.output_dir, model=config.model.name)
    store.claim(config.identity(), config.model_dump())
    plan = plan_sweep(config, store.done())
    compute(config, store, plan, address, progress)
    return write_report(config.output_dir, plan.tasks, title=f"Layer sensitivity: {config.name} ({config.model.name})")


def compute(config, store: ResultsStore, plan: SweepPlan, address: str | None = None, progress: bool = True) -> None:
    """Computes every (unit, candidate) of `plan` on Ray actors and writes results as they land. `config` is any
    experiment config with model, ray, sweep and generation sections."""
    done = store.done()
    log.info("%s: %d layers, %d candidates x %d tasks, %d (unit, candidate) pairs to compute",
             config.name, plan.num_layers, len(plan.candidates), len(plan.tasks), plan.pending)
    if not plan.units:
        return
    from prunelab.sweep.ray_runner import init_ray, run_units

    init_ray(address or config.ray.address)
    bar = tqdm(total=plan.pending, desc=f"{config.name}", unit="cand", disable=not progress)

    def on_result(unit: Unit, removed: tuple[int, ...], scores: list[Scores] | list[Generation]) -> None:
        task = plan.tasks[unit.task]
        name = candidate_name(removed)
        if unit.generative:  # scored here: code tasks run their programs in this process's sandbox pool
            metrics = task.score(unit.items, scores)
            store.write_generations(unit.task, name, [g.record() for g in scores])
        else:
            metrics = [task.score_item(item, s) for item, s in zip(unit.items, regroup(unit.items, scores))]
        rows = [(item.id, m) for item, m in zip(unit.items, metrics) if (unit.task, name, item.id) not in done]
        if rows:
            store.write(unit.task, removed, rows)
        bar.update(1)

    try:
        run_units(plan.units, config.model, config.ray.actors, config.sweep.batch_tokens, on_result,
                  config.generation.batch_size)
    finally:
        bar.close()
