"""What a task is to the scoring engine: items, each one `Request` with a gold answer, and per-item metrics."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prunelab.data.sampling import sample_indices  # noqa: F401  (tasks import it from here)
from prunelab.registry import Entry
from prunelab.scoring.requests import Request, Scores


@dataclass(frozen=True)
class Item:
    """One evaluation item: usually one request (a context and its choices); WinoGrande's choices are contexts, so
    its items hold one request per choice."""

    id: str
    requests: tuple[Request, ...]
    gold: int  # index of the correct choice
    choice_chars: tuple[int, ...] = field(default=())  # choice lengths in characters, for acc_norm

    @property
    def request(self) -> Request:
        if len(self.requests) != 1:
            raise ValueError(f"item {self.id} has {len(self.requests)} requests")
        return self.requests[0]


def chance_floor(items: Sequence[Item]) -> float:
    """What always giving the same answer scores on `items` (the most frequent gold position; for the arithmetic
    probe the most frequent first digit), or a uniform guess if that is higher: `prunelab.significance`."""
    from prunelab.significance import chance_floor as floor

    choices = [len(it.requests) if len(it.requests) > 1 else len(it.requests[0].continuations) for it in items]
    return floor([it.gold for it in items], choices)


def flatten(items: Sequence[Item]) -> list[Request]:
    """Every request of every item, in order (what the engine scores)."""
    return [r for it in items for r in it.requests]


def regroup(items: Sequence[Item], scores: Sequence[Scores]) -> list[list[Scores]]:
    """Splits the engine's flat scores back into one list per item."""
    out, i = [], 0
    for it in items:
        out.append(list(scores[i : i + len(it.requests)]))
        i += len(it.requests)
    return out


CLASSIFICATION, GENERATIVE_KIND = "classification", "generative"  # lm-eval's loglikelihood / generate_until


@dataclass(frozen=True)
class TaskEntry(Entry):
    """A task in the registry, with what configs must know of it before anything is imported."""

    kind: str = CLASSIFICATION  # CLASSIFICATION or GENERATIVE_KIND
    sandbox: bool = False  # it runs generated code (the sandbox's limits in `generation` apply to it)


class Task(Protocol):
    """What every task is: a name, its kind, its metrics (the primary one used by tables and verdicts), where its
    data comes from, and the text of its test items (what calibration, selection and recovery data must not
    contain; empty for a task whose items are generated)."""

    name: str
    kind: str  # CLASSIFICATION or GENERATIVE_KIND: how it is computed, what its items hold
    primary_metric: str
    metrics: tuple[str, ...]
    source: str

    def items(self, tokenizer) -> list:
        """The task's evaluation items, tokenized for this model; deterministic for a given config."""

    def test_texts(self) -> list[str]:
        """The identifying text of every item of the test split (all of it, not only the evaluated sample)."""


class ClassificationTask(Task, Protocol):
    """Scored by log-likelihood (lm-eval's `loglikelihood`): items hold `Request`s the engine scores."""

    def items(self, tokenizer) -> list[Item]: ...

    def score_item(self, item: Item, scores: Sequence[Scores]) -> dict[str, float]:
        """Per-item metrics from the engine's scores of the item's requests; the task's value is their mean."""


class GenerativeTaskContract(Task, Protocol):
    """Scored on generated text (lm-eval's `generate_until`): items hold one prompt each
    (`prunelab.tasks.generative.GenerativeTask` is the shared implementation)."""

    def sampling(self, chat: bool): ...

    def score_with_samples(self, items: Sequence, generations: Sequence, progress: bool = False) -> tuple[list, list]:
        """(per-item metrics, per-item samples: what was scored from each output)."""
