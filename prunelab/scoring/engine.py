"""Batched log-likelihood scoring, with a layer-input cache that makes layer-removal sweeps cheap.

One batch holds items that share a prefix (possibly empty). It runs in three segments, each on top of the KV cache
of the one before: the shared prefix once, the items' contexts, then every continuation of every item (minus its
last token, whose probability comes from the position before it). The output head runs only at the positions whose
next-token probabilities are read: the last context token and the continuation tokens.

For a sweep, the base pass records each decoder layer's input for every segment (`Capture`). "Layers S removed"
then resumes at the first removed layer s = min(S): it takes layer s's recorded input and runs only the layers after
s that are not in S. A sweep of single layers costs about (L + 1) / 2 full passes instead of L.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from prunelab.scoring.requests import Request, Scores
from prunelab.surgery import decoder, keep_layers


@dataclass(frozen=True)
class Batch:
    """Requests scored together: `indices` into the caller's list, all with the same shared `prefix` ids."""

    indices: tuple[int, ...]
    prefix: tuple[int, ...]


@dataclass
class Capture:
    """Inputs of every decoder layer (plus the final hidden state, index L) for each segment of one batch."""

    prefix: list[torch.Tensor] | None
    context: list[torch.Tensor]
    continuation: list[torch.Tensor] | None

    def nbytes(self) -> int:
        tensors = [*(self.prefix or []), *self.context, *(self.continuation or [])]
        return sum(t.numel() * t.element_size() for t in tensors)


def sliding_window(model: nn.Module) -> int | None:
    """The smallest attention window of a model that has sliding-window layers, else None."""
    config = model.config
    types = getattr(config, "layer_types", None) or []
    window = getattr(config, "sliding_window", None)
    if window and "sliding_attention" in types:
        return int(window)
    return None


def plan_batches(requests: Sequence[Request], batch_tokens: int, window: int | None = None) -> list[Batch]:
    """Groups requests by shared prefix, sorts them longest first and packs batches within `batch_tokens` padded tokens.

    Requests longer than the model's sliding window run alone: padding inside a batched cache would shift the
    window's token distances, which only matters beyond the window.
    """
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        groups[r.context[: r.prefix_len]].append(i)
    batches = []
    for prefix, members in groups.items():
        members.sort(key=lambda i: (-_suffix_len(requests[i]), i))
        current: list[int] = []
        ctx_max = cont_max = rows = 0
        for i in members:
            r = requests[i]
            too_long = window is not None and len(r.context) + max(map(len, r.continuations)) > window
            new_ctx = max(ctx_max, len(r.context) - r.prefix_len)
            new_cont = max(cont_max, max(map(len, r.continuations)) - 1)
            new_rows = rows + sum(len(c) > 1 for c in r.continuations)
            cost = (len(current) + 1) * new_ctx + new_rows * new_cont
            if current and (cost > batch_tokens or too_long):
                batches.append(Batch(tuple(current), prefix))
                current, ctx_max, cont_max, rows = [], 0, 0, 0
                new_ctx = len(r.context) - r.prefix_len
                new_cont = max(map(len, r.continuations)) - 1
                new_rows = sum(len(c) > 1 for c in r.continuations)
            current.append(i)
            ctx_max, cont_max, rows = new_ctx, new_cont, new_rows
            if too_long:
                batches.append(Batch(tuple(current), prefix))
                current, ctx_max, cont_max, rows = [], 0, 0, 0
        if current:
            batches.append(Batch(tuple(current), prefix))
    return batches


def _suffix_len(r: Request) -> int:
    return len(r.context) - r.prefix_len + max(map(len, r.continuations))


