"""The Ray executor: workers as restartable actors, fed one unit at a time, with the work of a dead actor resubmitted.
What goes where, careful mode, resubmission and giving up are `prunelab.execution.schedule.Scheduler`'s decisions
(plain logic, tested without Ray); this module carries them out on Ray: actors, calls, probes, timeouts.

Actors get work once they answer (placed on a node and their model loaded), so actors the cluster cannot place
yet (more actors than fit, or a node lost) never hold work: the others take it. Each actor takes a whole unit
(classification: a base pass that records layer inputs, then its candidates in order; generative: its candidates
in one call), all its calls submitted at once; with fewer units than actors the units are split (by candidates,
then generative ones by items: `plan.spread`), so that none idles. When an actor dies (a killed process, an
out-of-memory kill, a lost node), Ray restarts it (`max_restarts`; its `__init__` loads the model again; past that
a fresh actor replaces it) and every call it had in flight fails. What had landed is kept; the rest of its unit
goes back to the front of the queue, for whichever actor is free first, in careful mode: one call at a time, so
that a further death is known to come from that call (when an actor dies with several calls in flight, Ray cannot
say which one was running: replies already sent can be lost too). A call that runs out of memory (GPU or CPU) is a
death too: the actor is restarted, which frees what the call held, and the call goes the same careful way. A call
that kills its worker `max_attempts` times is given up; the rest of its unit goes on, and once everything else is
computed and stored `UnitsFailed` names what was given up. Results land through the same callback as in-process
runs, so each (task, candidate, item) is written once.

A request no node can ever satisfy fails before any actor is asked for (`resources.require`); work that no actor
could take for `placement_timeout_s` (every actor lost or unplaceable) fails with what the cluster offers, after
everything finished was stored.
"""

import logging
import time
from collections.abc import Sequence

import ray
from ray.exceptions import RayActorError, RayTaskError

from prunelab.distributed.resources import (
    HIDE_GPUS,
    InfeasibleRequest,
    check_gpu_node,
    cluster_offer,
    placeable,
    require,
    resource_request,
    short,
)
from prunelab.errors import PrunelabError
from prunelab.execution.plan import Unit, spread
from prunelab.execution.run import OnResult
from prunelab.execution.schedule import BASE_PASS, Call, Scheduler
from prunelab.execution.worker import Worker, WorkerSpec
from prunelab.hardware import dtype_name

log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 0.5


class UnitsFailed(PrunelabError):
    """Work given up after repeated actor deaths; everything else was computed and stored."""


class NoActorPlaced(PrunelabError):
    """Work was waiting and no actor could take it for `placement_timeout_s`."""


# how a vLLM engine reports memory it could not get: at start ("No available memory for the cache blocks", a
# ValueError), or by dying (its engine core process gone; the actor sees only vLLM's EngineDeadError)
ENGINE_MEMORY_SIGNS = ("No available memory for the cache blocks", "CUDA out of memory")
ENGINE_DEATHS = ("EngineDeadError",)


