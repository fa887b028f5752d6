"""One path from a plan to stored results: `run_plan(plan, store, executor, worker)`.

An executor computes every (unit, candidate) of a plan on workers and hands each result to a callback as it lands:
`InProcessExecutor` (here: eval, tests, small runs) or `prunelab.distributed.RayExecutor` (actors that may die).
The callback scores the result (generative tasks: here, code in this process's sandbox pool) and writes it; every
(task, candidate, item) is written once, whatever the executor retried.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from prunelab.execution.plan import Plan, Unit
from prunelab.execution.worker import Worker, WorkerSpec
from prunelab.progress import bar as progress_bar
from prunelab.results import Candidate, ResultsStore
from prunelab.tasks import regroup

log = logging.getLogger(__name__)

OnResult = Callable[[Unit, Candidate, list], None]


class Executor(Protocol):
    def execute(self, worker: WorkerSpec, units: Sequence[Unit], on_result: OnResult) -> None:
        """Computes every candidate of every unit with workers of `worker`; calls `on_result` once per
        (unit, candidate), as each finishes."""

    def close(self) -> None:
        """Releases the workers (the executor can be used again)."""


def run_unit(worker: Worker, unit: Unit, on_result: OnResult) -> None:
    """A unit's candidates on one worker, in order: one base pass, then each candidate resumes from it."""
    if unit.generative:
        outputs = worker.generate_candidates(unit.generation_requests, [c.removed for c in unit.candidates],
                                             unit.sampling)
        for candidate, generations in zip(unit.candidates, outputs):
            on_result(unit, candidate, generations)
        return
    base = worker.prepare(unit.requests)
    for candidate in unit.candidates:
        on_result(unit, candidate, base if not candidate.removed else worker.score(candidate.removed))


class InProcessExecutor:
    """Runs units one after another on workers in this process; each model is loaded once and kept."""

    def __init__(self):
        self.workers: dict[WorkerSpec, Worker] = {}
        self.computed_in: dict[WorkerSpec, list[dict]] = {}  # per worker spec: each worker's computes_in()

    def execute(self, worker: WorkerSpec, units: Sequence[Unit], on_result: OnResult) -> None:
        if not units:
            return
        if worker not in self.workers:
            self.workers[worker] = Worker(worker)
            self.computed_in[worker] = [self.workers[worker].computes_in()]
        for unit in units:
            run_unit(self.workers[worker], unit, on_result)

    def close(self) -> None:
        self.workers.clear()
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # what the workers' models held goes back to the device, for what loads next

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def worker_parts(plan: Plan, worker: WorkerSpec) -> list[tuple[WorkerSpec, list[Unit]]]:
    """The plan's units and the workers that compute them, in order. A checkpoint generator (vLLM) never shares a
    worker, and so a GPU, with the Hugging Face model that scores: classification units come first, the executor
    releases those workers, and then fresh ones generate, their engine sized for the plan's longest request."""
    from prunelab.generation import CHECKPOINT, GENERATION_BACKENDS

    generative = [u for u in plan.units if u.generative]
    if not generative or GENERATION_BACKENDS.entry(worker.generator).input != CHECKPOINT:
        return [(worker, list(plan.units))]
    longest = max(len(r.prompt_ids) + u.sampling.max_new_tokens for u in generative for r in u.generation_requests)
    _check_context(worker, longest)
    generating = dataclasses.replace(worker, max_request_tokens=longest)
    _ = generating.vllm_args  # a max_model_len below the longest request is refused before anything runs
    scored = [u for u in plan.units if not u.generative]
    return ([(worker, scored)] if scored else []) + [(generating, generative)]


def _check_context(worker: WorkerSpec, longest: int) -> None:
    """Refuses requests longer than the model's context (vLLM would refuse the engine inside the worker)."""
    from transformers import AutoConfig

    from prunelab.errors import ConfigError
    from prunelab.models import resolve_model_path
    from prunelab.models.view import text_config

    config = AutoConfig.from_pretrained(resolve_model_path(worker.model), revision=worker.revision,
                                        trust_remote_code=worker.trust_remote_code)
    context = getattr(text_config(config), "max_position_embeddings", None)
    if context and longest > context:
        raise ConfigError(f"the longest generative request needs {longest} tokens (its prompt + max_new_tokens), "
                          f"but {worker.model!r} holds {context} (max_position_embeddings): lower the task's "
                          "max_new_tokens or num_fewshot")


def run_plan(plan: Plan, store: ResultsStore, executor: Executor, worker: WorkerSpec, progress: bool = True,
             desc: str = "") -> None:
    """Computes every (unit, candidate) of `plan` and writes the results as they land."""
    if not plan.units:
        return
    done = store.done()
    log.info("%s: %d candidates x %d tasks, %d (unit, candidate) pairs to compute", desc, len(plan.candidates),
             len(plan.tasks), plan.pending)
    # a unit: one chunk of one task's items, for one candidate (a model with some layers removed, or the model)
    bar = progress_bar(total=plan.pending, desc=desc, unit="unit", disable=not progress)

    def on_result(unit: Unit, candidate: Candidate, results: list) -> None:
        task = plan.tasks[unit.task]
        if unit.generative:
            metrics, samples = task.score_with_samples(unit.items, results)
        else:
            metrics = [task.score_item(item, s) for item, s in zip(unit.items, regroup(unit.items, results))]
        rows = [(item.id, m) for item, m in zip(unit.items, metrics) if (unit.task, candidate, item.id) not in done]
        if rows:
            if unit.generative:  # each generation with what was scored from it, in one atomic file
                store.write_generations(unit.task, candidate, [g.record() | sample for g, sample in
                                                               zip(results, samples)])
            store.write(unit.task, candidate, rows)
            done.update((unit.task, candidate, item_id) for item_id, _ in rows)
        bar.update(1)

    parts = worker_parts(plan, worker)
    try:
        for i, (part_worker, units) in enumerate(parts):
            if i:
                executor.close()  # the scoring workers go before the generating ones come
            executor.execute(part_worker, units, on_result)
    finally:
        bar.close()