def _select_cache(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    # A fresh cache holding rows `index` of every layer (repeating rows where an index repeats).
    return DynamicCache(ddp_cache_data=[(l.keys.index_select(0, index), l.values.index_select(0, index)) for l in cache.layers])


def _pad(rows: list[Sequence[int]], width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


class Scorer:
    """Scores `Request`s with one loaded model; optionally records and resumes from layer inputs (the sweep cache).

    `keep` (sorted layer indices) runs the model with only those layers; with `start=s` and a `Capture` of the full
    model, the run begins from layer s's recorded input, so `keep` must only hold layers after s.
    """

    def __init__(self, model: nn.Module, batch_tokens: int = 2048):
        self.model = model
        self.base = decoder(model)
        self.num_layers = len(self.base.layers)
        self.batch_tokens = batch_tokens
        self.device = next(model.parameters()).device
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        return plan_batches(requests, self.batch_tokens, sliding_window(self.model))

    @torch.inference_mode()
    def score(self, requests: Sequence[Request], removed: Sequence[int] = ()) -> list[Scores]:
        """Plain scoring of every request, with layers `removed` dropped (no capture, no resume)."""
        keep = [l for l in range(self.num_layers) if l not in set(removed)]
        out: list[Scores | None] = [None] * len(requests)
        for batch in self.plan(requests):
            for i, s in zip(batch.indices, self.run(requests, batch, keep=keep)[0]):
                out[i] = s
        return out

    @torch.inference_mode()
    def run(
        self,
        requests: Sequence[Request],
        batch: Batch,
        keep: Sequence[int] | None = None,
        capture: bool = False,
        resume: tuple[int, Capture] | None = None,
    ) -> tuple[list[Scores], Capture | None]:
        """Scores one batch. Returns per-request scores and, with `capture=True`, the recorded layer inputs."""
        keep = list(range(self.num_layers)) if keep is None else list(keep)
        if capture and keep != list(range(self.num_layers)):
            raise ValueError("capture records the full model's layer inputs; run it with every layer kept")
        start, saved = resume if resume is not None else (None, None)
        if start is not None and keep and keep[0] <= start:
            raise ValueError(f"resuming at layer {start} can only run later layers, got {keep}")
        items = [requests[i] for i in batch.indices]
        P = len(batch.prefix)
        dev = self.device
        captured: dict[str, list[torch.Tensor]] = {}

        # 1. shared prefix, once
        cache = None
        if P:
            ids = torch.tensor([batch.prefix], device=dev)
            hidden_in = saved.prefix[start] if saved is not None else None
            _, cache, captured["prefix"] = self._forward(keep, ids, hidden_in, None, None, None, capture)

        # 2. contexts after the prefix, right-padded; pads are masked and never read
        ctx_rows = [r.context[P:] for r in items]
        ctx_lens = torch.tensor([len(c) for c in ctx_rows], device=dev)
        Tc = int(ctx_lens.max())
        ids, ctx_mask = _pad(ctx_rows, Tc, dev)
        B = len(items)
        mask = torch.cat([torch.ones(B, P, dtype=torch.long, device=dev), ctx_mask], 1)
        positions = (P + torch.arange(Tc, device=dev)).expand(B, Tc)
        if cache is not None:
            cache = _select_cache(cache, torch.zeros(B, dtype=torch.long, device=dev))
        hidden_in = saved.context[start] if saved is not None else None
        hidden, cache, captured["context"] = self._forward(keep, ids, hidden_in, mask, positions, cache, capture)
        last = hidden[torch.arange(B, device=dev), ctx_lens - 1]
        first_logp = self._logprobs(last)  # [B, V]: distribution of every continuation's first token

        logprobs = [[0.0] * len(r.continuations) for r in items]
        greedy = [[True] * len(r.continuations) for r in items]
        first_argmax = first_logp.argmax(-1).tolist()
        for b, r in enumerate(items):
            for j, cont in enumerate(r.continuations):
                logprobs[b][j] = float(first_logp[b, cont[0]])
                greedy[b][j] = first_argmax[b] == cont[0]

        # 3. continuations longer than one token, on top of their item's context cache
        rows = [(b, j) for b, r in enumerate(items) for j, c in enumerate(r.continuations) if len(c) > 1]
        if rows:
            cont_in = [items[b].continuations[j][:-1] for b, j in rows]
            Tk = max(map(len, cont_in))
            ids, cont_mask = _pad(cont_in, Tk, dev)
            owner = torch.tensor([b for b, _ in rows], device=dev)
            R = len(rows)
            mask = torch.cat([torch.ones(R, P, dtype=torch.long, device=dev), ctx_mask[owner], cont_mask], 1)
            positions = P + ctx_lens[owner, None] + torch.arange(Tk, device=dev)
            cache = _select_cache(cache, owner) if cache is not None else None
            hidden_in = saved.continuation[start] if saved is not None else None
            hidden, _, captured["continuation"] = self._forward(keep, ids, hidden_in, mask, positions, cache, capture)
            flat_rows, flat_pos, targets = [], [], []
            for n, (b, j) in enumerate(rows):
                cont = items[b].continuations[j]
                for t in range(1, len(cont)):
                    flat_rows.append(n)
                    flat_pos.append(t - 1)
                    targets.append(cont[t])
            logp = self._logprobs(hidden[torch.tensor(flat_rows, device=dev), torch.tensor(flat_pos, device=dev)])
            targets_t = torch.tensor(targets, device=dev)
            token_logp = logp.gather(1, targets_t[:, None])[:, 0].tolist()
            token_greedy = (logp.argmax(-1) == targets_t).tolist()
            for n_flat, n in enumerate(flat_rows):
                b, j = rows[n]
                logprobs[b][j] += token_logp[n_flat]
                greedy[b][j] = greedy[b][j] and token_greedy[n_flat]

        scores = [Scores(tuple(lp), tuple(g)) for lp, g in zip(logprobs, greedy)]
        if not capture:
            return scores, None
        return scores, Capture(captured.get("prefix"), captured["context"], captured.get("continuation"))

    def _forward(self, keep, ids, hidden_in, mask, positions, cache, capture):
        """Runs the layers `keep` on one segment. Returns (final normed hidden, KV cache, recorded layer inputs)."""
        if cache is None:
            cache = DynamicCache()
        if not keep:  # every layer after the resume point is removed: nothing mixes tokens any more
            return self.base.norm(hidden_in), cache, None
        recorded: list[torch.Tensor] = []
        hooks = []
        if capture:
            for layer in self.base.layers:
                hooks.append(layer.register_forward_pre_hook(lambda _m, args: recorded.append(args[0])))
        try:
            full = keep == list(range(self.num_layers))
            with keep_layers(self.model, keep) if not full else _nullcontext():
                out = self.base(
                    input_ids=None if hidden_in is not None else ids,
                    inputs_embeds=hidden_in,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
        finally:
            for h in hooks:
                h.remove()
        return out.last_hidden_state, out.past_key_values, (recorded if capture else None)

    def _logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return torch.log_softmax(logits, dim=-1)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
