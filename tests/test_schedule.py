"""The executor's scheduling without Ray (`prunelab.execution.schedule`): what an actor gets, careful mode after a
death, resubmission, giving up; then a simulated sweep no single machine can run: 10,000 units over 64 actors on 8
nodes, with random deaths, slow actors, calls that always kill their worker, and a node lost with its 8 actors."""

import heapq
import random
from collections import Counter
from dataclasses import dataclass

from prunelab.execution.plan import Unit
from prunelab.execution.schedule import BASE_PASS, Scheduler
from prunelab.generation.base import Sampling
from prunelab.results import BASE, Candidate


@dataclass(frozen=True)
class FakeItem:
    id: str


def unit(n: int, layers=(1, 2, 3), generative: bool = False) -> Unit:
    return Unit("t", (FakeItem(f"i{n}"),), (BASE, *(Candidate((layer,)) for layer in layers)),
                Sampling() if generative else None)


def test_a_unit_goes_whole_to_an_idle_ready_actor():
    s = Scheduler([unit(0), unit(1, generative=True)])
    assert s.assign() == []  # nobody is up yet
    s.up(0)
    calls = s.assign()
    assert [c.what for c in calls] == [BASE_PASS, Candidate((1,)), Candidate((2,)), Candidate((3,))]
    assert s.assign() == []  # actor 0 is busy: the generative unit waits for another
    s.up(1)
    (gen,) = s.assign()
    assert gen.actor == 1 and gen.what == (BASE, Candidate((1,)), Candidate((2,)), Candidate((3,)))
    landed, more = s.land(calls[0], "recorded")
    assert landed == [(calls[0].job.unit, BASE, "recorded")] and more == []  # the base pass lands the base
    for call in calls[1:]:
        s.land(call, "scores")
    results, _ = s.land(gen, ["g0", "g1", "g2", "g3"])
    assert [r for _, _, r in results] == ["g0", "g1", "g2", "g3"] and s.finished()


def test_a_death_keeps_what_landed_and_requeues_the_rest_first_one_call_at_a_time():
    s = Scheduler([unit(0), unit(1)])
    s.up(0)
    calls = s.assign()
    s.land(calls[0], "recorded")
    s.land(calls[1], "drop-1")
    landed, replace = s.lose(0, "killed", salvaged={calls[2]: "drop-2"})  # its reply arrived after all
    assert [c for _, c, _ in landed] == [Candidate((2,))] and not replace
    assert s.resubmitted == 1 and s.assign() == []  # the dead actor is not ready
    s.up(0)
    (first,) = s.assign()  # careful: the front of the queue is the rest of unit 0, one call at a time
    assert first.job.unit == unit(0) and first.what is BASE_PASS  # a restarted actor records the inputs again
    landed, (nxt,) = s.land(first, "recorded")
    assert landed == [] and nxt.what == Candidate((3,))  # the base landed before: not stored twice
    landed, more = s.land(nxt, "drop-3")
    assert [c for _, c, _ in landed] == [Candidate((3,))] and more == []
    (unit1_base, *_) = s.assign()
    assert unit1_base.job.unit == unit(1) and not unit1_base.job.careful


def test_a_call_that_keeps_killing_its_worker_is_given_up_and_the_rest_of_its_unit_goes_on():
    s = Scheduler([unit(0, generative=True)], max_attempts=2, max_restarts=1)
    s.up(0)
    (together,) = s.assign()
    assert s.lose(0, "oom", {}) == ([], False)  # all candidates in one call: nobody is charged yet
    replaced = []
    for attempt in range(2):
        s.up(0)
        (alone,) = s.assign()
        if attempt == 0:
            first, _ = s.land(alone, ["ok"])  # the base generates alone, then drop-1 kills the worker twice
            assert [c for _, c, _ in first] == [BASE]
            (alone,) = s.in_flight[0]
        assert alone.what == (Candidate((1,)),)
        _, replace = s.lose(0, "oom at drop-1", {})
        replaced.append(replace)
    assert replaced == [True, False]  # restarted once (max_restarts=1), then a fresh actor (deaths reset)
    assert len(s.given_up) == 1 and "drop-1 killed its worker 2 times" in s.given_up[0]
    s.up(0)
    rest = s.assign()
    assert [c.what for c in rest] == [(Candidate((2,)),)]  # the others still run


def test_a_base_pass_given_up_takes_its_units_candidates_with_it():
    s = Scheduler([unit(0)], max_attempts=1)
    s.up(0)
    s.assign()
    s.lose(0, "segfault", {})
    s.up(0)
    (base,) = s.assign()
    assert base.what is BASE_PASS
    s.lose(0, "segfault", {})
    assert s.finished() and "not computed: base, drop-1, drop-2, drop-3" in s.given_up[0]


