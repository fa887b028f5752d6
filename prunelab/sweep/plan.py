"""Plan a sweep without loading weights: candidates, units of items, and what the store already holds."""

from dataclasses import dataclass

from transformers import AutoConfig, AutoTokenizer

from prunelab.config import SweepConfig
from prunelab.errors import ConfigError, ModelError
from prunelab.generation import GenerationRequest, Sampling
from prunelab.models import resolve_model_path
from prunelab.scoring.engine import plan_batches, sliding_window
from prunelab.scoring.requests import Request
from prunelab.surgery import check_supported
from prunelab.sweep.store import candidate_name
from prunelab.tasks import GenerativeTask, GenItem, Item, Task, flatten


@dataclass(frozen=True)
class Unit:
    """Items of one task. Classification: about one engine batch; a worker records their layer inputs once and
    scores every candidate on them. Generative (`sampling` set): a chunk of items each candidate generates for."""

    task: str
    items: tuple[Item, ...] | tuple[GenItem, ...]
    candidates: tuple[tuple[int, ...], ...]  # still to compute; () is the base model
    sampling: Sampling | None = None

    @property
    def generative(self) -> bool:
        return self.sampling is not None

    @property
    def requests(self) -> list[Request]:
        return flatten(self.items)

    @property
    def generation_requests(self) -> list[GenerationRequest]:
        return [it.request for it in self.items]


@dataclass
class SweepPlan:
    model_path: str
    num_layers: int
    tasks: dict[str, Task]
    candidates: list[tuple[int, ...]]
    units: list[Unit]

    @property
    def pending(self) -> int:
        return sum(len(u.candidates) for u in self.units)


def _representative(item: Item) -> Request:
    """One request standing for an item when units are packed: its first context, all its continuations' tokens."""
    first = item.requests[0]
    return Request(first.context, tuple(c for r in item.requests for c in r.continuations), first.prefix_len)


def sweep_candidates(layers: list[int] | None, num_layers: int) -> list[tuple[int, ...]]:
    if layers is None:
        layers = list(range(num_layers))
    bad = [l for l in layers if not 0 <= l < num_layers]
    if bad:
        raise ConfigError(f"sweep.layers has {bad} out of range; the model has {num_layers} layers (0..{num_layers - 1})")
    repeated = sorted({l for l in layers if layers.count(l) > 1})
    if repeated:
        raise ConfigError(f"sweep.layers repeats {repeated}; give each layer once")
    return [()] + [(l,) for l in sorted(layers)]


def plan_sweep(config: SweepConfig, done: set[tuple[str, str, str]],
               candidates: list[tuple[int, ...]] | None = None) -> SweepPlan:
    """Units of work for `config`'s tasks and candidates (the base model and each of `sweep.layers` removed, unless
    `candidates` lists the removed-layer sets to evaluate), leaving out what `done` already holds."""
    path = resolve_model_path(config.model.name)
    try:
        model_config = AutoConfig.from_pretrained(path, revision=config.model.revision)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=config.model.revision)
    except OSError as exc:
        raise ModelError(f"could not load model {config.model.name!r}: {exc}") from exc
    check_supported(model_config, config.model.name)
    num_layers = model_config.num_hidden_layers
    if candidates is None:
        candidates = sweep_candidates(config.sweep.layers, num_layers)
    window = sliding_window(model_config)

    tasks, units = {}, []
    for spec in config.tasks:
        task = spec.build(config.generation)
        tasks[spec.name] = task
        items = task.items(tokenizer)
        if isinstance(task, GenerativeTask):
            size = config.sweep.generation_unit
            chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
            sampling = task.sampling(items[0].reference["chat"]) if items else None
        else:
            batches = plan_batches([_representative(it) for it in items], config.sweep.batch_tokens, window)
            chunks, sampling = [b.indices for b in batches], None
        for chunk in chunks:
            unit_items = tuple(items[i] for i in chunk)
            todo = tuple(c for c in candidates
                         if any((spec.name, candidate_name(c), it.id) not in done for it in unit_items))
            if todo:
                units.append(Unit(spec.name, unit_items, todo, sampling))
    return SweepPlan(path, num_layers, tasks, candidates, units)
