"""`prunelab eval`: score one model (pruned, recovered, or any checkpoint) on tasks, and its retention against a
base model when one is given. Results go to the same kind of store as a sweep's, through the same `run_plan`, so
a stopped evaluation resumes and the report has the same intervals and paired tests.

In the store the base model's rows are candidate "base" (as in a sweep) and the evaluated model's are "model".
Classification runs in units of about `batch_tokens`; generative tasks in chunks of 4 x `generation.batch_size`
items, each written (with every generation) as it finishes. Runs in this process unless given an executor;
`run(config, runtime)` evaluates on the runtime's actors (Ray, sized by `ray.actors`), or here with --local.
"""

from pathlib import Path

from prunelab.artifacts import EvalArtifact
from prunelab.config import EvalConfig
from prunelab.execution.noise import measure_noise_floor
from prunelab.execution.plan import plan_units
from prunelab.execution.run import Executor, run_plan
from prunelab.metadata import write_meta
from prunelab.models import inspect_model
from prunelab.report import write_report
from prunelab.results import BASE, Candidate, ResultsStore
from prunelab.stages.common import build_tasks, check_engines, default_executor, record_workers, worker_spec
from prunelab.tasks import describe

MODEL = Candidate((), "model")


def evaluate(config: EvalConfig, executor: Executor | None = None, progress: bool = True) -> dict[str, Path]:
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    runs = [(MODEL, config.model)] + ([(BASE, config.base_model)] if config.base_model else [])
    facts = {c: inspect_model(spec) for c, spec in runs}  # every model is checked before anything is written
    tasks = build_tasks(config.tasks, config.generation)
    for c, spec in runs:
        check_engines(facts[c], worker_spec(spec, config.batch_tokens, config.generation, scorer=config.backend), tasks)
    store = ResultsStore(config.output_dir, model=config.model.name)
    store.check_claim(config.identity())
    done = store.done()
    # what is left to compute, known from the tokenizers alone: a finished run loads no weights
    plans = [(c, spec, plan_units(tasks, facts[c].tokenizer, [c], done, batch_tokens=config.batch_tokens,
                                  generation_unit=4 * config.generation.batch_size, window=facts[c].window))
             for c, spec in runs]
    store.claim(config.identity())
    floors = plans[0][2].floors
    write_meta(config.output_dir, "eval", config, {n: describe(t, floors.get(n)) for n, t in tasks.items()})
    executor = default_executor(executor)
    try:
        for candidate, spec, plan in plans:
            worker = worker_spec(spec, config.batch_tokens, config.generation, scorer=config.backend)
            run_plan(plan, store, executor, worker, progress, desc=f"{config.name} ({candidate.name})")
            if config.generation.noise_floor and candidate == runs[-1][0]:  # the base model (or the model alone)
                measure_noise_floor(config.output_dir, tasks, facts[candidate].tokenizer, candidate, worker,
                                    4 * config.generation.batch_size, executor, config.identity(), progress,
                                    desc=f"{config.name} ({candidate.name})")
            executor.close()  # one model in memory at a time
    finally:
        executor.close()
    record_workers(config.output_dir, executor)
    return write_report(config.output_dir)


def run(config: EvalConfig, runtime) -> EvalArtifact:
    with runtime.executor(config.ray) as executor:
        return EvalArtifact(config.output_dir, evaluate(config, executor, progress=runtime.progress))
