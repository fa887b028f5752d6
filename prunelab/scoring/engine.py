"""Batched log-likelihood scoring, with a layer-input cache that makes layer-removal sweeps cheap.

One batch holds items that share a prefix (possibly empty). It runs in three segments, each on top of the KV cache
of the one before: the shared prefix once, the items' contexts, then every continuation of every item (minus its
last token, whose probability comes from the position before it). Contexts, and the continuations of each group of
contexts, run in chunks of similar length so little is padded. The output head runs only at the positions whose
next-token probabilities are read: the last context token and the continuation tokens.

For a sweep, the base pass records each decoder layer's input for every segment (`Capture`). "Layers S removed"
then resumes at the first removed layer s = min(S): it takes layer s's recorded input and runs only the layers after
s that are not in S. A sweep of single layers costs about (L + 1) / 2 full passes instead of L.
"""

import contextlib
import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from prunelab.hardware import attention_backends
from prunelab.models.cache_api import cache_of, with_cache
from prunelab.models.view import FULL, LINEAR, SLIDING, resume_point, view
from prunelab.scoring.requests import Request, Scores


@dataclass(frozen=True)
class Batch:
    """Requests scored together: `indices` into the caller's list, all with the same shared `prefix` ids. `left`:
    contexts left-padded (each row's tokens end in the last column), with no shared prefix."""

    indices: tuple[int, ...]
    prefix: tuple[int, ...]
    left: bool = False


@dataclass
class ContextChunkCapture:
    context: list[torch.Tensor]  # input of each decoder layer, for the chunk's contexts
    continuation: list[list[torch.Tensor]]  # the same for each chunk of its continuations


@dataclass
class Capture:
    """Inputs of every decoder layer for each segment of one batch: what a sweep resumes from."""

    prefix: list[torch.Tensor] | None
    chunks: list[ContextChunkCapture]


