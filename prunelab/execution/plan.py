"""Plan work without loading weights: tasks' items packed into units, each with the candidates still to compute.

A classification unit is about one engine batch (`batch_tokens`): a worker records every layer's input in one base
pass over it, then scores each candidate by resuming from the first removed layer. A generative unit is a chunk of
`generation_unit` items that each candidate generates for. Whatever the store already holds is left out, so a rerun
plans only what is missing.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from prunelab.errors import ConfigError
from prunelab.generation.base import GenerationRequest, Sampling
from prunelab.results import Candidate
from prunelab.scoring.requests import Request
from prunelab.tasks import GENERATIVE_KIND, Item, chance_floor, flatten


def sample_id(item_id: str, j: int) -> str:
    return f"{item_id}#{j}"


@dataclass(frozen=True)
class Unit:
    """Items of one task and the candidates still to compute on them. Generative when `sampling` is set."""

    task: str
    items: tuple
    candidates: tuple[Candidate, ...]
    sampling: Sampling | None = None

    @property
    def generative(self) -> bool:
        return self.sampling is not None

    @property
    def requests(self) -> list[Request]:
        return flatten(self.items)

    @property
    def generation_requests(self) -> list[GenerationRequest]:
        """One request per item, or, sampling n per item, n (ids "<item>#<j>": each sample its own random stream)."""
        n = self.sampling.samples if self.sampling is not None else 1
        if n == 1:
            return [it.request for it in self.items]
        return [replace(it.request, id=sample_id(it.request.id, j)) for it in self.items for j in range(n)]

    def describe(self) -> str:
        return f"{self.task} items {self.items[0].id} .. {self.items[-1].id} ({len(self.items)} items)"


@dataclass
class Plan:
    tasks: dict  # name -> task
    candidates: list[Candidate]
    units: list[Unit]
    floors: dict[str, float] = field(default_factory=dict)  # classification task -> its chance floor on its items

    @property
    def pending(self) -> int:
        """(unit, candidate) pairs to compute."""
        return sum(len(u.candidates) for u in self.units)


def _representative(item: Item) -> Request:
    """One request standing for an item when units are packed: its first context, all its continuations' tokens."""
    first = item.requests[0]
    return Request(first.context, tuple(c for r in item.requests for c in r.continuations), first.prefix_len)


def pack_items(task, items: list, batch_tokens: int, generation_unit: int, window: int | None) -> list[list[int]]:
    """Indices of `items` per unit, in order."""
    if task.kind == GENERATIVE_KIND:
        return [list(range(i, min(i + generation_unit, len(items)))) for i in range(0, len(items), generation_unit)]
    from prunelab.scoring.engine import plan_batches

    return [list(b.indices) for b in plan_batches([_representative(it) for it in items], batch_tokens, window)]


def check_generation_budget(task: str, items: list, sampling: Sampling, generation_tokens: int) -> None:
    """A clear error when one row (prompt + max_new_tokens) does not fit the decode budget."""
    longest = max(items, key=lambda it: len(it.request.prompt_ids))
    need = len(longest.request.prompt_ids) + sampling.max_new_tokens
    if need > generation_tokens:
        raise ConfigError(f"sweep.generation_tokens is {generation_tokens}, but {task} item {longest.id} needs {need} "
                          f"KV tokens ({len(longest.request.prompt_ids)} of prompt + max_new_tokens "
                          f"{sampling.max_new_tokens}); raise sweep.generation_tokens to at least {need} or lower "
                          f"the task's max_new_tokens")


def plan_units(tasks: dict, tokenizer, candidates: Iterable[Candidate], done: set, *, batch_tokens: int,
               generation_unit: int, window: int | None = None, generation_tokens: int | None = None) -> Plan:
    """Units of work for `tasks` (name -> task) and `candidates`, leaving out the (task, candidate, item) triples
    in `done`. `generation_tokens`: the decode budget of the multi-candidate engine, which must hold every row
    (checked here, before any work starts)."""
    candidates = list(candidates)
    units, floors = [], {}
    for name, task in tasks.items():
        items = task.items(tokenizer)
        generative = task.kind == GENERATIVE_KIND
        if not generative:
            floors[name] = chance_floor(items)
        sampling = task.sampling(items[0].reference["chat"]) if generative and items else None
        if sampling is not None and generation_tokens is not None:
            check_generation_budget(name, items, sampling, generation_tokens)
        for chunk in pack_items(task, items, batch_tokens, generation_unit, window):
            unit_items = tuple(items[i] for i in chunk)
            todo = tuple(c for c in candidates if any((name, c, it.id) not in done for it in unit_items))
            if todo:
                units.append(Unit(name, unit_items, todo, sampling))
    return Plan(tasks, candidates, units, floors)


def spread(units: list[Unit], workers: int) -> list[Unit]:
    """`units` split in halves until there are `workers` of them: with fewer units than workers the rest would idle,
    as in a sweep whose last task is one generative unit for every layer, or an evaluation's generative task (one
    candidate, one unit). The unit with the most candidates is split by candidates (a split generative unit only
    splits its decode batch; a classification unit repeats its base pass); once none has two, the largest generative
    unit by items. Every (task, item, candidate) stays, once."""
    units = list(units)
    while units and len(units) < workers:
        i = max(range(len(units)), key=lambda k: (len(units[k].candidates),
                                                  len(units[k].items) if units[k].generative else 0))
        unit = units[i]
        if len(unit.candidates) >= 2:
            half = (len(unit.candidates) + 1) // 2
            parts = [replace(unit, candidates=unit.candidates[:half]), replace(unit, candidates=unit.candidates[half:])]
        elif unit.generative and len(unit.items) >= 2:
            half = (len(unit.items) + 1) // 2
            parts = [replace(unit, items=unit.items[:half]), replace(unit, items=unit.items[half:])]
        else:
            break
        units[i:i + 1] = parts
    return units
