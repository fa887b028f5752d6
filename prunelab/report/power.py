"""What a run's sizes can detect, said before it runs (`--check`) and as soon as the base model's scores are known
(a warning naming the task and the limit that would make it testable).

On a 0/1 metric the exact paired test can only find a drop among the items the base model solves
(`prunelab.significance`): with k of them, over a family of m candidates adjusted by Holm, a drop can be
significant only from k >= successes_needed(m).
"""

import contextlib
import logging
import math

import numpy as np

from prunelab.significance import detectable_drop, successes_needed

log = logging.getLogger(__name__)
CONTINUOUS = {"xsum"}  # tasks whose primary metric is not 0/1 (ROUGE): the exact test's bounds do not apply


def _family(config) -> tuple[int | None, str]:
    """How many candidates a stage tests per task (its Holm family), and what they are."""
    kind = config.kind
    if kind == "eval":
        return 1, "the model against the base model"
    if kind == "compare-strategies":
        n = len(config.strategies) * len(config.ratios)
        return n, f"{n} strategy x ratio models"
    if config.sweep.layers is not None:
        return len(config.sweep.layers), f"{len(config.sweep.layers)} layers"
    layers = _num_layers(config.model)
    return layers, f"{layers} layers" if layers else "the model's layers"


def _num_layers(model) -> int | None:
    """The model's layer count from its config alone (no weights, no tokenizer); None where it cannot be read."""
    try:
        from transformers import AutoConfig

        from prunelab.models.loading import resolve_model_path
        from prunelab.models.view import text_config

        config = AutoConfig.from_pretrained(resolve_model_path(model.name), revision=model.revision,
                                            trust_remote_code=model.trust_remote_code)
        return int(text_config(config).num_hidden_layers)
    except Exception:  # offline hub id, unknown family: --check says it does not know rather than failing
        return None


def _stage_lines(tasks, family: int | None, what: str, alpha: float, power: float) -> list[str]:
    lines = []
    for task in tasks:
        if task.name in CONTINUOUS:
            lines.append(f"{task.name}: a continuous metric (ROUGE); the exact test's bounds do not apply")
            continue
        n = task.limit
        if family is None:
            lines.append(f"{task.name}: {n or 'all'} items over {what}: the family size is unknown here")
            continue
        need = successes_needed(family, alpha)
        line = (f"{task.name}: {n or 'all'} items, tested over {what}: a drop can be significant only if the base "
                f"model solves {need} or more")
        if n:
            shares = [(label, math.floor(n * share)) for label, share in (("all", 1), ("3/4", 0.75), ("1/2", 0.5))]
            found = [f"{label} {detectable_drop(k, family, alpha, power):.2f}" if k >= need else
                     f"{label} cannot be tested" for label, k in shares]
            line += f"; smallest drop detectable with {power:.0%} power if it solves {', '.join(found)}"
        lines.append(line)
    return lines


def check_lines(config) -> list[str]:
    """What each task of a sweep, eval, compare or pipeline config can detect (`--check` prints them)."""
    stats = getattr(config, "stats", None)
    if stats is None or not hasattr(config, "tasks"):
        return []
    alpha, power = stats.alpha, stats.power
    if config.kind != "pipeline":
        family, what = _family(config)
        return _stage_lines(config.tasks, family, what, alpha, power)
    lines = []
    if config.sweep is not None:
        layers = config.sweep.sweep.layers
        family = len(layers) if layers is not None else _num_layers(config.model)
        lines += ["sweep:"] + [f"  {x}" for x in _stage_lines(config.sweep.tasks or config.tasks, family,
                                                               f"{family} layers" if family else "the model's layers",
                                                               alpha, power)]
    n = len(config.prune.strategies) * len(config.prune.ratios)
    lines += ["pruned models:"] + [f"  {x}" for x in _stage_lines(config.tasks, n, f"{n} strategy x ratio models",
                                                                  alpha, power)]
    if config.recover is not None:
        lines += ["recovery:", f"  {recovery_line(config.recover, alpha)}"]
    return lines


