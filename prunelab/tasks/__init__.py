"""Tasks by name. Classification tasks score log-likelihoods with the engine; generative tasks generate and score
the outputs. Each is built from a `TaskSpec`'s fields."""

from prunelab.errors import ConfigError
from prunelab.tasks.arithmetic import ArithmeticProbe
from prunelab.tasks.base import Item, Task, flatten, regroup
from prunelab.tasks.code import MBPP, HumanEval
from prunelab.tasks.generative import GenerativeTask, GenItem
from prunelab.tasks.gsm8k import GSM8K
from prunelab.tasks.mmlu import MMLU
from prunelab.tasks.multiple_choice import SOURCES, MultipleChoiceTask, WinoGrande
from prunelab.tasks.xsum import XSum

GENERATIVE = {"gsm8k": GSM8K, "humaneval": HumanEval, "mbpp": MBPP, "xsum": XSum}
CLASSIFICATION_NAMES = ("arithmetic", *SOURCES, "winogrande", "mmlu")
TASK_NAMES = (*CLASSIFICATION_NAMES, *GENERATIVE)


def is_generative(name: str) -> bool:
    return name in GENERATIVE


def build_task(name: str, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0, **generation):
    """A task by name; `generation` holds generative tasks' options (chat, max_new_tokens, temperature, top_p,
    dataset, and for code tasks timeout_s, memory_mb, workers)."""
    if name in GENERATIVE:
        return GENERATIVE[name](limit=limit, seed=seed, num_fewshot=num_fewshot, **generation)
    if name not in CLASSIFICATION_NAMES:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASK_NAMES)}")
    if generation:
        raise ConfigError(f"task {name!r} is scored by log-likelihood; {', '.join(sorted(generation))} only apply to "
                          f"generative tasks ({', '.join(GENERATIVE)})")
    if name == "arithmetic":
        if num_fewshot not in (0, 3):
            raise ConfigError(f"tasks.arithmetic.num_fewshot is {num_fewshot}; the probe's prompt is fixed 3-shot")
        return ArithmeticProbe(limit=limit, seed=seed)
    if name == "winogrande":
        return WinoGrande(limit=limit, seed=seed, num_fewshot=num_fewshot)
    if name == "mmlu":
        return MMLU(limit=limit, seed=seed, num_fewshot=num_fewshot)
    return MultipleChoiceTask(name, limit=limit, seed=seed, num_fewshot=num_fewshot)


__all__ = ["CLASSIFICATION_NAMES", "GENERATIVE", "TASK_NAMES", "GenItem", "GenerativeTask", "Item", "Task",
           "build_task", "flatten", "is_generative", "regroup"]
