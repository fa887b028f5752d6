"""What a task is to the scoring engine: items, each one `Request` with a gold answer, and per-item metrics."""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prunelab.scoring.requests import Request, Scores


@dataclass(frozen=True)
class Item:
    id: str
    request: Request
    gold: int  # index of the correct continuation
    choice_chars: tuple[int, ...] = field(default=())  # choice lengths in characters, for acc_norm


class Task(Protocol):
    name: str
    primary_metric: str
    metrics: tuple[str, ...]

    def items(self, tokenizer) -> list[Item]:
        """The task's evaluation items, tokenized for this model; deterministic for a given config."""

    def score_item(self, item: Item, scores: Scores) -> dict[str, float]:
        """Per-item metrics from the engine's scores; the task's value is their mean over items."""


def sample_indices(n: int, limit: int | None, seed: int, exclude: Sequence[int] = ()) -> list[int]:
    """A seeded, deterministic subsample of range(n) without `exclude`, in a shuffled but fixed order."""
    excluded = set(exclude)
    pool = [i for i in range(n) if i not in excluded]
    random.Random(seed).shuffle(pool)
    return pool if limit is None else pool[:limit]