def plan_batches(requests: Sequence[Request], batch_tokens: int, window: int | None = None,
                 hybrid: bool = False) -> list[Batch]:
    """Groups requests by shared prefix, sorts them by context length and packs batches of at most `batch_tokens`
    tokens (contexts padded to the longest; continuations counted as they are, since they run in length chunks).

    Contexts are right-padded, except where padding after a row's tokens would change what it computes: every
    request of a hybrid model (pads after a row's tokens would decay its recurrent state), and, with `window` (a
    model whose masks transformers builds from cache columns: `Scorer` passes None where it builds them from
    positions), a request longer than the window (its continuation's window would count the pads). Those are
    left-padded, in batches of their own without a shared prefix (pads between a prefix and a context would do
    the same).
    """
    groups: dict[tuple[tuple[int, ...], bool], list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        left = hybrid or (window is not None and len(r.context) + max(map(len, r.continuations)) > window)
        groups[((), True) if left else (r.context[: r.prefix_len], False)].append(i)
    batches = []
    for (prefix, left), members in groups.items():
        P = len(prefix)
        members.sort(key=lambda i: (-(len(requests[i].context) - P), i))
        current: list[int] = []
        ctx_max = cont_tokens = 0
        for i in members:
            r = requests[i]
            ctx = len(r.context) - P
            cont = sum(len(c) - 1 for c in r.continuations)
            if current and (len(current) + 1) * max(ctx_max, ctx) + cont_tokens + cont > batch_tokens:
                batches.append(Batch(tuple(current), prefix, left))
                current, ctx_max, cont_tokens = [], 0, 0
            current.append(i)
            ctx_max, cont_tokens = max(ctx_max, ctx), cont_tokens + cont
        if current:
            batches.append(Batch(tuple(current), prefix, left))
    return batches


def _length_chunks(lengths: list[int], slack: float = 1.25, min_tokens: int = 512) -> list[list[int]]:
    """Indices of `lengths` grouped by similar length: a group grows while padding wastes at most `slack` - 1 of its
    tokens, or while it is below `min_tokens` padded tokens (a forward of few tokens is bound by reading the weights,
    so small forwards cost more than the padding they save)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    chunks: list[list[int]] = []
    total = 0
    for i in order:
        if chunks:
            padded = lengths[i] * (len(chunks[-1]) + 1)
            if padded <= slack * (total + lengths[i]) or lengths[i] * len(chunks[-1]) < min_tokens:
                chunks[-1].append(i)
                total += lengths[i]
                continue
        chunks.append([i])
        total = lengths[i]
    return chunks


def _select_cache(cache: DynamicCache, index: torch.Tensor, hybrid: bool = False) -> DynamicCache:
    """A fresh cache holding rows `index` of every layer (repeating rows where an index repeats), each layer's rows
    on that layer's device (layers spread over GPUs keep their cache where they run). A hybrid model's cache (KV
    layers and linear-attention states, laid out by `config.layer_types`) is copied whole and its rows selected
    through the cache's own `reorder_cache`, which selects conv and recurrent states as it does keys and values."""
    if hybrid:
        selected = copy.deepcopy(cache)
        selected.reorder_cache(index)
        return selected
    return DynamicCache(ddp_cache_data=[(l.keys.index_select(0, index.to(l.keys.device)),
                                         l.values.index_select(0, index.to(l.values.device))) for l in cache.layers])


def _pad(rows: list[Sequence[int]], width: int, device, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded to `width` with 0, and their mask; `left`: the pads first (a recurrent state starts from zero and
    stays zero through them, where pads after a row's tokens would decay its state)."""
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        at = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, at] = torch.tensor(row, dtype=torch.long)
        mask[i, at] = 1
    return ids, mask


class Scorer:
    """Scores `Request`s with one loaded model; optionally records and resumes from layer inputs (the sweep cache).

    `score(requests, removed)` runs the model without the `removed` layers. After a base pass that recorded every
    layer's input (a `Capture`), a candidate's run begins from the recorded input of its first removed layer
    (`_Segments`), so only the layers after it are computed again.
    """

    def __init__(self, model: nn.Module, batch_tokens: int = 4096):
        self.model = model
        self.view = view(model)
        # linear-attention layers (Qwen3.5): contexts are left-padded (`plan_batches`), so each row's recurrent and
        # convolution states start at zero and stay zero through its pads (the model zeroes padded inputs)
        self.linear = [kind.attention == LINEAR for kind in self.view.kinds()]  # per layer, of the whole model
        self.hybrid = any(self.linear)
        # sliding-window layers (Gemma 2/3, gpt-oss, Mistral): masks built here from each row's own positions, so
        # that pads between a row's segments never count in its window and long requests batch like any other
        self.window = self.view.window
        self.window_masks = self.view.window_masks()
        self.base = self.view.decoder
        self.num_layers = self.view.num_layers
        self.batch_tokens = batch_tokens
        self.device = self.view.device

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        return plan_batches(requests, self.batch_tokens, None if self.window_masks else self.window, self.hybrid)

    def resume_point(self, removed: Sequence[int]) -> tuple[int, list[int]]:
        """(start, keep) for `run(..., keep=keep, resume=(start, capture))` without the sorted, non-empty layers
        `removed` (`models.view.resume_point`)."""
        return resume_point(removed, self.linear)

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
        if start is not None and keep and keep[0] < start:
            raise ValueError(f"resuming at layer {start} can only run it and later layers, got {keep}")
        run = _Segments(self, keep, start, capture)
        items = [requests[i] for i in batch.indices]
        P = len(batch.prefix)

        # 1. the shared prefix, once
        prefix_cache, prefix_rec = None, None
        if P:
            ids = torch.tensor([batch.prefix], device=self.device)
            _, prefix_cache, prefix_rec = run(ids, saved.prefix if saved else None, None, None, None)

        # 2. contexts in chunks of similar length, each followed by its items' continuations
        scores: list[Scores | None] = [None] * len(items)
        chunks = []
        ctx_chunks = _length_chunks([len(r.context) - P for r in items])
        for n, members in enumerate(ctx_chunks):
            chunk_saved = saved.chunks[n] if saved else None
            chunk_scores, recorded = self._context_chunk(run, [items[b] for b in members], P, prefix_cache, chunk_saved,
                                                         batch.left)
            for b, sc in zip(members, chunk_scores):
                scores[b] = sc
            chunks.append(recorded)
        return scores, (Capture(prefix_rec, chunks) if capture else None)

    def _context_chunk(self, run, items, P, prefix_cache, saved, left: bool = False):
        """Contexts (right-padded, or left-padded with `left`; pads are masked and never read), then every
        continuation longer than one token on top of its item's context cache, in chunks of similar length."""
        dev = self.device
        B = len(items)
        ctx_rows = [r.context[P:] for r in items]
        ctx_lens = torch.tensor([len(c) for c in ctx_rows], device=dev)
        Tc = int(ctx_lens.max())
        ids, ctx_mask = _pad(ctx_rows, Tc, dev, left=left)
        mask = torch.cat([torch.ones(B, P, dtype=torch.long, device=dev), ctx_mask], 1)
        if left:  # each row's tokens at their own positions, its last token in the last column
            positions = P + (torch.arange(Tc, device=dev) - (Tc - ctx_lens[:, None])).clamp(min=0)
            last = torch.full_like(ctx_lens, Tc - 1)
        else:
            positions, last = (P + torch.arange(Tc, device=dev)).expand(B, Tc), ctx_lens - 1
        cache = _select_cache(prefix_cache, torch.zeros(B, dtype=torch.long, device=dev)) if prefix_cache else None
        hidden, cache, ctx_rec = run(ids, saved.context if saved else None, mask, positions, cache)
        # indices follow the tensor they index: a model spread over GPUs returns its hidden states on the last one
        at = hidden.device
        first_logp = self._logprobs(hidden[torch.arange(B, device=at), last.to(at)])  # first tokens' dists
        first_argmax = first_logp.argmax(-1).tolist()
        logprobs = [[float(first_logp[b, c[0]]) for c in r.continuations] for b, r in enumerate(items)]
        greedy = [[first_argmax[b] == c[0] for c in r.continuations] for b, r in enumerate(items)]

        rows = [(b, j) for b, r in enumerate(items) for j, c in enumerate(r.continuations) if len(c) > 1]
        cont_rec = []
        for n, members in enumerate(_length_chunks([len(items[b].continuations[j]) - 1 for b, j in rows])):
            chunk_rows = [rows[m] for m in members]
            cont_in = [items[b].continuations[j][:-1] for b, j in chunk_rows]
            Tk = max(map(len, cont_in))
            ids, cont_mask = _pad(cont_in, Tk, dev)
            owner = torch.tensor([b for b, _ in chunk_rows], device=dev)
            mask = torch.cat([torch.ones(len(chunk_rows), P, dtype=torch.long, device=dev), ctx_mask[owner], cont_mask], 1)
            positions = P + ctx_lens[owner, None] + torch.arange(Tk, device=dev)
            hidden, _, rec = run(ids, saved.continuation[n] if saved else None, mask, positions,
                                 _select_cache(cache, owner, self.hybrid))
            cont_rec.append(rec)
            # position t-1 of a continuation row predicts its token t
            where = [(m, t) for m, (b, j) in enumerate(chunk_rows) for t in range(1, len(items[b].continuations[j]))]
            at = hidden.device
            logp = self._logprobs(hidden[torch.tensor([m for m, _ in where], device=at),
                                         torch.tensor([t - 1 for _, t in where], device=at)])
            targets = torch.tensor([items[chunk_rows[m][0]].continuations[chunk_rows[m][1]][t] for m, t in where],
                                   device=logp.device)
            token_logp = logp.gather(1, targets[:, None])[:, 0].tolist()
            token_greedy = (logp.argmax(-1) == targets).tolist()
            for (m, _), lp, g in zip(where, token_logp, token_greedy):
                b, j = chunk_rows[m]
                logprobs[b][j] += lp
                greedy[b][j] = greedy[b][j] and g
        scores = [Scores(tuple(lp), tuple(g)) for lp, g in zip(logprobs, greedy)]
        return scores, (ContextChunkCapture(ctx_rec, cont_rec) if run.capture else None)

    def _forward(self, keep, ids, hidden_in, mask, positions, cache, capture):
        """Runs the layers `keep` on one segment. Returns (final normed hidden, KV cache, recorded layer inputs)."""
        if not keep:  # every layer after the resume point is removed: nothing mixes tokens any more
            return self.base.norm(hidden_in), cache if cache is not None else DynamicCache(), None
        full = keep == list(range(self.num_layers))
        with (self.view.recording() if capture else contextlib.nullcontext()) as recorded, \
                (self.view.keep(keep) if not full else contextlib.nullcontext()), attention_backends(self.device):
            if cache is None:  # a hybrid's cache is laid out by the kept layers' types (conv and recurrent states)
                cache = DynamicCache(config=self.model.config) if self.hybrid else DynamicCache()
            out = self.base(
                input_ids=None if hidden_in is not None else ids,
                inputs_embeds=hidden_in,
                attention_mask=self._masks(mask, ids.shape[1]) if self.window_masks and mask is not None else mask,
                position_ids=positions,
                **with_cache(cache),
                use_cache=True,
            )
        return out.last_hidden_state, cache_of(out), recorded

    def _masks(self, mask: torch.Tensor, T: int):
        """4D additive masks (batch, 1, T, columns) for the last `T` columns of the padding mask `mask` (batch,
        columns), from each row's own positions: a column's position is the number of the row's tokens before it,
        so pads anywhere (after a context, before its continuation) take no place in a window. Full attention: the
        row's tokens at or before the query's position; sliding: those within `window` positions of it (as
        transformers counts it, key > query - window). A pad query attends to itself alone: never a row with
        nothing to attend to (NaN), and no row reads a pad."""
        dtype = self.view.decoder.dtype if hasattr(self.view.decoder, "dtype") else torch.float32
        valid = mask.bool()
        keys = mask.cumsum(-1) - 1
        queries = keys[:, -T:]
        own = torch.zeros(mask.shape[0], T, mask.shape[1], dtype=torch.bool, device=mask.device)
        own[:, torch.arange(T), torch.arange(mask.shape[1] - T, mask.shape[1])] = True
        pad_query = ~valid[:, -T:, None] & own
        causal = valid[:, None, :] & (keys[:, None, :] <= queries[:, :, None])
        sliding = causal & (keys[:, None, :] > queries[:, :, None] - self.window)

        def additive(allowed):
            return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(
                ~(allowed | pad_query), torch.finfo(dtype).min)[:, None]

        if self.window_masks == "tensor":
            return additive(sliding)
        return {FULL: additive(causal), SLIDING: additive(sliding)}

    def _logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.view.logits(hidden), dim=-1)


class _Segments:
    """Runs segments with fixed layers: `run(ids, recorded_inputs, mask, positions, cache)`. When resuming, the
    segment starts from `recorded_inputs[start]` (the input of the first removed layer) instead of token ids."""

    def __init__(self, scorer: Scorer, keep: list[int], start: int | None, capture: bool):
        self.scorer, self.keep, self.start, self.capture = scorer, keep, start, capture

    def __call__(self, ids, recorded, mask, positions, cache):
        hidden_in = recorded[self.start] if recorded is not None and self.start is not None else None
        return self.scorer._forward(self.keep, ids, hidden_in, mask, positions, cache, self.capture)
