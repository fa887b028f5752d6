"""The Ray executor: workers as restartable actors, fed one unit at a time, with the work of a dead actor resubmitted.

Actors get work once they answer (placed on a node and their model loaded), so actors the cluster cannot place
yet (more actors than fit, or a node lost) never hold work: the others take it. Each actor takes a whole unit
(classification: a base pass that records layer inputs, then its candidates in order; generative: its candidates
in one call), all its calls submitted at once; with fewer units than actors the units are split (by candidates,
then generative ones by items: `plan.spread`), so that none idles. When an actor dies (a killed process, an
out-of-memory kill, a lost node), Ray restarts it (`max_restarts`; its `__init__` loads the model again; past that
a fresh actor replaces it) and every call it had in flight fails. What had landed is kept; the rest of its unit
goes back to the front of the queue, for whichever actor is free first, in careful mode: one call at a time, so
that a further death is known to come from that call (when an actor dies with several calls in flight, Ray cannot
say which one was running: replies already sent can be lost too). A call that kills its worker `max_attempts`
times is given up; the rest of its unit goes on, and once everything else is computed and stored `UnitsFailed`
names what was given up. Results land through the same callback as in-process runs, so each (task, candidate,
item) is written once.

A request no node can ever satisfy fails before any actor is asked for (`resources.require`); work that no actor
could take for `placement_timeout_s` (every actor lost or unplaceable) fails with what the cluster offers, after
everything finished was stored.
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import ray
from ray.exceptions import RayActorError

from prunelab.distributed.resources import cluster_offer, placeable, require, resource_request, short
from prunelab.errors import PrunelabError
from prunelab.execution.plan import Unit, spread
from prunelab.execution.run import OnResult
from prunelab.execution.worker import Worker, WorkerSpec
from prunelab.results import Candidate

log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 0.5


class UnitsFailed(PrunelabError):
    """Work given up after repeated actor deaths; everything else was computed and stored."""


class NoActorPlaced(PrunelabError):
    """Work was waiting and no actor could take it for `placement_timeout_s`."""


BASE_PASS = "the base pass"


@dataclass
class _Job:
    """A unit handed to one actor: its candidates, in the order the actor runs them (after the base pass).
    `careful`: one call at a time (the unit's worker died before)."""

    unit: Unit
    candidates: list[Candidate]
    careful: bool = False
    landed: set[Candidate] = field(default_factory=set)
    prepared: bool = False

    def calls(self) -> list:
        """What is left to run, in order: BASE_PASS (classification, until it lands), then candidates. A
        generative unit's candidates generate together (one call, a tuple), or one by one once it is careful."""
        left = [c for c in self.candidates if c not in self.landed]
        if self.unit.generative:
            return [(c,) for c in left] if self.careful else ([tuple(left)] if left else [])
        return ([] if self.prepared else [BASE_PASS]) + [c for c in left if c.removed]


def _name(call) -> str:
    return ", ".join(c.name for c in call) if isinstance(call, tuple) else call.name


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

    def _pool_actor(self, spec: WorkerSpec):
        device = "cuda" if self.num_gpus > 0 else "cpu"
        local = WorkerSpec(**{**spec.__dict__, "device": spec.device or device,
                              "threads": spec.threads or max(1, int(self.num_cpus))})
        # calls are not retried by Ray (a restarted actor has lost the recorded layer inputs): this executor
        # resubmits whole units instead
        actor = ray.remote(self.worker_class).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                                     accelerator_type=self.accelerator_type,
                                                     max_restarts=self.max_restarts, max_task_retries=0)
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
        units = spread(units, self.num_actors)  # every actor busy, even on a single unit of many candidates
        n = min(self.num_actors, len(units))
        offer = cluster_offer()
        require(self.request, "sweep actors", "ray.actors.num_cpus / num_gpus / accelerator_type", offer)
        if (fit := placeable(self.request, n, offer)) < n:
            log.warning("%d of %d actors fit on the alive nodes now (%s); the rest wait for room", fit, n,
                        offer.describe())
        actors = self._pool(worker, n)
        queue = [_Job(u, list(u.candidates)) for u in units]
        attempts: dict[tuple[int, object], int] = {}  # (unit, call) -> deaths it caused (careful mode)
        deaths: dict[int, int] = {}
        unanswered: dict[int, int] = {}  # probes of a restarting actor that found it still down
        given_up: list[str] = []
        ready: set[int] = set()  # actors that answered since they were last lost: they take work when idle
        # ref -> (actor index, job, call); job None: a probe (is the actor back?)
        in_flight: dict[ray.ObjectRef, tuple[int, _Job | None, object]] = {}

        def submit(a: int, job: _Job, call) -> None:
            unit, actor = job.unit, actors[a]
            if call is BASE_PASS:
                ref = actor.prepare.remote(unit.requests)
            elif unit.generative:
                ref = actor.generate_candidates.remote(unit.generation_requests, [c.removed for c in call],
                                                       unit.sampling)
            else:
                ref = actor.score.remote(call.removed)
            in_flight[ref] = (a, job, call)

        def feed(a: int) -> None:
            job = queue.pop(0)
            for call in job.calls()[:1] if job.careful else job.calls():
                submit(a, job, call)

        def probe(a: int) -> None:
            in_flight[actors[a].pid.remote()] = (a, None, None)

        def land(job: _Job, call, result) -> None:
            if call is BASE_PASS:
                job.prepared = True
                landed = [(c, result) for c in job.candidates if not c.removed]
            elif isinstance(call, tuple):  # generative: one list of generations per candidate
                landed = list(zip(call, result))
            else:
                landed = [(call, result)]
            for c, r in landed:
                job.landed.add(c)
                on_result(job.unit, c, r)

        def lost(a: int, job: _Job, error: Exception) -> None:
            """Actor `a` died with `job` unfinished: keep what it finished, requeue the rest carefully (charging
            the call that was running if it ran alone), and wait for the actor to come back or replace it."""
            pending = [r for r, (owner, _, _) in in_flight.items() if owner == a]
            for ref in pending:
                _, _, call = in_flight.pop(ref)
                try:  # every call of a dead actor fails: none of these waits can hang
                    land(job, call, ray.get(ref))
                except RayActorError:
                    pass
            ready.discard(a)
            deaths[a] = deaths.get(a, 0) + 1
            if deaths[a] > self.max_restarts:  # Ray will not restart it again: a fresh actor takes its place
                actors[a], deaths[a] = self._replace(worker, a), 0
            probe(a)
            rest = [c for c in job.candidates if c not in job.landed]
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if job.careful:  # one call was in flight: it is the one that died
                call = job.calls()[0]  # what has not landed, in order: the call that was running
                key = (id(job.unit), call)
                attempts[key] = attempts.get(key, 0) + 1
                what = call if call is BASE_PASS else _name(call)
                log.warning("actor %d died computing %s, %s (attempt %d of %d): %s", a, job.unit.describe(), what,
                            attempts[key], self.max_attempts, reason)
                if attempts[key] >= self.max_attempts:
                    # without a base pass none of the unit runs
                    dropped = rest if call is BASE_PASS else list(call) if isinstance(call, tuple) else [call]
                    rest = [c for c in rest if c not in dropped]
                    given_up.append(f"task {job.unit.task}, {job.unit.describe()}: {what} killed its worker "
                                    f"{attempts[key]} times; not computed: {', '.join(c.name for c in dropped)} "
                                    f"(last error: {reason})")
            else:
                log.warning("actor %d died computing %s; its %d unfinished candidates go again, one call at a "
                            "time: %s", a, job.unit.describe(), len(rest), reason)
            if rest:
                queue.insert(0, _Job(job.unit, rest, careful=True))
                self.resubmitted += 1

        def working() -> bool:
            return any(job is not None for _, job, _ in in_flight.values())

        for a in range(len(actors)):  # an actor gets work once it answers
            probe(a)
        idle_since = time.monotonic()
        while queue or working():
            # every idle actor that is up takes work: also one that went idle before a lost actor's work came back
            for a in sorted(ready):
                if queue and all(owner != a for owner, _, _ in in_flight.values()):
                    feed(a)
            ready_refs, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
            if working():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.placement_timeout_s:
                left = sum(len(j.candidates) for j in queue)
                raise NoActorPlaced(
                    f"for {self.placement_timeout_s:g} s no sweep actor was ready to take the {left} candidates "
                    f"waiting (ray.placement_timeout_s): each actor asks for {short(self.request)}; "
                    f"{cluster_offer().describe()}. Everything finished is stored; a rerun computes only the rest.")
            if not ready_refs:
                continue
            a, job, call = in_flight[ready_refs[0]]
            try:
                result = ray.get(ready_refs[0])
            except RayActorError as exc:
                if job is not None:
                    lost(a, job, exc)
                    continue
                # a probe: still restarting; after `restart_wait_s` of that, a fresh actor takes its place
                del in_flight[ready_refs[0]]
                unanswered[a] = unanswered.get(a, 0) + 1
                if unanswered[a] > self.restart_wait_s / PROBE_INTERVAL_S:
                    actors[a], unanswered[a] = self._replace(worker, a), 0
                time.sleep(PROBE_INTERVAL_S)
                probe(a)
                continue
            del in_flight[ready_refs[0]]
            if job is None:
                unanswered[a] = 0
                ready.add(a)
            else:
                land(job, call, result)
                if job.careful and job.calls():
                    submit(a, job, job.calls()[0])
        if given_up:
            raise UnitsFailed("work given up after repeated worker deaths (everything else is computed and stored; "
                              "a rerun retries only this):\n  " + "\n  ".join(given_up))

    def close(self) -> None:
        for pool in self.pools.values():
            for actor in pool:
                ray.kill(actor)
        self.pools.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
