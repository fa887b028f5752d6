"""Ray at the edge: sweep workers as actors, fed one unit at a time, results written by the driver as they land."""

import os
from collections.abc import Callable

import ray

from prunelab.config import ActorSpec, ModelSpec
from prunelab.generation import Generation
from prunelab.scoring.requests import Scores
from prunelab.sweep.plan import Unit
from prunelab.sweep.worker import SweepWorker


def init_ray(address: str | None) -> None:
    """Attaches to `address` (or $RAY_ADDRESS); with neither, starts a local Ray on this machine."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers import prunelab from the driver's environment; a job's runtime_env (cluster/) ships it on clusters.
    ray.init(address=address, log_to_driver=True, include_dashboard=False if address is None else None)


def run_units(
    units: list[Unit],
    model: ModelSpec,
    actors: ActorSpec,
    batch_tokens: int,
    on_result: Callable[[Unit, tuple[int, ...], list[Scores] | list[Generation]], None],
    generation_batch_size: int = 8,
) -> None:
    """Runs every candidate of every unit on `actors.num_actors` actors; calls `on_result` as each one finishes.

    Each actor takes a whole unit (for classification, a base pass that records layer inputs, then its candidates
    in order, so the base pass is never repeated; for generation, each candidate generates); units are handed out
    as actors free up.
    """
    if not units:
        return
    worker_cls = ray.remote(SweepWorker).options(num_cpus=actors.num_cpus, num_gpus=actors.num_gpus)
    n = min(actors.num_actors, len(units))
    threads = max(1, int(actors.num_cpus))
    device = "cuda" if actors.num_gpus > 0 else "cpu"
    workers = [worker_cls.remote(model.name, model.dtype, model.revision, batch_tokens, threads, device,
                                 generation_batch_size) for _ in range(n)]
    queue = list(units)
    in_flight: dict[ray.ObjectRef, tuple[int, Unit, tuple[int, ...]]] = {}

    def feed(w: int) -> None:
        unit = queue.pop(0)
        if unit.generative:
            for removed in unit.candidates:
                in_flight[workers[w].generate.remote(unit.generation_requests, removed, unit.sampling)] = (w, unit, removed)
            return
        base = workers[w].prepare.remote(unit.requests)
        if () in unit.candidates:
            in_flight[base] = (w, unit, ())
        for removed in unit.candidates:
            if removed:
                in_flight[workers[w].score.remote(removed)] = (w, unit, removed)

    for w in range(n):
        if queue:
            feed(w)
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            w, unit, removed = in_flight.pop(ref)
            scores = ray.get(ref)
            on_result(unit, removed, scores)
            if queue and all(owner != w for owner, _, _ in in_flight.values()):  # actor w is idle
                feed(w)
    finally:
        for worker in workers:
            ray.kill(worker)
