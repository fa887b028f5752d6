"""A sweep worker: holds one loaded model and scores units of requests for many candidates.

Plain Python; `prunelab.sweep.ray_runner` wraps it as a Ray actor. `prepare` runs the full model on a unit and
records every layer's input; `score` then evaluates "these layers removed" from those records.
"""

import torch

from prunelab.generation import Generation, GenerationRequest, HFBackend, Sampling
from prunelab.models import load_model
from prunelab.scoring.engine import Batch, Capture, Scorer
from prunelab.scoring.requests import Request, Scores
from prunelab.surgery import check_layers, keep_layers


class SweepWorker:
    def __init__(self, model: str, dtype: str = "auto", revision: str | None = None,
                 batch_tokens: int = 4096, num_threads: int | None = None, device: str | None = None,
                 generation_batch_size: int = 8):
        if num_threads:
            torch.set_num_threads(num_threads)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per actor per load is noise in the driver's log
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, tokenizer = load_model(model, dtype=dtype, device=device, revision=revision)
        self.scorer = Scorer(self.model, batch_tokens=batch_tokens)
        self.generator = HFBackend(self.model, tokenizer, batch_size=generation_batch_size)
        self._unit: tuple[list[Request], list[tuple[Batch, Capture]]] | None = None

    def prepare(self, requests: list[Request]) -> list[Scores]:
        """Runs the full model on one unit of requests, keeps its layer inputs, and returns the base scores."""
        self._unit = None
        scores: list[Scores | None] = [None] * len(requests)
        captured = []
        for batch in self.scorer.plan(requests):
            batch_scores, capture = self.scorer.run(requests, batch, capture=True)
            for i, s in zip(batch.indices, batch_scores):
                scores[i] = s
            captured.append((batch, capture))
        self._unit = (requests, captured)
        return scores

    def score(self, removed: tuple[int, ...]) -> list[Scores]:
        """Scores the prepared unit with layers `removed` dropped, resuming from the first removed layer."""
        if self._unit is None:
            raise RuntimeError("score() called before prepare()")
        requests, captured = self._unit
        removed = tuple(check_layers(removed, self.scorer.num_layers))
        scores: list[Scores | None] = [None] * len(requests)
        for batch, capture in captured:
            if removed:
                start = removed[0]
                keep = [l for l in range(start + 1, self.scorer.num_layers) if l not in removed]
                batch_scores = self.scorer.run(requests, batch, keep=keep, resume=(start, capture))[0]
            else:
                batch_scores = self.scorer.run(requests, batch)[0]
            for i, s in zip(batch.indices, batch_scores):
                scores[i] = s
        return scores

    def generate(self, requests: list[GenerationRequest], removed: tuple[int, ...],
                 sampling: Sampling) -> list[Generation]:
        """Generates for `requests` with layers `removed` dropped (a temporary view of the loaded model)."""
        removed = tuple(check_layers(removed, self.scorer.num_layers))
        keep = [l for l in range(self.scorer.num_layers) if l not in removed]
        with keep_layers(self.model, keep):
            return self.generator.generate(requests, sampling)
