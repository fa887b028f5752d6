"""Seeded subsamples shared by benchmark items, few-shot examples and corpora."""

import random
from collections.abc import Sequence


def sample_indices(n: int, limit: int | None, seed: int, exclude: Sequence[int] = ()) -> list[int]:
    """A seeded, deterministic subsample of range(n) without `exclude`, in a shuffled but fixed order."""
    excluded = set(exclude)
    pool = [i for i in range(n) if i not in excluded]
    random.Random(seed).shuffle(pool)
    return pool if limit is None else pool[:limit]
