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


def choose(logits: torch.Tensor, sampling: Sampling, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of each row of `logits` (N, V): argmax (the lowest id on ties, as transformers picks) when
    greedy; else the token whose interval of the temperature- and top-p-shaped distribution (tokens sorted by
    probability, ties by id) holds the row's uniform."""
    if sampling.greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / sampling.temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    if sampling.top_p < 1.0:
        # nucleus: the most probable tokens whose mass before them is below top_p (the first token always stays)
        sorted_p = sorted_p * ((sorted_p.cumsum(-1) - sorted_p) < sampling.top_p)
    cumulative = sorted_p.cumsum(-1)
    target = (uniforms.to(cumulative) * cumulative[:, -1])[:, None]
    pick = torch.searchsorted(cumulative, target, right=True).clamp(max=cumulative.shape[-1] - 1)
    return order.gather(1, pick)[:, 0]


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
