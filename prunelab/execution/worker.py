"""A worker holds one loaded model and computes units of work for many candidates.

Plain Python: `prunelab.execution.run.InProcessExecutor` runs one in this process, `prunelab.distributed` wraps it as a Ray actor.
`prepare` runs the full model on a unit and records every layer's input; `score` then evaluates "these layers
removed" from those records; `generate` generates with layers removed from the loaded model (a temporary view).
The model loads on first use, so a worker that only generates with a checkpoint backend (vLLM) never loads it twice.
"""

import logging
import os
from dataclasses import dataclass

from prunelab.generation.base import Generation, GenerationRequest, Sampling
from prunelab.hardware import device_name
from prunelab.scoring.requests import Request, Scores

log = logging.getLogger(__name__)
MULTI_CANDIDATE = "multi-candidate"


@dataclass(frozen=True)
class WorkerSpec:
    """Which model a worker loads and how it computes (not what: that is the unit)."""

    model: str
    dtype: str = "auto"
    revision: str | None = None
    trust_remote_code: bool = False
    batch_tokens: int = 4096
    generation_batch_size: int = 8
    scorer: str = "prunelab"  # or "lm-eval": lm-eval's own HF backend (the model as loaded, no layer removal)
    generator: str = "hf"  # a name in prunelab.generation.GENERATION_BACKENDS
    generation_engine: str = "per-candidate"  # or "multi-candidate" (prunelab.generation.candidates), sweeps only
    generation_tokens: int = 32768  # the multi-candidate engine's decode batch, in KV tokens
    device: str | None = None  # cuda if available, else cpu
    threads: int | None = None
    # a vLLM generator's engine: the config's `vllm` settings as sorted (name, value) pairs (hashable), the share of
    # each GPU this worker holds (the executor's num_gpus, at most 1) and the longest request it will get
    vllm_engine: tuple = ()
    gpu_share: float = 1.0
    max_request_tokens: int | None = None
    batch_invariant: bool = False  # vLLM engines started with VLLM_BATCH_INVARIANT=1 (generation.exact)
    planned_dtype: str | None = None  # what `dtype` resolves to where the run was planned (for this device kind)

    @property
    def vllm_args(self) -> dict:
        """The vLLM engine's arguments (`prunelab.generation.vllm.engine_arguments`)."""
        from prunelab.generation.vllm import engine_arguments

        return engine_arguments(dict(self.vllm_engine), self.gpu_share, self.max_request_tokens)

    @property
    def generation_budget(self) -> int | None:
        """The decode budget every generative row must fit (the multi-candidate engine's), or None."""
        return self.generation_tokens if self.generation_engine == MULTI_CANDIDATE and self.generator == "hf" else None


