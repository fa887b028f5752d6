"""Tasks by name. Each is built from a `TaskSpec` (name, limit, seed, num_fewshot)."""

from prunelab.errors import ConfigError
from prunelab.tasks.arithmetic import ArithmeticProbe
from prunelab.tasks.base import Item, Task, flatten, regroup
from prunelab.tasks.mmlu import MMLU
from prunelab.tasks.multiple_choice import SOURCES, MultipleChoiceTask, WinoGrande

TASK_NAMES = ("arithmetic", *SOURCES, "winogrande", "mmlu")


def build_task(name: str, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0) -> Task:
    if name == "arithmetic":
        if num_fewshot not in (0, 3):
            raise ConfigError(f"tasks.arithmetic.num_fewshot is {num_fewshot}; the probe's prompt is fixed 3-shot")
        return ArithmeticProbe(limit=limit, seed=seed)
    if name == "winogrande":
        return WinoGrande(limit=limit, seed=seed, num_fewshot=num_fewshot)
    if name == "mmlu":
        return MMLU(limit=limit, seed=seed, num_fewshot=num_fewshot)
    if name in SOURCES:
        return MultipleChoiceTask(name, limit=limit, seed=seed, num_fewshot=num_fewshot)
    raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASK_NAMES)}")


__all__ = ["TASK_NAMES", "Item", "Task", "build_task", "flatten", "regroup"]
