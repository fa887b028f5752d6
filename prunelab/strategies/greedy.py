"""Iterative greedy pruning: each round evaluates every remaining layer's removal (on top of the layers already
removed) on a selection split with a task metric, and removes the layer whose removal keeps the most.

Unlike the original implementation, the base model's score is computed once, on a fixed seeded selection split
(it re-sampled the split, and so the base score, every round). A round's candidates run in parallel through the
sweep machinery (Ray actors that load the model once and resume from the first removed layer's recorded input);
every result is written as it lands under `<output>/greedy/`, so a stopped run resumes inside the round it was in,
and the layers chosen so far are re-derived from stored results, never recomputed. Ties go to the later layer.
"""

import logging
from pathlib import Path

from prunelab.data.corpora import texts_hash
from prunelab.errors import DataError
from prunelab.strategies import Selection

log = logging.getLogger(__name__)


def check_selection_disjoint(selection_items, test_items: dict[str, set[str]], task: str) -> None:
    overlap = {it.id for it in selection_items} & test_items.get(task, set())
    if overlap:
        raise DataError(f"the selection split overlaps the test split of {task}: {len(overlap)} items (e.g. "
                        f"{sorted(overlap)[0]!r}); choose another selection seed, limit or task")


def iterative_greedy(config, n: int, root: Path, address: str | None = None, progress: bool = True) -> Selection:
    """`config`: an experiment config whose `tasks` is the selection task alone (a SweepConfig). Removes `n` layers;
    a longer run later continues the same path (its first rounds are the stored ones)."""
    from prunelab.report import item_rows
    from prunelab.sweep.plan import plan_sweep
    from prunelab.sweep.run import compute
    from prunelab.sweep.store import ResultsStore, candidate_name

    store = ResultsStore(root, model=config.model.name)
    store.claim(config.identity(), config.model_dump())
    (spec,) = config.tasks
    removed: list[int] = []
    rounds = []
    total = _num_layers(config)
    for round_no in range(n):
        candidates = {layer: tuple(sorted([*removed, layer])) for layer in range(total) if layer not in removed}
        plan = plan_sweep(config, store.done(), candidates=[(), *candidates.values()])
        compute(config, store, plan, address, progress)
        metric = plan.tasks[spec.name].primary_metric
        rows = item_rows(store.read())
        rows = rows[(rows.task == spec.name) & (rows.metric == metric)]
        means = rows.groupby("candidate")["value"].mean()
        scores = {layer: float(means[candidate_name(c)]) for layer, c in candidates.items()}
        best = max(scores, key=lambda layer: (scores[layer], layer))
        rounds.append({"removed_before": list(removed), "base": float(means["base"]),
                       "scores": {str(k): v for k, v in sorted(scores.items())}, "chosen": best})
        removed.append(best)
        log.info("greedy round %d: remove layer %d (%s %.4f; base %.4f)", round_no + 1, best, metric, scores[best],
                 means["base"])
    final = {str(l): r["scores"][str(l)] for r, l in zip(rounds, removed)}
    return Selection("iterative", sorted(removed), final,
                     {"order": removed, "rounds": rounds, "selection_task": spec.model_dump(),
                      "selection_sha256": texts_hash(sorted(_selection_ids(config)))})


def _selection_ids(config) -> list[str]:
    from prunelab.models import load_tokenizer

    return [it.id for it in config.tasks[0].build(config.generation).items(load_tokenizer(config.model.name))]


def _num_layers(config) -> int:
    from transformers import AutoConfig

    from prunelab.models import resolve_model_path

    m = config.model
    return AutoConfig.from_pretrained(resolve_model_path(m.name), revision=m.revision).num_hidden_layers
