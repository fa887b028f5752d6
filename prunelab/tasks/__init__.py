"""Tasks by name, imported lazily. Classification tasks score log-likelihoods with the engine; generative tasks
generate and score the outputs (the two contracts: `tasks.base.ClassificationTask`, `GenerativeTaskContract`).

A new task is one module and one line in `TASKS` (or, from another package, `TASKS.register(name, TaskEntry(...))`).
The module owns everything about the task: its data (a generative task's `Benchmark`), its prompts and scoring,
and the text of its test items (`test_texts()`, for the overlap check). Each entry's kind, and whether it runs
generated code in the sandbox, are known without importing it, so configs validate without torch or any task's
data libraries.
"""

from prunelab.registry import Registry
from prunelab.tasks.base import (
    CLASSIFICATION,
    GENERATIVE_KIND,
    ClassificationTask,
    GenerativeTaskContract,
    Item,
    Task,
    TaskEntry,
    chance_floor,
    flatten,
    regroup,
)

TASKS = Registry("task", {
    "arithmetic": TaskEntry("prunelab.tasks.arithmetic:ArithmeticProbe"),
    "arc_easy": TaskEntry("prunelab.tasks.multiple_choice:arc_easy"),
    "arc_challenge": TaskEntry("prunelab.tasks.multiple_choice:arc_challenge"),
    "piqa": TaskEntry("prunelab.tasks.multiple_choice:piqa"),
    "hellaswag": TaskEntry("prunelab.tasks.multiple_choice:hellaswag"),
    "openbookqa": TaskEntry("prunelab.tasks.multiple_choice:openbookqa"),
    "winogrande": TaskEntry("prunelab.tasks.multiple_choice:WinoGrande"),
    "mmlu": TaskEntry("prunelab.tasks.mmlu:MMLU"),
    "gsm8k": TaskEntry("prunelab.tasks.gsm8k:GSM8K", GENERATIVE_KIND),
    "humaneval": TaskEntry("prunelab.tasks.code:HumanEval", GENERATIVE_KIND, sandbox=True),
    "mbpp": TaskEntry("prunelab.tasks.code:MBPP", GENERATIVE_KIND, sandbox=True),
    "xsum": TaskEntry("prunelab.tasks.xsum:XSum", GENERATIVE_KIND),
})


def generative_tasks() -> tuple[str, ...]:
    """The registered generative tasks, at the time of asking (a registered plugin counts)."""
    return TASKS.names_where(kind=GENERATIVE_KIND)


def is_generative(name: str) -> bool:
    return TASKS.entry(name).kind == GENERATIVE_KIND


def benchmark_rows(name: str, dataset: str | None = None) -> list[dict]:
    """The rows of generative task `name`'s benchmark (packaged, or from `dataset`)."""
    from prunelab.data.benchmarks import load_benchmark

    return load_benchmark(TASKS.load(name).data, dataset)


def build_task(name: str, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0, **generation):
    """A task by name; `generation` holds generative tasks' options (chat, max_new_tokens, temperature, top_p,
    dataset, and for code tasks timeout_s, memory_mb, workers)."""
    from prunelab.errors import ConfigError

    TASKS.check(name)
    if generation and not is_generative(name):
        raise ConfigError(f"task {name!r} is scored by log-likelihood; {', '.join(sorted(generation))} only apply to "
                          f"generative tasks ({', '.join(generative_tasks())})")
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


__all__ = ["CLASSIFICATION", "GENERATIVE_KIND", "TASKS", "ClassificationTask", "GenerativeTaskContract", "Item",
           "Task", "TaskEntry", "benchmark_rows", "build_task", "chance_floor", "describe", "flatten",
           "generative_tasks", "is_generative", "regroup"]