def _chain(error: BaseException | None):
    """`error`, the error Ray carried (`cause`) and what each was raised from, once each."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__


def out_of_memory(error: Exception) -> bool:
    """Whether a failed call ran out of memory, so that a restarted actor and a careful retry may fit: torch's
    `OutOfMemoryError` (CUDA) or a `MemoryError`, raised in the actor and carried by Ray's task error; a vLLM engine
    that found no memory for its KV cache; or one that died (EngineDeadError), which is how an engine's OOM reaches
    the actor. A retry that keeps failing is given up by name (`max_attempts`), so an engine that dies of anything
    else costs retries, not the run."""
    import torch

    kinds = (torch.OutOfMemoryError, MemoryError)
    chain = list(_chain(error))
    return (any(isinstance(e, kinds) or type(e).__name__ in ENGINE_DEATHS for e in chain)
            or any(sign in str(e) for e in chain for sign in ENGINE_MEMORY_SIGNS))


def _answered(refs: list) -> list:
    """The results of those of `refs` that are done, without waiting (an actor never placed, or dead, has none)."""
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    out = []
    for ref in done:
        try:
            out.append(ray.get(ref))
        except (RayTaskError, RayActorError):
            continue
    return out


class RayExecutor:
    def __init__(self, num_actors: int = 2, num_cpus: float = 1.0, num_gpus: float = 0.0, max_restarts: int = 3,
                 max_attempts: int = 3, worker_class=Worker, restart_wait_s: float = 120.0,
                 accelerator_type: str | None = None, placement_timeout_s: float = 1800.0):
        self.num_actors, self.num_cpus, self.num_gpus = num_actors, num_cpus, num_gpus
        self.accelerator_type, self.placement_timeout_s = accelerator_type, placement_timeout_s
        self.max_restarts, self.max_attempts, self.restart_wait_s = max_restarts, max_attempts, restart_wait_s
        self.worker_class = worker_class
        self.pools: dict[WorkerSpec, list] = {}
        self.resubmitted = 0  # units handed out again after an actor died (for logs and tests)
        self.computed_in: dict[WorkerSpec, list[dict]] = {}  # per worker spec: each actor's computes_in()

    def _pool_actor(self, spec: WorkerSpec):
        device = "cuda" if self.num_gpus > 0 else "cpu"
        local = WorkerSpec(**{**spec.__dict__, "device": spec.device or device,
                              "threads": spec.threads or max(1, int(self.num_cpus)),
                              "gpu_share": min(1.0, self.num_gpus) if self.num_gpus else 1.0,
                              # what `auto` means on the device kind the actor gets, as planned here
                              "planned_dtype": dtype_name(spec.dtype, spec.device or device)})
        # calls are not retried by Ray (a restarted actor has lost the recorded layer inputs): this executor
        # resubmits whole units instead
        actor = ray.remote(self.worker_class).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                     accelerator_type=self.accelerator_type,
                                                     max_restarts=self.max_restarts, max_task_retries=0,
                                                     runtime_env=None if self.num_gpus else HIDE_GPUS)
        return actor.remote(local)

    def _pool(self, spec: WorkerSpec, n: int) -> list:
        pool = self.pools.setdefault(spec, [])
        pool += [self._pool_actor(spec) for _ in range(n - len(pool))]
        return pool[:n]

    def _replace(self, spec: WorkerSpec, a: int):
        pool = self.pools[spec]
        ray.kill(pool[a])
        pool[a] = self._pool_actor(spec)
        return pool[a]

    def pids(self, spec: WorkerSpec) -> list[int]:
        """Process ids of the actors of `spec`, started if they were not (for operators and tests: kill one to see
        a sweep survive). Ask before the work starts: an actor answers after the calls queued before this one."""
        return ray.get([a.pid.remote() for a in self._pool(spec, self.num_actors)])

    @property
    def request(self) -> dict:
        """One actor's resources, as Ray sees them."""
        return resource_request(self.num_cpus, self.num_gpus, self.accelerator_type)

    def execute(self, worker: WorkerSpec, units: Sequence[Unit], on_result: OnResult) -> None:
        if not units:
            return
        self._check_request(worker)
        units = spread(units, self.num_actors)  # every actor busy, even on a single unit of many candidates
        n = min(self.num_actors, len(units))
        offer = cluster_offer()
        if (fit := placeable(self.request, n, offer)) < n:
            log.warning("%d of %d actors fit on the alive nodes now (%s); the rest wait for room", fit, n,
                        offer.describe())
        actors = self._pool(worker, n)
        # what each actor computes in, for meta.json (each refuses by itself to score in another dtype than planned:
        # `Worker.check_dtype`); asked now, read when the work is done, so no actor waits for another's placement
        asked = [a.computes_in.remote() for a in actors]
        run = _Run(self, worker, actors, Scheduler(units, max_attempts=self.max_attempts,
                                                   max_restarts=self.max_restarts), on_result)
        run.until_finished()
        self.computed_in[worker] = _answered(asked)
        if run.plan.given_up:
            raise UnitsFailed("work given up after repeated worker deaths (everything else is computed and stored; "
                              "a rerun retries only this):\n  " + "\n  ".join(run.plan.given_up))

    def _check_request(self, worker: WorkerSpec) -> None:
        """Refuses, before any actor is asked for, what no node can ever satisfy."""
        tensor_parallel = dict(worker.vllm_engine).get("tensor_parallel_size") or 1
        if worker.generator == "vllm" and self.num_gpus and tensor_parallel > self.num_gpus:
            raise InfeasibleRequest(f"generation.vllm.tensor_parallel_size is {tensor_parallel}: each engine spans "
                                    f"that many GPUs, but each actor holds {self.num_gpus:g} (ray.actors.num_gpus); "
                                    f"give the actors {tensor_parallel} GPUs each")
        require(self.request, "sweep actors", "ray.actors.num_cpus / num_gpus / accelerator_type", cluster_offer())
        if self.num_gpus and not self.pools.get(worker):
            check_gpu_node("sweep actors", self.accelerator_type)

    def close(self) -> None:
        for pool in self.pools.values():
            for actor in pool:
                ray.kill(actor)
        self.pools.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Run:
    """One `execute`: the scheduler's decisions carried out on the actors. Calls and probes (is a restarting actor
    back?) are in flight at once; each answer is a landed result, an actor up, or a death, which `lost` turns into
    the scheduler's requeue (and a fresh actor once Ray stops restarting it)."""

    def __init__(self, executor: RayExecutor, worker: WorkerSpec, actors: list, plan: Scheduler,
                 on_result: OnResult):
        self.executor, self.worker, self.actors, self.plan, self.on_result = executor, worker, actors, plan, on_result
        self.unanswered: dict[int, int] = {}  # probes of a restarting actor that found it still down
        # ref -> (actor index, call); call None: a probe
        self.in_flight: dict[ray.ObjectRef, tuple[int, Call | None]] = {}

    def until_finished(self) -> None:
        for a in range(len(self.actors)):  # an actor gets work once it answers
            self.probe(a)
        idle_since = time.monotonic()
        while not self.plan.finished():
            # every idle actor that is up takes work: also one that went idle before a lost actor's work came back
            for call in self.plan.assign():
                self.submit(call)
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=5.0)
            if self.plan.working():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.executor.placement_timeout_s:
                raise NoActorPlaced(
                    f"for {self.executor.placement_timeout_s:g} s no sweep actor was ready to take the "
                    f"{self.plan.waiting()} candidates waiting (ray.placement_timeout_s): each actor asks for "
                    f"{short(self.executor.request)}; {cluster_offer().describe()}. Everything finished is stored; "
                    "a rerun computes only the rest.")
            if ready:
                self.answer(ready[0])

    def submit(self, call: Call) -> None:
        unit, actor, what = call.job.unit, self.actors[call.actor], call.what
        if what is BASE_PASS:
            ref = actor.prepare.remote(unit.requests)
        elif unit.generative:
            ref = actor.generate_candidates.remote(unit.generation_requests, [c.removed for c in what], unit.sampling)
        else:
            ref = actor.score.remote(what.removed)
        self.in_flight[ref] = (call.actor, call)

    def probe(self, a: int) -> None:
        self.in_flight[self.actors[a].pid.remote()] = (a, None)

    def store(self, results) -> None:
        for unit, candidate, result in results:
            self.on_result(unit, candidate, result)

    def replace(self, a: int) -> None:
        self.actors[a] = self.executor._replace(self.worker, a)
        self.plan.replaced(a)

    def answer(self, ref) -> None:
        """One call's or probe's answer."""
        a, call = self.in_flight[ref]
        try:
            result = ray.get(ref)
        except RayTaskError as exc:
            if call is None or not out_of_memory(exc):
                raise  # a bug, not a worker's death: everything landed so far is stored
            # a restart frees what the call held (its memory, the unit's recorded inputs); Ray counts it
            ray.kill(self.actors[a], no_restart=False)
            self.lost(a, exc)
            return
        except RayActorError as exc:
            if call is not None:
                self.lost(a, exc)
            else:
                self.still_down(ref, a)
            return
        del self.in_flight[ref]
        if call is None:
            self.unanswered[a] = 0
            self.plan.up(a)
        else:
            results, more = self.plan.land(call, result)
            self.store(results)
            for follow_up in more:
                self.submit(follow_up)

    def still_down(self, ref, a: int) -> None:
        """A probe found actor `a` still restarting; after `restart_wait_s` of that, a fresh actor takes its place."""
        del self.in_flight[ref]
        self.unanswered[a] = self.unanswered.get(a, 0) + 1
        if self.unanswered[a] > self.executor.restart_wait_s / PROBE_INTERVAL_S:
            self.replace(a)
            self.unanswered[a] = 0
        time.sleep(PROBE_INTERVAL_S)
        self.probe(a)

    def lost(self, a: int, error: Exception) -> None:
        """Actor `a` died: what its other calls returned after all is kept, the scheduler requeues the rest."""
        salvaged = {}
        for ref in [r for r, (owner, call) in self.in_flight.items() if owner == a and call is not None]:
            _, call = self.in_flight.pop(ref)
            try:  # every call of a dead actor fails: none of these waits can hang
                salvaged[call] = ray.get(ref)
            except (RayActorError, RayTaskError):
                pass
        error = getattr(error, "cause", None) or error  # a task error: what the actor raised
        text = str(error).strip()
        reason = f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
        results, fresh = self.plan.lose(a, reason, salvaged)
        self.store(results)
        self.executor.resubmitted = self.plan.resubmitted
        if fresh:  # Ray will not restart it again: a fresh actor takes its place
            self.replace(a)
        self.probe(a)
