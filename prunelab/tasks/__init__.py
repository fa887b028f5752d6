"""Tasks by name, imported lazily. Classification tasks score log-likelihoods with the engine; generative tasks
generate and score the outputs. A new task is one module plus one line in `TASKS`.

Each entry's kind is known without importing it, so configs validate without torch or any task's data libraries.
"""

from prunelab.registry import Entry, Registry
from prunelab.tasks.base import CLASSIFICATION, GENERATIVE_KIND, Item, Task, chance_floor, flatten, regroup

TASKS = Registry("task", {
    "arithmetic": Entry("prunelab.tasks.arithmetic:ArithmeticProbe", CLASSIFICATION),
    "arc_easy": Entry("prunelab.tasks.multiple_choice:arc_easy", CLASSIFICATION),
    "arc_challenge": Entry("prunelab.tasks.multiple_choice:arc_challenge", CLASSIFICATION),
    "piqa": Entry("prunelab.tasks.multiple_choice:piqa", CLASSIFICATION),
    "hellaswag": Entry("prunelab.tasks.multiple_choice:hellaswag", CLASSIFICATION),
    "openbookqa": Entry("prunelab.tasks.multiple_choice:openbookqa", CLASSIFICATION),
    "winogrande": Entry("prunelab.tasks.multiple_choice:WinoGrande", CLASSIFICATION),
    "mmlu": Entry("prunelab.tasks.mmlu:MMLU", CLASSIFICATION),
    "gsm8k": Entry("prunelab.tasks.gsm8k:GSM8K", GENERATIVE_KIND),
    "humaneval": Entry("prunelab.tasks.code:HumanEval", GENERATIVE_KIND),
    "mbpp": Entry("prunelab.tasks.code:MBPP", GENERATIVE_KIND),
    "xsum": Entry("prunelab.tasks.xsum:XSum", GENERATIVE_KIND),
})

GENERATIVE = TASKS.names_of_kind(GENERATIVE_KIND)


def is_generative(name: str) -> bool:
    return TASKS.entry(name).kind == GENERATIVE_KIND


def build_task(name: str, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0, **generation):
    """A task by name; `generation` holds generative tasks' options (chat, max_new_tokens, temperature, top_p,
    dataset, and for code tasks timeout_s, memory_mb, workers)."""
    from prunelab.errors import ConfigError

    TASKS.check(name)
    if generation and not is_generative(name):
        raise ConfigError(f"task {name!r} is scored by log-likelihood; {', '.join(sorted(generation))} only apply to "
                          f"generative tasks ({', '.join(GENERATIVE)})")
    return TASKS.load(name)(limit=limit, seed=seed, num_fewshot=num_fewshot, **generation)


def describe(task, floor: float | None = None) -> dict:
    """What a report needs to know of a task, fixed when its results are computed: kind, table label, primary
    metric, every metric, where its data came from, for classification tasks the chance floor of its items
    (`chance_floor`, given by the caller, which has them), and for code tasks how their programs were isolated and
    what they could import."""
    out = {"kind": task.kind, "label": getattr(task, "label", task.name),
           "primary_metric": task.primary_metric, "metrics": list(task.metrics), "source": task.source}
    if floor is not None:
        out["floor"] = floor
    if getattr(task, "sandbox", None):  # code tasks: how the generated programs were isolated
        out["sandbox"] = task.sandbox
        out["sandbox_imports"] = task.sandbox_imports
    return out


__all__ = ["GENERATIVE", "TASKS", "Item", "Task", "build_task", "chance_floor", "describe",
           "flatten", "is_generative", "regroup"]