class Worker:
    def __init__(self, spec: WorkerSpec):
        import torch

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.device = device_name(spec.device)
        self._model = self._tokenizer = self._scorer = self._generator = self._vllm_candidates = None
        self._dtype_checked = False
        self._unit: tuple[list[Request], list] | None = None

    @classmethod
    def around(cls, model, tokenizer, spec: WorkerSpec | None = None) -> "Worker":
        """A worker on an already loaded (model, tokenizer): benchmarks and tests that hold one already."""
        worker = cls(spec or WorkerSpec(model=getattr(model.config, "_name_or_path", "") or "in-memory"))
        worker._model, worker._tokenizer = model, tokenizer
        worker.device = str(next(model.parameters()).device)
        return worker

    def pid(self) -> int:
        return os.getpid()

    def check_dtype(self) -> None:
        """Refuses, before this worker computes anything, a dtype other than the one the run was planned with:
        `auto` resolved differently on this node (a CPU without native bf16 in a run planned on one with it) would
        put another precision in the same table."""
        if self._dtype_checked or self.spec.planned_dtype is None:
            return
        mine = self.computes_in()
        if mine["dtype"] != self.spec.planned_dtype:
            from prunelab.errors import ConfigError

            raise ConfigError(
                f"model.dtype {self.spec.dtype} resolves to {mine['dtype']} on node {mine['node']} ({mine['device']}), "
                f"but to {self.spec.planned_dtype} where the run was planned; nothing was scored there. Set "
                "model.dtype to float32 or bfloat16 so every worker computes alike, or place the actors on nodes "
                "of one kind (ray.actors.accelerator_type)")
        self._dtype_checked = True

    def computes_in(self) -> dict:
        """This worker's node and device, and the dtype it computes in there (what `auto` means on that machine)."""
        import socket

        from prunelab.hardware import dtype_name

        return {"node": socket.gethostname(), "device": self.device, "dtype": dtype_name(self.spec.dtype, self.device)}

    def _load(self):
        if self._model is None:
            from transformers.utils import logging as hf_logging

            from prunelab.models import load_model

            hf_logging.disable_progress_bar()  # one bar per actor per load is noise in the driver's log
            s = self.spec
            self._model, self._tokenizer = load_model(s.model, dtype=s.dtype, device=self.device, revision=s.revision,
                                                      trust_remote_code=s.trust_remote_code)
        return self._model, self._tokenizer

    @property
    def num_layers(self) -> int:
        from prunelab.surgery import num_layers

        return num_layers(self._load()[0])

    @property
    def scorer(self):
        if self._scorer is None:
            model, tokenizer = self._load()
            if self.spec.scorer == "lm-eval":
                from prunelab.scoring.lm_eval_backend import LMEvalScorer

                self._scorer = LMEvalScorer(model, tokenizer)
            else:
                from prunelab.scoring.engine import Scorer

                self._scorer = Scorer(model, batch_tokens=self.spec.batch_tokens)
        return self._scorer

    @property
    def generator(self):
        if self._generator is None:
            from prunelab.generation import CHECKPOINT, GENERATION_BACKENDS, make_backend
            from prunelab.models import resolve_model_path

            s = self.spec
            if s.batch_invariant:  # read by vLLM when its engine starts, which happens below
                os.environ["VLLM_BATCH_INVARIANT"] = "1"
            if GENERATION_BACKENDS.entry(s.generator).input == CHECKPOINT:
                self._generator = make_backend(s.generator, model_path=resolve_model_path(s.model), dtype=s.dtype,
                                               engine_args=s.vllm_args)
            else:
                model, tokenizer = self._load()
                self._generator = make_backend(s.generator, model=model, tokenizer=tokenizer,
                                               batch_size=s.generation_batch_size)
        return self._generator

    @property
    def model(self):
        return self._load()[0]

    def prepare(self, requests: list[Request]) -> list[Scores]:
        """Runs the full model on one unit of requests and returns the base scores; the prefix-cache scorer also
        keeps every layer's input for `score`."""
        self.check_dtype()
        self._unit = None
        if self.spec.scorer != "prunelab":
            return self.scorer.score(requests)
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
        self.check_dtype()
        from prunelab.surgery import check_layers

        if self._unit is None:
            raise RuntimeError("score() called before prepare() (or with a scorer that records no layer inputs)")
        requests, captured = self._unit
        removed = tuple(check_layers(removed, self.num_layers))
        scores: list[Scores | None] = [None] * len(requests)
        for batch, capture in captured:
            if removed:
                start, keep = self.scorer.resume_point(removed)
                batch_scores = self.scorer.run(requests, batch, keep=keep, resume=(start, capture))[0]
            else:
                batch_scores = self.scorer.run(requests, batch)[0]
            for i, s in zip(batch.indices, batch_scores):
                scores[i] = s
        return scores

    def generate_candidates(self, requests: list[GenerationRequest], candidates: list[tuple[int, ...]],
                            sampling: Sampling) -> list[list[Generation]]:
        """Generations of `requests` for each candidate (removed layers), in order: all in one multi-candidate
        engine, or one candidate after another (`generation_engine`)."""
        self.check_dtype()
        if self.spec.generation_engine != MULTI_CANDIDATE:
            return [self.generate(requests, removed, sampling) for removed in candidates]
        if self.spec.generator == "vllm":  # one engine, its layers switched between candidates
            if self._vllm_candidates is None:
                from prunelab.generation.vllm_layers import VLLMCandidateGenerator

                if self.spec.batch_invariant:
                    os.environ["VLLM_BATCH_INVARIANT"] = "1"
                from prunelab.models import resolve_model_path

                self._vllm_candidates = VLLMCandidateGenerator(resolve_model_path(self.spec.model), self.spec.dtype,
                                                               **self.spec.vllm_args)
            return self._vllm_candidates.generate(requests, candidates, sampling)
        from prunelab.generation.candidates import CandidateGenerator

        model, tokenizer = self._load()
        engine = CandidateGenerator(model, tokenizer, batch_tokens=self.spec.batch_tokens,
                                    decode_tokens=self.spec.generation_tokens)
        return engine.generate(requests, candidates, sampling)

    def generate(self, requests: list[GenerationRequest], removed: tuple[int, ...],
                 sampling: Sampling) -> list[Generation]:
        """Generates for `requests` with layers `removed` dropped (a temporary view of the loaded model)."""
        self.check_dtype()
        if not removed:
            return self.generator.generate(requests, sampling)
        from prunelab.surgery import check_layers, keep_layers

        removed = tuple(check_layers(removed, self.num_layers))
        keep = [layer for layer in range(self.num_layers) if layer not in removed]
        with keep_layers(self.model, keep):
            return self.generator.generate(requests, sampling)
