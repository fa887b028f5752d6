"""Calibration, selection and recovery-prompt data must not contain test items: a strategy fitted (or a model
fine-tuned) on the test split would make its retention look better than it is."""

from collections.abc import Sequence

from prunelab.errors import DataError

MIN_CHARS = 40  # shorter test texts ("Question: Which is a mammal?") match by chance


def test_texts(task_name: str) -> list[str]:
    """The identifying text of every item of a task's test split (all of it, not only a sample): the task's own
    `test_texts()`."""
    from prunelab.tasks import build_task

    return build_task(task_name).test_texts()


def find_overlaps(texts: Sequence[str], task_names: Sequence[str]) -> dict[int, tuple[str, str]]:
    """text index -> (task, test item) for every text that contains a test item of one of the tasks.

    Test items are indexed by their first MIN_CHARS characters, so each text is scanned once per task (a set lookup
    per position) instead of once per test item: 17k prompts against HellaSwag's 10k items take seconds."""
    found: dict[int, tuple[str, str]] = {}
    for name in task_names:
        by_head: dict[str, list[str]] = {}
        for item in test_texts(name):
            probe = item.strip()
            if len(probe) >= MIN_CHARS:
                by_head.setdefault(probe[:MIN_CHARS], []).append(probe)
        if not by_head:
            continue
        for i, text in enumerate(texts):
            if i in found:
                continue
            for start in range(len(text) - MIN_CHARS + 1):
                items = by_head.get(text[start : start + MIN_CHARS])
                hit = next((p for p in items if text.startswith(p, start)), None) if items else None
                if hit is not None:
                    found[i] = (name, hit)
                    break
    return found


def check_disjoint(texts: list[str], task_names: list[str], what: str = "calibration data") -> None:
    """A `DataError` naming the task and item if any test item's text appears inside one of `texts`."""
    overlaps = find_overlaps(texts, task_names)
    if overlaps:
        i = min(overlaps)
        name, item = overlaps[i]
        raise DataError(f"{what} overlaps the test split of {name}: text {i} contains the test item {item[:80]!r}... "
                        f"({len(overlaps)} of {len(texts)} texts overlap); choose calibration data disjoint from the "
                        "evaluated tasks")
