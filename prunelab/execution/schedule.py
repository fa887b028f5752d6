"""Which unit goes to which actor, and what happens when an actor dies: the executor's decisions as plain logic,
with no Ray in it (`prunelab.distributed.executor.RayExecutor` carries them out; tests drive it with faked calls,
deaths and a simulated cluster of thousands of units).

    s = Scheduler(units, max_attempts=3, max_restarts=3)
    s.up(a)                         # actor a answered (placed, model loaded): it may take work
    for call in s.assign(): ...     # submit each call to call.actor
    results, more = s.land(call, result)       # hand results to on_result; submit `more` (careful follow-ups)
    results, replace = s.lose(a, reason, salvaged)   # actor a died: what its other calls had returned is kept
    s.finished(), s.given_up, s.resubmitted

A unit is handed to one actor whole: classification as a base pass (which records layer inputs) then each candidate
in order; generative as one call for all its candidates. All of a unit's calls go at once. When the actor dies,
whatever landed is kept and the rest goes back to the front of the queue in careful mode: one call at a time, so
that the next death is known to come from that call (with several calls in flight, the one running cannot be told).
A call that kills its worker `max_attempts` times is given up (a base pass takes its unit's candidates with it);
everything else goes on.
"""

import logging
from dataclasses import dataclass, field

log = logging.getLogger("prunelab.distributed.executor")  # what the executor decided, in its log
BASE_PASS = "the base pass"


@dataclass(eq=False)
class Job:
    """A unit handed to one actor: its candidates, in the order the actor runs them (after the base pass).
    `careful`: one call at a time (the unit's worker died before)."""

    unit: object  # an execution.plan.Unit: task, candidates, generative, describe()
    candidates: list
    careful: bool = False
    landed: set = field(default_factory=set)
    prepared: bool = False

    def calls(self) -> list:
        """What is left to run, in order: BASE_PASS (classification, until it lands), then candidates. A generative
        unit's candidates generate together (one call, a tuple), or one by one once it is careful."""
        left = [c for c in self.candidates if c not in self.landed]
        if self.unit.generative:
            return [(c,) for c in left] if self.careful else ([tuple(left)] if left else [])
        return ([] if self.prepared else [BASE_PASS]) + [c for c in left if c.removed]


@dataclass(eq=False)
class Call:
    """One remote call: `what` is BASE_PASS, a candidate, or a tuple of candidates (generative)."""

    actor: int
    job: Job
    what: object


def call_name(what) -> str:
    if isinstance(what, tuple):
        return ", ".join(c.name for c in what)
    return what if what is BASE_PASS else what.name


class Scheduler:
    def __init__(self, units, max_attempts: int = 3, max_restarts: int = 3):
        self.queue = [Job(u, list(u.candidates)) for u in units]
        self.max_attempts, self.max_restarts = max_attempts, max_restarts
        self.in_flight: dict[int, list[Call]] = {}  # actor -> its calls not answered yet (all of one job)
        self.ready: set[int] = set()  # actors that answered since they were last lost
        self.deaths: dict[int, int] = {}  # since the actor was last replaced
        self.attempts: dict[tuple[int, object], int] = {}  # (unit, call) -> deaths it caused in careful mode
        self.given_up: list[str] = []
        self.resubmitted = 0  # jobs handed out again after an actor died

    # what the executor reports

    def up(self, a: int) -> None:
        """Actor `a` answered: it takes work when idle."""
        self.ready.add(a)

    def assign(self) -> list[Call]:
        """Every ready, idle actor takes the job at the front of the queue: all its calls (one, if careful)."""
        out = []
        for a in sorted(self.ready):
            if not self.queue:
                break
            if self.in_flight.get(a):
                continue
            job = self.queue.pop(0)
            calls = [Call(a, job, what) for what in (job.calls()[:1] if job.careful else job.calls())]
            self.in_flight[a] = calls
            out += calls
        return out

    def land(self, call: Call, result) -> tuple[list[tuple], list[Call]]:
        """`call` returned `result`: the (unit, candidate, result) to store, and the careful job's next call."""
        self.in_flight[call.actor].remove(call)
        landed = self._landed(call, result)
        job, more = call.job, []
        if job.careful and job.calls():
            more = [Call(call.actor, job, job.calls()[0])]
            self.in_flight[call.actor] += more
        return landed, more

    def lose(self, a: int, reason: str, salvaged: dict | None = None) -> tuple[list[tuple], bool]:
        """Actor `a` died. `salvaged`: {call: result} of its calls whose replies arrived after all (every other one
        of its calls failed). Returns what to store and whether to replace the actor by a fresh one (Ray restarts it
        `max_restarts` times, then gives up on it)."""
        calls = self.in_flight.pop(a, [])
        landed = []
        for call in calls:
            if salvaged and call in salvaged:
                landed += self._landed(call, salvaged[call])
        self.ready.discard(a)
        self.deaths[a] = self.deaths.get(a, 0) + 1
        replace = self.deaths[a] > self.max_restarts
        if replace:
            self.deaths[a] = 0
        if calls:
            self._requeue(calls[0].job, a, reason)
        return landed, replace

    def replaced(self, a: int) -> None:
        """The executor put a fresh actor in `a`'s place: its deaths count from zero."""
        self.deaths[a] = 0
        self.ready.discard(a)

    # what the executor asks

    def working(self) -> bool:
        return any(self.in_flight.values())

    def finished(self) -> bool:
        return not self.queue and not self.working()

    def waiting(self) -> int:
        """Candidates in the queue (for an error that says how much waits)."""
        return sum(len(j.candidates) for j in self.queue)

    # inside

    def _landed(self, call: Call, result) -> list[tuple]:
        job = call.job
        if call.what is BASE_PASS:
            job.prepared = True
            landed = [(c, result) for c in job.candidates if not c.removed]
        elif isinstance(call.what, tuple):  # generative: one list of generations per candidate
            landed = list(zip(call.what, result))
        else:
            landed = [(call.what, result)]
        out = []
        for c, r in landed:
            if c not in job.landed:
                job.landed.add(c)
                out.append((job.unit, c, r))
        return out

    def _requeue(self, job: Job, a: int, reason: str) -> None:
        rest = [c for c in job.candidates if c not in job.landed]
        if job.careful:  # one call was in flight: it is the one that died
            what = job.calls()[0]  # what has not landed, in order: the call that was running
            key = (id(job.unit), what)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            name = call_name(what)
            log.warning("actor %d died computing %s, %s (attempt %d of %d): %s", a, job.unit.describe(), name,
                        self.attempts[key], self.max_attempts, reason)
            if self.attempts[key] >= self.max_attempts:
                # without a base pass none of the unit runs
                dropped = rest if what is BASE_PASS else list(what) if isinstance(what, tuple) else [what]
                rest = [c for c in rest if c not in dropped]
                self.given_up.append(f"task {job.unit.task}, {job.unit.describe()}: {name} killed its worker "
                                     f"{self.attempts[key]} times; not computed: {', '.join(c.name for c in dropped)}"
                                     f" (last error: {reason})")
        else:
            log.warning("actor %d died computing %s; its %d unfinished candidates go again, one call at a time: %s",
                        a, job.unit.describe(), len(rest), reason)
        if rest:
            self.queue.insert(0, Job(job.unit, rest, careful=True, prepared=False))
            self.resubmitted += 1


__all__ = ["BASE_PASS", "Call", "Job", "Scheduler", "call_name"]
