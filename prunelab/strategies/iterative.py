"""Iterative greedy pruning: each round evaluates every remaining layer's removal (on top of the layers already
removed) on a selection split with a task metric, and removes the layer whose removal keeps the most.

Unlike the original implementation, the base model's score is computed once, on a fixed seeded selection split
(it re-sampled the split, and so the base score, every round). A round's candidates run through the sweep machinery
(`run_plan` on the caller's executor: Ray actors that load the model once and resume from the first removed layer's
recorded input); every result is written as it lands in the greedy directory, so a stopped run resumes inside the round it was in,
and the layers chosen so far are re-derived from stored results, never recomputed. Ties go to the later layer.
"""

import logging
from pathlib import Path

from prunelab.data.corpora import texts_hash
from prunelab.errors import DataError
from prunelab.strategies.base import Context, Selection

log = logging.getLogger(__name__)


def select(n: int, ctx: Context, settings) -> Selection:
    return ctx.greedy(n)


def check_selection_disjoint(selection_items, test_items: dict[str, set[str]], task: str) -> None:
    overlap = {it.id for it in selection_items} & test_items.get(task, set())
    if overlap:
        raise DataError(f"the selection split overlaps the test split of {task}: {len(overlap)} items (e.g. "
                        f"{sorted(overlap)[0]!r}); choose another selection seed, limit or task")


def iterative_greedy(model, selection, n: int, root: Path, executor, worker, batch_tokens: int,
                     generation_unit: int, progress: bool = True, held_out: frozenset = frozenset()) -> Selection:
    """Removes `n` layers of `model` (a ModelSpec) greedily, scoring each round on `selection` (a TaskSpec), with
    results stored under `root`; a longer run later continues the same path (its first rounds are the stored ones).
    `executor` and `worker` (a WorkerSpec) compute the rounds. `held_out`: test item ids the split must not hold
    (`prunelab.tasks.held_out.selection_split`)."""
    from prunelab.execution.plan import plan_units
    from prunelab.execution.run import run_plan
    from prunelab.models import inspect_model
    from prunelab.results import BASE, Candidate, ResultsStore, item_rows
    from prunelab.tasks.held_out import HeldOut, selection_split

    facts = inspect_model(model)
    task, items = selection_split(selection, set(held_out), facts.tokenizer)
    store = ResultsStore(root, model=model.name)
    split = {"held_out_sha256": texts_hash(sorted(held_out))} if isinstance(task, HeldOut) else {}
    store.claim({"model": model.identity(), "tasks": [selection.identity() | split]})
    removed: list[int] = []
    rounds = []
    for round_no in range(n):
        candidates = {layer: Candidate((*removed, layer)) for layer in range(facts.num_layers) if layer not in removed}
        plan = plan_units({selection.name: task}, facts.tokenizer, [BASE, *candidates.values()], store.done(),
                          batch_tokens=batch_tokens, generation_unit=generation_unit, window=facts.window,
                          generation_tokens=worker.generation_budget)
        run_plan(plan, store, executor, worker, progress, desc=f"greedy round {round_no + 1}")
        rows = item_rows(store.read())
        rows = rows[(rows.task == selection.name) & (rows.metric == task.primary_metric)]
        means = rows.groupby("candidate")["value"].mean()
        scores = {layer: float(means[c.name]) for layer, c in candidates.items()}
        best = max(scores, key=lambda layer: (scores[layer], layer))
        rounds.append({"removed_before": list(removed), "base": float(means["base"]),
                       "scores": {str(k): v for k, v in sorted(scores.items())}, "chosen": best})
        removed.append(best)
        log.info("greedy round %d: remove layer %d (%s %.4f; base %.4f)", round_no + 1, best, task.primary_metric,
                 scores[best], means["base"])
    final = {str(layer): r["scores"][str(layer)] for r, layer in zip(rounds, removed)}
    ids = [it.id for it in items]
    return Selection("iterative", sorted(removed), final,
                     {"order": removed, "rounds": rounds, "selection_task": selection.model_dump(),
                      "selection_sha256": texts_hash(sorted(ids))})
