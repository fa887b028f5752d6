"""Calibration and selection data must not contain test items: a strategy fitted on the test split would make its
retention look better than it is."""

from prunelab.errors import DataError

MIN_CHARS = 40  # shorter test texts ("Question: Which is a mammal?") match by chance


def test_texts(task_name: str) -> list[str]:
    """The identifying text of every item of a task's test split (all of it, not only a sample)."""
    from prunelab.tasks import build_task, is_generative
    from prunelab.tasks.multiple_choice import SOURCES, MultipleChoiceTask

    if is_generative(task_name):
        from prunelab.data.benchmarks import load_benchmark

        field = {"gsm8k": "question", "humaneval": "prompt", "mbpp": "text", "xsum": "document"}[task_name]
        return [row[field] for row in load_benchmark(task_name)]
    if task_name in SOURCES:
        task = build_task(task_name)
        assert isinstance(task, MultipleChoiceTask)
        return [doc.text for doc in task.docs()]
    return []  # the arithmetic probe is generated; WinoGrande and MMLU items are checked through their own splits


def check_disjoint(texts: list[str], task_names: list[str], what: str = "calibration data") -> None:
    """A `DataError` naming the task and item if any test item's text appears inside one of `texts`."""
    for name in task_names:
        for item in test_texts(name):
            probe = item.strip()
            if len(probe) < MIN_CHARS:
                continue
            for i, text in enumerate(texts):
                if probe in text:
                    raise DataError(f"{what} overlaps the test split of {name}: text {i} contains the test item "
                                    f"{probe[:80]!r}...; choose calibration data disjoint from the evaluated tasks")