def simulate(units: int = 10_000, actors: int = 64, per_node: int = 8, seed: int = 0) -> dict:
    """A discrete-event run of the scheduler: each call takes time (slow actors 8x), each call kills its actor with
    a small chance, a few calls always do, and one node is lost (its actors come back only as fresh replacements,
    after the executor's restart wait). Returns the figures."""
    rng = random.Random(seed)
    work = [unit(n, layers=tuple(rng.sample(range(24), 3)), generative=n % 4 == 0) for n in range(units)]
    # calls that always kill their worker: a classification candidate, a base pass, a generative candidate (in a
    # batch of several, it kills the batch)
    poison = {(work[7].items[0].id, work[7].candidates[2]), (work[101].items[0].id, BASE_PASS),
              (work[3000].items[0].id, work[3000].candidates[1])}
    s = Scheduler(work, max_attempts=3, max_restarts=3)
    slow = set(rng.sample(range(actors), 4))
    lost_node = set(range(3 * per_node, 4 * per_node))
    clock, events, seq = 0.0, [], 0
    generation = Counter()  # actor -> incarnation: events of a dead incarnation are void
    stored = Counter()
    deaths = Counter()

    def push(at, kind, a, payload=None):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, a, generation[a], payload))

    busy_until = Counter()  # an actor runs its calls one after another, in the order they were submitted

    def start(calls):
        for call in calls:
            begin = max(clock, busy_until[call.actor])
            busy_until[call.actor] = begin + rng.uniform(0.5, 1.5) * (8 if call.actor in slow else 1)
            duration = busy_until[call.actor] - clock
            names = call.what if isinstance(call.what, tuple) else (call.what,)
            kills = any((call.job.unit.items[0].id, name) in poison for name in names) and (
                call.job.careful or rng.random() < 0.5)
            if kills or rng.random() < 0.002:
                push(clock + duration, "die", call.actor, "killed")
            else:
                push(clock + duration, "reply", call.actor, call)

    for a in range(actors):
        push(rng.uniform(0, 5), "up", a)
    push(200.0, "node_lost", -1)
    while events:
        clock, _, kind, a, incarnation, payload = heapq.heappop(events)
        if kind == "node_lost":
            for b in lost_node:
                generation[b] += 1  # its calls never reply
                deaths[b] += 1
                busy_until[b] = clock
                for unit_, c, _ in s.lose(b, "node lost", {})[0]:
                    stored[(unit_.items[0].id, c)] += 1
                s.replaced(b)  # after the restart wait, a fresh actor on another node
                push(clock + 120.0, "up", b)
            start(s.assign())
            continue
        if incarnation != generation[a]:
            continue
        if kind == "up":
            s.up(a)
        elif kind == "reply":
            if payload not in s.in_flight.get(a, []):
                continue
            landed, more = s.land(payload, "result" if not isinstance(payload.what, tuple) else ["g"] * len(
                payload.what))
            for unit_, c, _ in landed:
                stored[(unit_.items[0].id, c)] += 1
            start(more)
        elif kind == "die":
            generation[a] += 1
            deaths[a] += 1
            busy_until[a] = clock
            landed, replace = s.lose(a, payload, {})
            for unit_, c, _ in landed:
                stored[(unit_.items[0].id, c)] += 1
            if replace:
                s.replaced(a)
            push(clock + rng.uniform(5, 30), "up", a)  # Ray restarts it (or a fresh one starts)
        start(s.assign())
    return {"scheduler": s, "stored": stored, "deaths": sum(deaths.values()), "clock": clock, "work": work,
            "poison": poison}


def test_a_simulated_sweep_of_10000_units_on_64_actors_loses_nothing_and_does_nothing_twice():
    run = simulate()
    s, stored = run["scheduler"], run["stored"]
    expected = {(u.items[0].id, c) for u in run["work"] for c in u.candidates}
    given_up = {(u.items[0].id, c) for u in run["work"] for c in u.candidates
                if any(f"items {u.items[0].id} .." in g and c.name in g.split("not computed: ")[1].split(" (")[0]
                       .split(", ") for g in s.given_up)}
    print(f"\n10,000 units (40,000 candidates) on 64 actors: {run['deaths']} actor deaths (8 on the lost node), "
          f"{s.resubmitted} resubmissions, {len(s.given_up)} calls given up, {len(given_up)} candidates not "
          f"computed; simulated time {run['clock']:.0f}")
    assert s.finished()
    assert max(stored.values()) == 1  # nothing done twice
    assert set(stored) == expected - given_up  # nothing lost but what was given up, by name
    # exactly the three calls that always kill: two candidates, and a base pass with its unit's four candidates
    assert len(s.given_up) == 3 and len(given_up) == 2 + 4
    assert {k for k in run["poison"] if k[1] is not BASE_PASS} <= given_up
    assert s.resubmitted <= run["deaths"]  # each death sends at most the rest of one unit again
    assert run["deaths"] < 200  # ~0.2% of 40,000 calls, the node, and each poison at most a few times