def recovery_line(recover, alpha: float) -> str:
    """What a recovery comparison needs: every model against the pruned model and against SFT on SGR is one family
    per task row, and a difference between two models rests on the items where they differ."""
    from prunelab.config import recovery_arms

    arms = [arm for arm, _, _ in recovery_arms(recover)]
    family = len(arms) + (len(arms) - 1 if "sgr" in arms else 0)
    from scipy.stats import binomtest

    need = successes_needed(family, alpha)
    with_one = next(n for n in range(need, 10 * need) if family * binomtest(1, n + 1, 0.5).pvalue < alpha)
    return (f"{len(arms)} recovered models, {family} comparisons per task row (against the pruned model"
            f"{' and against SFT on SGR' if 'sgr' in arms else ''}): a difference can be significant only where the "
            f"two models differ on {need} or more items, all in one direction ({with_one} one way and 1 the other, "
            "and so on)")


def warn_untestable(per_task_base: dict[str, np.ndarray], family: int, alpha: float = 0.05) -> list[str]:
    """Warnings (logged and returned) for the 0/1 tasks on which the base model solves too few items for any
    drop to be significant over `family` candidates, each naming the limit that would make it testable at the
    base model's rate. `per_task_base`: task -> the base model's per-item values."""
    need = successes_needed(family, alpha)
    out = []
    for task, values in per_task_base.items():
        values = np.asarray(values, float)
        if not len(values) or not np.isin(values, (0.0, 1.0)).all() or values.sum() >= need:
            continue
        solved = int(values.sum())
        fix = (f"at its rate ({solved} of {len(values)}) that takes about {math.ceil(need * len(values) / solved)} "
               f"items: raise {task}'s limit" if solved else "it solves none: use a larger or easier sample, or "
               "another task")
        message = (f"{task}: the base model solves {solved} of {len(values)} items; over {family} candidates no drop "
                   f"can reach p < {alpha:g} after adjustment (that needs {need} solved items); {fix}. Its verdicts "
                   "will read 'cannot be tested at this size'.")
        log.warning(message)
        out.append(message)
    return out


@contextlib.contextmanager
def each_warning_once():
    """Within the context, a power warning already logged is not logged again: a pipeline's evaluations each
    report the same task's limit (the functions still return every warning)."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in seen:
            return False
        seen.add(message)
        return True

    log.addFilter(first_time)
    try:
        yield
    finally:
        log.removeFilter(first_time)


def pipeline_warnings(config, base_values: dict[str, np.ndarray]) -> list[str]:
    """As soon as a pipeline's eval-base is done: the tasks the compare stage cannot test (its strategy x ratio
    models are the family), and the sweep's tasks that at the base model's rate will hold too few solved items
    for a drop over the sweep's layers. `base_values`: task -> the base model's per-item values on eval-base."""
    out = warn_untestable(base_values, len(config.prune.strategies) * len(config.prune.ratios), config.stats.alpha)
    if config.sweep is None:
        return out
    layers = config.sweep.sweep.layers
    family = len(layers) if layers is not None else _num_layers(config.model)
    if family is None:
        return out
    need = successes_needed(family, config.stats.alpha)
    for spec in config.sweep.tasks or config.tasks:
        values = np.asarray(base_values.get(spec.name, []), float)
        if not len(values) or not np.isin(values, (0.0, 1.0)).all():
            continue
        rate = values.mean()
        limit = spec.limit or len(values)
        if rate * limit >= need:
            continue
        fix = (f"raise the sweep's {spec.name} limit to about {math.ceil(need / rate)}" if rate else
               "the base model solves none of them: sweep another task")
        message = (f"sweep {spec.name}: at the base model's rate on eval-base ({int(values.sum())} of {len(values)}), "
                   f"the sweep's {limit} items hold about {rate * limit:.0f} solved, fewer than the {need} a drop "
                   f"needs to be significant over {family} layers; {fix}. Its verdicts will read 'cannot be tested "
                   "at this size'.")
        log.warning(message)
        out.append(message)
    return out
