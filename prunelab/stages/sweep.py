"""`prunelab sweep`: single-layer ablation of every layer, resumable, with a retention report.

    run(config, runtime) -> SweepArtifact   # the stage's entry point (prunelab.stages.registry)
    run_sweep(config, executor)             # executor: prunelab.distributed.RayExecutor on a cluster, in-process if None
"""

from pathlib import Path

from prunelab.artifacts import SweepArtifact
from prunelab.config import SweepConfig
from prunelab.execution.noise import measure_noise_floor
from prunelab.execution.plan import Plan, plan_units
from prunelab.execution.run import Executor, run_plan
from prunelab.metadata import write_meta
from prunelab.models import inspect_model
from prunelab.report import write_report
from prunelab.results import BASE, Candidate, ResultsStore
from prunelab.stages.common import build_tasks, check_engines, default_executor, record_workers, worker_spec
from prunelab.surgery import check_layers
from prunelab.tasks import describe


def sweep_candidates(layers: list[int] | None, num_layers: int) -> list[Candidate]:
    """The base model and each of `layers` (all if None) removed alone."""
    if layers is None:
        layers = list(range(num_layers))
    layers = check_layers(layers, num_layers, "sweep.layers", together=False)  # each is removed alone
    return [BASE] + [Candidate((layer,)) for layer in layers]


def plan_sweep(config: SweepConfig, done: set, facts=None) -> Plan:
    """What is left of the sweep of `config`, given the (task, candidate, item) triples `done`; reads no weights."""
    facts = facts or inspect_model(config.model)
    candidates = sweep_candidates(config.sweep.layers, facts.num_layers)
    tasks = build_tasks(config.tasks, config.generation)
    worker = worker_spec(config.model, config.sweep.batch_tokens, config.generation, sweep=config.sweep)
    check_engines(facts, worker, tasks)
    budget = worker.generation_budget
    return plan_units(tasks, facts.tokenizer, candidates, done, batch_tokens=config.sweep.batch_tokens,
                      generation_unit=config.sweep.generation_unit, window=facts.window, generation_tokens=budget)


def run_sweep(config: SweepConfig, executor: Executor | None = None, progress: bool = True) -> dict[str, Path]:
    """Runs (or resumes) the sweep of `config` and writes its report; returns the report's paths."""
    # everything is validated (model, layers, tasks, the directory's owner) before the directory is touched
    store = ResultsStore(config.output_dir, model=config.model.name)
    store.check_claim(config.identity())
    facts = inspect_model(config.model)
    plan = plan_sweep(config, store.done(), facts)
    tasks = plan.tasks
    store.claim(config.identity())
    write_meta(config.output_dir, "sweep", config, {n: describe(t, plan.floors.get(n)) for n, t in tasks.items()},
               num_layers=facts.num_layers)
    worker = worker_spec(config.model, config.sweep.batch_tokens, config.generation, sweep=config.sweep)
    executor = default_executor(executor)
    run_plan(plan, store, executor, worker, progress, desc=config.name)
    if config.generation.noise_floor:
        measure_noise_floor(config.output_dir, tasks, facts.tokenizer, BASE, worker, config.sweep.generation_unit,
                            executor, config.identity(), progress, desc=config.name)
    record_workers(config.output_dir, executor)
    return write_report(config.output_dir)


def run(config: SweepConfig, runtime) -> SweepArtifact:
    with runtime.executor(config.ray) as executor:
        return SweepArtifact(config.output_dir, run_sweep(config, executor, progress=runtime.progress))
