"""Choosing the next token and deciding when a row ends, the same way for every row of a multi-candidate batch.

Sampling draws from per-item uniforms (inverse CDF): item `i` uses the same uniforms whatever batch it is in and
whichever candidate generates it. That makes sampled outputs reproducible and independent of batch composition, and
couples candidates to the base model: where a candidate's next-token distribution is close to the base model's, the
same uniform picks the same token, so the base output can be reused up to the first token that differs, as it is
for greedy decoding.
"""

import hashlib
from collections.abc import Sequence

import torch

from prunelab.generation.base import Sampling


def item_uniforms(seed: int, item_id: str, n: int) -> torch.Tensor:
    """`n` uniforms in [0, 1) for one item (float64), a function of (seed, item id) only."""
    digest = hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.rand(n, generator=generator, dtype=torch.float64)


TOP = 256  # sampling looks at the most probable tokens first; the full vocabulary only where they do not decide


def choose(logits: torch.Tensor, sampling: Sampling, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of each row of `logits` (N, V): argmax (the lowest id on ties, as transformers picks) when
    greedy; else the token whose interval of the temperature- and top-p-shaped distribution (tokens sorted by
    probability, ties by id) holds the row's uniform.

    Sorting a 150k vocabulary in float64 per row per step is most of a CPU decode step's time, and the uniform
    almost always lands among the few most probable tokens: those are sorted first (`TOP`), and a row goes to the
    full sort only where they cannot decide (its nucleus or its uniform reaches past them, or a tie straddles their
    edge). The result is the full sort's (with top_p < 1, bit for bit; with top_p = 1 the total mass is summed in
    another order, which moves a uniform across a boundary with a probability of order 1e-16)."""
    if sampling.greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / sampling.temperature, dim=-1)
    uniforms = uniforms.to(probs)
    if probs.shape[-1] <= TOP + 1:
        return _choose_sorted(probs, sampling.top_p, uniforms)
    picked = _choose_top(probs, sampling.top_p, uniforms, TOP)
    undecided = picked < 0
    if undecided.any():
        picked[undecided] = _choose_sorted(probs[undecided], sampling.top_p, uniforms[undecided])
    return picked


def _choose_sorted(probs: torch.Tensor, top_p: float, uniforms: torch.Tensor) -> torch.Tensor:
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    if top_p < 1.0:
        # nucleus: the most probable tokens whose mass before them is below top_p (the first token always stays)
        sorted_p = sorted_p * ((sorted_p.cumsum(-1) - sorted_p) < top_p)
    cumulative = sorted_p.cumsum(-1)
    target = (uniforms * cumulative[:, -1])[:, None]
    pick = torch.searchsorted(cumulative, target, right=True).clamp(max=cumulative.shape[-1] - 1)
    return order.gather(1, pick)[:, 0]


def _choose_top(probs: torch.Tensor, top_p: float, uniforms: torch.Tensor, k: int) -> torch.Tensor:
    """`_choose_sorted` on the k most probable tokens of each row; -1 where they cannot decide."""
    values, index = probs.topk(k + 1, dim=-1)
    edge_tie = values[:, k - 1] == values[:, k]  # the full sort might take another of the tied tokens
    values, index = values[:, :k], index[:, :k]
    by_id = index.argsort(dim=-1)  # ties in the full (stable) sort come in id order
    values, index = values.gather(1, by_id), index.gather(1, by_id)
    by_p = values.argsort(dim=-1, descending=True, stable=True)
    sorted_p, order = values.gather(1, by_p), index.gather(1, by_p)
    decided = ~edge_tie
    if top_p < 1.0:
        keep = (sorted_p.cumsum(-1) - sorted_p) < top_p
        decided &= ~keep[:, -1]  # the nucleus ends among these tokens
        sorted_p = sorted_p * keep
        cumulative = sorted_p.cumsum(-1)
        total = cumulative[:, -1]
    else:
        cumulative = sorted_p.cumsum(-1)
        total = probs.sum(-1)
    target = (uniforms * total)[:, None]
    pick = torch.searchsorted(cumulative, target, right=True)
    decided &= pick[:, 0] < k  # the uniform lands among these tokens
    out = order.gather(1, pick.clamp(max=k - 1))[:, 0]
    return torch.where(decided, out, torch.full_like(out, -1))


class Ending:
    """When a row ends: on an end-of-sequence or padding token ("stop"; the token is not part of the output, as in
    the HF backend), on a stop string in its text ("stop"), or at `max_new_tokens` ("length")."""

    def __init__(self, tokenizer, stop_ids: Sequence[int], sampling: Sampling):
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.stops = sampling.stop
        self.max_new_tokens = sampling.max_new_tokens
        # a stop string is found in the text of the last few tokens; a token holds at least a byte of it
        self.tail = 4 * max((len(s.encode()) for s in self.stops), default=0) + 4

    def reason(self, raw: Sequence[int]) -> str | None:
        """Why a row whose chosen tokens so far are `raw` has ended, or None if it goes on."""
        if raw[-1] in self.stop_ids:
            return "stop"
        if self.stops:
            text = self.tokenizer.decode(raw[-self.tail:], skip_special_tokens=True)
            if any(s in text for s in self.stops):
                return "stop"
        if len(raw) >= self.max_new_tokens:
            return "length"
        return None

    def visible(self, raw: Sequence[int]) -> list[int]:
        """The output tokens of a finished row: without the end-of-sequence token it stopped on."""
        return list(raw[:-1]) if raw and raw[-1] in self.stop_ids else list(raw)
