"""Generation with transformers: batched (prompts of similar length together, left-padded), KV cache on, and
usable on an in-memory model, e.g. inside `keep_layers` during a sweep, with no checkpoint written.

Sampled decoding draws each row's tokens from its request's own uniforms (`generation.tokens.item_uniforms`, a
function of the seed and the request id), as the multi-candidate engine does: a sample does not depend on the batch
it is in, and every engine (and every candidate) draws the same sample from the same distribution."""

import time
from collections.abc import Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from prunelab.generation.base import Generation, GenerationRequest, Sampling, apply_stop, make_generation
from prunelab.generation.heartbeat import Heartbeat
from prunelab.hardware import attention_backends
from prunelab.progress import bar


class _Beat(StoppingCriteria):
    """Never stops generation: called once per token, it prints a heartbeat line now and then."""

    def __init__(self, beat: Heartbeat, batch: str, total: int):
        self.beat, self.batch, self.total, self.tokens = beat, batch, total, 0

    def __call__(self, input_ids, scores, **kwargs):
        self.tokens += 1
        self.beat(lambda: f"{self.batch}, token {self.tokens}/{self.total}")
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class _ItemSampler(LogitsProcessor):
    """Sampling by each row's own uniforms: the chosen token (`generation.tokens.choose`, on the raw logits) is the
    only one left, and the greedy search that follows takes it."""

    def __init__(self, uniforms: torch.Tensor, width: int, sampling: Sampling):
        self.uniforms, self.width, self.sampling = uniforms, width, sampling

    def __call__(self, input_ids, scores):
        from prunelab.generation.tokens import choose

        step = input_ids.shape[1] - self.width
        token = choose(scores, self.sampling, self.uniforms[:, step])
        return torch.full_like(scores, float("-inf")).scatter_(1, token[:, None].to(scores.device), 0.0)


class HFBackend:
    def __init__(self, model, tokenizer, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        self.eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or ()))
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    def _config(self, sampling: Sampling) -> GenerationConfig:
        # A fresh config, not the model's: checkpoints ship sampling defaults (top_k, repetition_penalty) that would
        # make "greedy" mean different things for different models and backends.
        options = dict(max_new_tokens=sampling.max_new_tokens, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                       stop_strings=list(sampling.stop) or None)
        # sampled rows are chosen by `_ItemSampler`; the search itself stays greedy
        return GenerationConfig(do_sample=False, **options)

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling,
                 progress: bool = False) -> list[Generation]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt_ids))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out: list[Generation | None] = [None] * len(requests)
        config = self._config(sampling)
        device = next(self.model.parameters()).device
        beat = Heartbeat(f"generate {len(requests)} rows")
        for number, batch in enumerate(bar(batches, desc="generate", unit="batch", disable=not progress)):
            width = max(len(requests[i].prompt_ids) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                p = requests[i].prompt_ids
                ids[row, width - len(p):] = torch.tensor(p)
                mask[row, width - len(p):] = 1
            extra = {"tokenizer": self.tokenizer} if sampling.stop else {}  # stop strings are matched on text
            if not sampling.greedy:
                from prunelab.generation.tokens import item_uniforms

                uniforms = torch.stack([item_uniforms(sampling.seed, requests[i].id, sampling.max_new_tokens)
                                        for i in batch])
                extra["logits_processor"] = LogitsProcessorList([_ItemSampler(uniforms, width, sampling)])
            start = time.perf_counter()
            with attention_backends(device):
                clock = _Beat(beat, f"batch {number + 1}/{len(batches)} of {len(batch)}", sampling.max_new_tokens)
                generated = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                                generation_config=config, stopping_criteria=StoppingCriteriaList([clock]),
                                                **extra)
            latency = time.perf_counter() - start
            new = generated[:, width:].tolist()
            for row, i in enumerate(batch):
                out[i] = self._finish(requests[i], new[row], sampling, latency)
        return out

    def _finish(self, request: GenerationRequest, tokens: list[int], sampling: Sampling, latency: float) -> Generation:
        # a row that ended (EOS, or a stop string) is padded while the rest of its batch goes on
        end = next((k for k, t in enumerate(tokens) if t in self.eos_ids or t == self.pad_id), None)
        kept = tokens if end is None else tokens[:end]
        _, stopped = apply_stop(self.tokenizer.decode(kept, skip_special_tokens=True), sampling.stop)
        reason = "stop" if end is not None or stopped or len(kept) < sampling.max_new_tokens else "length"
        return make_generation(request, kept, self.tokenizer, sampling, reason, latency)
