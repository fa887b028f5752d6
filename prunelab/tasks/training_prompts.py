"""Task-aligned prompts (the paper's "ideal conditions"): a generative task's training split asked exactly the way
the task asks its test items (zero-shot, the task's own instruction), the reference answer being the one the task
shows as a few-shot example (GSM8K's worked solution, MBPP's code block, XSum's summary).

    task_prompts("gsm8k")                       # openai/gsm8k:main, split train (the hub: no package ships it)
    task_prompts("mbpp", "/data/mbpp-saved")    # a saved dataset directory with a train split

The split is disjoint from the test split by the dataset's construction; SGR's prompt selection still checks every
prompt against every test item of `prompts.exclude_tasks`, as for any corpus.
"""

from prunelab.data.benchmarks import load_training_rows
from prunelab.data.prompts import Prompt
from prunelab.errors import DataError

PREFIX = "task:"


def parse_task_source(source: str) -> tuple[str, str | None] | None:
    """`task:NAME[@DATASET]` -> (NAME, DATASET or None); any other source -> None."""
    if not source.startswith(PREFIX):
        return None
    name, _, dataset = source[len(PREFIX):].partition("@")
    return name, dataset or None


def task_prompts(name: str, dataset: str | None = None) -> list[Prompt]:
    from prunelab.tasks import TASKS, build_task, generative_tasks

    with_train = [n for n in generative_tasks() if TASKS.load(n).data.train_split]
    if name not in generative_tasks():
        raise DataError(f"prompt corpus 'task:{name}': {name!r} is not a generative task; task-aligned prompts come "
                        f"from the training split of one of: {', '.join(with_train)}")
    if name not in with_train:
        raise DataError(f"prompt corpus 'task:{name}': benchmark {name!r} has no training split here; benchmarks "
                        f"with one: {', '.join(with_train)}")
    task = build_task(name)
    prompts = []
    for row in load_training_rows(task.data, dataset):
        turns, _ = task.prompt(row, [])
        prompts.append(Prompt(f"{name}-{row['id']}", tuple(turns), task.shot_answer(row)))
    return prompts
