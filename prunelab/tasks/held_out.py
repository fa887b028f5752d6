"""A task's items with another sample's items held out: a selection split disjoint from the test sample of the same
task by construction (the iterative strategy's greedy rounds are scored on it, the pruned model tested on the other).
"""

from prunelab.data.sampling import sample_indices


class HeldOut:
    """`pool` (a task built with no limit) without the items `exclude` names, `limit` of them drawn with `seed`;
    everything else (scoring, metrics, names) is the task's own."""

    def __init__(self, pool, exclude: set[str], limit: int | None, seed: int):
        self._pool, self._exclude, self._limit, self._seed = pool, frozenset(exclude), limit, seed

    def __getattr__(self, name):
        return getattr(self._pool, name)

    def items(self, tokenizer) -> list:
        items = [it for it in self._pool.items(tokenizer) if it.id not in self._exclude]
        return [items[i] for i in sample_indices(len(items), self._limit, self._seed)]


def selection_split(spec, test_ids: set[str], tokenizer):
    """The task of `spec` (a TaskSpec) for selection: its own seeded sample where that holds none of `test_ids` (so
    a selection accepted before keeps its items), else `spec.limit` items drawn with `spec.seed` from the items
    `test_ids` does not name. Returns (task, items)."""
    task = spec.build()
    items = task.items(tokenizer)
    if not test_ids & {it.id for it in items}:
        return task, items
    held = HeldOut(spec.model_copy(update={"limit": None}).build(), test_ids, spec.limit, spec.seed)
    return held, held.items(tokenizer)


__all__ = ["HeldOut", "selection_split"]
