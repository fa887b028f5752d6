"""The one selection path of `prunelab prune` and `prunelab compare-strategies`: strategies x ratios -> layers.

`LayerChooser(...)` checks everything first (the ratios against the model's layer count, calibration and selection
data against the test tasks), reading no weights and writing nothing, so a stage can refuse bad input before it
touches its output directory. `choose(strategy, ratio)` then selects; what strategies share is computed once: the
calibration pass (block influence and angular, every ratio) and the greedy rounds (every ratio is a prefix of the
largest one's order).
"""

import logging
from collections.abc import Callable

from prunelab.hardware import device_name
from prunelab.strategies.base import Context, Selection, count_to_remove
from prunelab.strategies.registry import STRATEGIES

log = logging.getLogger(__name__)


class LayerChooser:
    def __init__(self, model, options, strategies: list[str], ratios: list[float], test_tasks: list,
                 device: str = "auto", greedy: Callable[[int], Selection] | None = None, progress: bool = True):
        """`model`: a ModelSpec; `options`: the config's strategy settings (StrategyOptions); `test_tasks`: TaskSpecs of the evaluation
        (their items are what selection data must avoid);
        `greedy(n)`: runs n greedy rounds (the iterative strategy's evaluations, on the caller's executor)."""
        from prunelab.data.corpora import load_corpus, texts_hash
        from prunelab.models import inspect_model
        from prunelab.tasks.overlap import check_disjoint

        for name in strategies:
            STRATEGIES.check(name)
        self.model, self.options, self.device, self.progress = model, options, device, progress
        self.facts = inspect_model(model)
        self.counts = {r: count_to_remove(r, self.facts.num_layers) for r in ratios}
        self.data: dict = {}
        self._texts = self._pass = None
        needs = {STRATEGIES.entry(s).needs for s in strategies}
        if "calibration" in needs:
            cal = options.calibration
            self._texts = load_corpus(cal.source, limit=cal.samples, seed=cal.seed)
            check_disjoint(self._texts, [t.name for t in test_tasks])
            self.data |= {"calibration": cal.source, "calibration_samples": len(self._texts),
                          "calibration_seed": cal.seed, "calibration_sha256": texts_hash(self._texts),
                          "max_length": cal.max_length}
        self.held_out: set[str] = set()
        self.test_items: dict[str, set[str]] = {}
        if "sweep" in needs:  # sweep_score ranks on the sweep's items the test sample does not hold
            self.test_items = {t.name: {it.id for it in t.build().items(self.facts.tokenizer)} for t in test_tasks}
        if "selection" in needs:
            self._check_selection(test_tasks)
        self._greedy_run = greedy
        self._greedy: Selection | None = None

    def _check_selection(self, test_tasks: list) -> None:
        """The selection task's test items are held out of the selection split (`tasks.held_out`); the split then
        cannot overlap them, and is checked anyway."""
        from prunelab.strategies.iterative import check_selection_disjoint
        from prunelab.tasks.held_out import selection_split

        spec, tokenizer = self.options.selection, self.facts.tokenizer
        test_ids = {t.name: {it.id for it in t.build().items(tokenizer)} for t in test_tasks if t.name == spec.name}
        self.held_out = test_ids.get(spec.name, set())
        _, items = selection_split(spec, self.held_out, tokenizer)
        if not items:
            from prunelab.errors import DataError

            raise DataError(f"selection {spec.name}: every item is in the test sample; test on fewer items, or "
                            "select on another task")
        check_selection_disjoint(items, test_ids, spec.name)

    def _calibration(self):
        if self._pass is None:

            from prunelab.models import load_model
            from prunelab.strategies.similarity import calibration_pass

            device = device_name(self.device)
            m = self.model
            model, tokenizer = load_model(m.name, dtype=m.dtype, device=device, revision=m.revision,
                                          trust_remote_code=m.trust_remote_code)
            self._pass = calibration_pass(model, tokenizer, self._texts, self.options.calibration.max_length,
                                          progress=self.progress)
            del model
        return self._pass

    def _greedy_prefix(self, n: int) -> Selection:
        if self._greedy is None or len(self._greedy.details["order"]) < n:
            self._greedy = self._greedy_run(max(n, *self.counts.values()), self.held_out)
            self.data |= {"selection_task": self._greedy.details["selection_task"],
                          "selection_sha256": self._greedy.details["selection_sha256"]}
        order = self._greedy.details["order"][:n]
        return Selection("iterative", sorted(order), {str(layer): self._greedy.scores[str(layer)] for layer in order},
                         {**self._greedy.details, "order": order})

    def choose(self, strategy: str, ratio: float) -> Selection:
        n = self.counts[ratio]
        ctx = Context(self.facts.num_layers, calibration=self._calibration, greedy=self._greedy_prefix,
                      test_items=self.test_items)
        selection = STRATEGIES.load(strategy)(n, ctx, self.options.settings_for(strategy))
        log.info("%s@%g removes %s", strategy, ratio, selection.removed)
        return selection

    @property
    def greedy_rounds(self) -> list | None:
        return self._greedy.details["rounds"] if self._greedy else None
