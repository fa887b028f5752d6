"""Generation for many layer-removal candidates at once, on one loaded model: what a generative sweep runs.

    generator = CandidateGenerator(model, tokenizer, batch_tokens=4096, decode_tokens=32768)
    outputs = generator.generate(requests, [(), (3,), (7,)], sampling)   # one list of Generations per candidate

Two things make it cost about as much as generating once:

1. **One decode batch for all candidates.** A row is (item, candidate); at layer l the rows whose candidate removed
   l pass through unchanged (`kv.RowSkip`), so each decode step reads the weights once for every candidate.
2. **The base model's output is reused where it is provably the candidate's.** A candidate removing layers R (first
   k = min R) computes exactly what the base model computes before layer k. So one forward of the base model over
   prompt + base output records every layer's input; the candidate resumes at layer k from that record, runs only
   its later layers over all positions in parallel, and finds the first position where its own choice (argmax, or
   the same per-item uniform under its distribution) differs from the base output. Up to there its output *is* the
   base output; its KV cache for those positions is already built (layers before k from the base forward, later
   layers from its resumed forward), and it decodes only from there.

Greedy outputs equal generating each candidate alone with its layers removed (up to floating-point near-ties, as
between any two batchings). Sampled outputs are a function of (seed, item, candidate) only: the same whatever the
batch or the other candidates; they are samples from the same distribution as any other sampler's, not the same
draws. `reuse=False` turns item 2 off (every candidate prefills its prompt), for tests and benchmarks.
"""

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from prunelab.errors import ConfigError
from prunelab.generation.base import Generation, GenerationRequest, Sampling, make_generation
from prunelab.generation.heartbeat import Heartbeat
from prunelab.generation.kv import KVRows, RowSkip
from prunelab.generation.tokens import Ending, choose, item_uniforms
from prunelab.hardware import attention_backends
from prunelab.models.cache_api import cache_of, with_cache
from prunelab.models.view import LINEAR, require_attention, resume_point, view
from prunelab.surgery import check_layers

CHECK_CHUNK = 64  # output positions a candidate runs at a time when checked against the base output


def _chunks(width_prompt: int, width: int) -> list[tuple[int, int]]:
    """Column ranges of a trace: the prompts, then the output in CHECK_CHUNK columns."""
    bounds = [0, *range(width_prompt, width, CHECK_CHUNK), width]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@dataclass
class Row:
    """One (item, candidate) being generated: its chosen tokens so far (`raw`, the ending token included) and how
    many of them were taken from the base model's output without decoding."""

    item: int
    candidate: int
    prompt_len: int
    raw: list[int] = field(default_factory=list)
    finish: str | None = None
    reused: int = 0


@dataclass
class Pending:
    """A row ready to decode: its cache holds prompt + raw[:-1]; raw[-1] is its next input."""

    row: Row
    kv: KVRows


@dataclass
class CandidateStats:
    """Per candidate: tokens taken from the base output (with the end token a fully reused row stopped on), and
    tokens decoded."""

    removed: tuple[int, ...]
    reused_tokens: int = 0
    decoded_tokens: int = 0


class CandidateGenerator:
    def __init__(self, model, tokenizer, batch_tokens: int = 4096, decode_tokens: int = 32768, reuse: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.view = view(model)
        # a hybrid (Qwen3.5): its linear-attention layers keep a recurrent and a convolution state per row
        # (`KVRows.states`), which holds no earlier position to resume from: a candidate that leaves the base
        # output at token j prefills prompt + those j tokens to build its state (`_reprefill`)
        self.linear = [kind.attention == LINEAR for kind in self.view.kinds()]
        self.hybrid = any(self.linear)
        self.base = self.view.decoder
        self.num_layers = self.view.num_layers
        self.batch_tokens, self.decode_tokens, self.reuse = batch_tokens, decode_tokens, reuse
        self.device = self.view.device
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        pad = tokenizer.pad_token_id
        # a generated padding token ends a row, as in the HF backend (which cuts its output there)
        self.stop_ids = sorted(eos_ids | ({pad} if pad is not None else set()))
        self.pad_id = pad if pad is not None else min(eos_ids)
        self.skip = RowSkip(self.base.layers)
        self.stats: list[CandidateStats] = []

    # -- the public call --------------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], candidates: Sequence[Sequence[int]],
                 sampling: Sampling) -> list[list[Generation]]:
        """Generations of every request for every candidate (layers removed; () is the base model), in order."""
        candidates = [tuple(check_layers(c, self.num_layers)) for c in candidates]
        for removed in candidates:
            require_attention(self.model.config, [layer for layer in range(self.num_layers) if layer not in removed])
        if not requests:
            return [[] for _ in candidates]
        longest = max(len(r.prompt_ids) for r in requests) + sampling.max_new_tokens
        if longest > self.decode_tokens:
            raise ConfigError(f"sweep.generation_tokens is {self.decode_tokens}, but one row needs {longest} "
                              f"(its prompt plus max_new_tokens {sampling.max_new_tokens}); raise it to at least "
                              f"{longest}")
        start = time.perf_counter()
        self.ending = Ending(self.tokenizer, self.stop_ids, sampling)
        self.sampling = sampling
        self.uniforms = None if sampling.greedy else torch.stack(
            [item_uniforms(sampling.seed, r.id, sampling.max_new_tokens) for r in requests])
        self.stats = [CandidateStats(c) for c in candidates]
        self.prompts = [r.prompt_ids for r in requests]
        rows: dict[tuple[int, int], Row] = {}
        self._run(requests, candidates, rows)
        latency = time.perf_counter() - start
        for row in rows.values():
            stats = self.stats[row.candidate]
            stats.reused_tokens += row.reused
            stats.decoded_tokens += len(row.raw) - row.reused
        # the candidates decode side by side in one batch, so no candidate has a wall time of its own: each gets
        # the call's time in proportion to the tokens it decoded (the base output's, for those that reuse it)
        decoded = [max(1, s.decoded_tokens) for s in self.stats]
        shares = [latency * d / sum(decoded) for d in decoded]
        return [[self._record(requests[i], rows[i, c], shares[c]) for i in range(len(requests))]
                for c in range(len(candidates))]

    def _run(self, requests, candidates: list[tuple[int, ...]], rows: dict[tuple[int, int], Row]) -> None:
        with self.skip.installed(), attention_backends(self.device):
            decoding = _Decoder(self, Heartbeat(f"multi-candidate generation of {len(requests)} items x "
                                                f"{len(candidates)} candidates"))
            if self.reuse:
                decoding.at = "the base output, "  # what the candidates resume from
                base_rows = self._base_rows(requests, decoding)
                # the base traces are the largest thing held; made once, for the candidates that remove layers
                traces = self._base_traces(requests, base_rows) if any(candidates) else []
                for c, removed in enumerate(candidates):
                    decoding.at = f"candidate {c + 1}/{len(candidates)}, "
                    if not removed:
                        for i, row in enumerate(base_rows):
                            rows[i, c] = Row(i, c, row.prompt_len, list(row.raw), row.finish)
                        continue
                    for row in self._resume(traces, base_rows, c, removed, decoding):
                        rows[row.item, c] = row
                    decoding.tick()
                    decoding.run(until_queued=self.decode_tokens)
            else:
                for c, removed in enumerate(candidates):
                    for row in self._prefill(requests, [(i, c, removed) for i in range(len(requests))], decoding):
                        rows[row.item, c] = row
            decoding.run()

    def _record(self, request: GenerationRequest, row: Row, latency: float) -> Generation:
        kept = self.ending.visible(row.raw)
        return make_generation(request, kept, self.tokenizer, self.sampling, row.finish, latency, row.reused)

    # -- pieces -----------------------------------------------------------------------------------------------

    def new_cache(self) -> DynamicCache:
        """An empty cache for the layers that run now: a hybrid's is laid out by `config.layer_types` (which
        `view.keep` trims with the layers)."""
        return DynamicCache(config=self.model.config) if self.hybrid else DynamicCache()

    def rows_of(self, cache: DynamicCache, mask: torch.Tensor) -> KVRows:
        return KVRows.from_cache(cache, mask, self.model.config)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.view.logits(hidden)

    def choose(self, logits: torch.Tensor, items: Sequence[int], steps: Sequence[int]) -> list[int]:
        uniforms = None if self.uniforms is None else self.uniforms[list(items), list(steps)]
        return choose(logits, self.sampling, uniforms).tolist()

    def skip_rows(self, removed: Sequence[tuple[int, ...]]) -> torch.Tensor:
        skip = torch.zeros(len(removed), self.num_layers, dtype=torch.bool, device=self.device)
        for r, layers in enumerate(removed):
            skip[r, list(layers)] = True
        return skip

    def _groups(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped (longest first) so that rows x the longest length stays within `batch_tokens`."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        groups: list[list[int]] = []
        for i in order:
            if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= self.batch_tokens:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _run_left_padded(self, tokens: list[Sequence[int]], removed: list[tuple[int, ...]]):
        """One forward of the rows `tokens` (left-padded to the longest), each with its layers `removed` skipped;
        returns (the model's output, the rows' cache as KVRows, the padded width)."""
        width = max(map(len, tokens))
        ids = torch.full((len(tokens), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for r, t in enumerate(tokens):
            ids[r, width - len(t):] = torch.tensor(t, device=self.device)
            mask[r, width - len(t):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with self.skip.rows(self.skip_rows(removed)):
            result = self.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                               **with_cache(self.new_cache()), use_cache=True)
        return result, self.rows_of(cache_of(result), mask), width

    def _prefill(self, requests, rows: list[tuple[int, int, tuple[int, ...]]], decoding: "_Decoder") -> list[Row]:
        """Runs the prompts of `rows` (item, candidate, removed layers), chooses each row's first token and queues
        the unfinished rows for decoding."""
        out = []
        for group in self._groups([len(requests[i].prompt_ids) for i, _, _ in rows]):
            members = [rows[g] for g in group]
            prompts = [requests[i].prompt_ids for i, _, _ in members]
            result, kv, width = self._run_left_padded(prompts, [removed for _, _, removed in members])
            first = self.choose(self.logits(result.last_hidden_state[:, -1]), [i for i, _, _ in members],
                                [0] * len(members))
            for r, ((i, c, removed), token) in enumerate(zip(members, first)):
                row = Row(i, c, len(prompts[r]), [token])
                row.finish = self.ending.reason(row.raw)
                out.append(row)
                if row.finish is None:
                    decoding.add(Pending(row, kv.row(r, width - len(prompts[r]), width)), removed)
        return out

    def _base_rows(self, requests, decoding: "_Decoder") -> list[Row]:
        rows = self._prefill(requests, [(i, -1, ()) for i in range(len(requests))], decoding)
        decoding.run()
        return sorted(rows, key=lambda row: row.item)

    def _resume(self, traces, base_rows: list[Row], c: int, removed: tuple[int, ...],
                decoding: "_Decoder") -> list[Row]:
        """Candidate `c`'s rows, each taking the base output up to its first differing token; the rows that go on
        are queued for decoding. The candidate runs over the base output in chunks of CHECK_CHUNK positions and a
        row leaves the batch at its first difference, so a candidate that differs early costs little."""
        start, keep = resume_point(removed, self.linear)
        out, again = [], []
        for group, trace in traces:
            wp = trace.width_prompt
            alive = list(range(len(group)))  # rows of the trace still being checked
            cache = None
            for pos, end in _chunks(wp, trace.mask.shape[1]):
                index = torch.tensor(alive, device=self.device)
                recorded = trace.inputs[start]  # on its layer's device (a model spread over GPUs)
                hidden_in = recorded.index_select(0, index.to(recorded.device))[:, pos:end]
                if keep:
                    with self.view.keep(keep):
                        cache = self.new_cache() if cache is None else cache
                        result = self.base(inputs_embeds=hidden_in, attention_mask=trace.mask[index, :end],
                                           position_ids=trace.positions[index, pos:end], **with_cache(cache),
                                           use_cache=True)
                    hidden, cache = result.last_hidden_state, cache_of(result)
                else:  # nothing after the first removed layer runs: the final norm of its input
                    hidden = self.base.norm(hidden_in)
                going = []
                for a, r in enumerate(alive):
                    base = base_rows[group[r]]
                    # column wp - 1 + t predicts output token t
                    steps = range(max(0, pos - wp + 1), min(len(base.raw), end - wp + 1))
                    j = self._first_difference(hidden[a], pos, wp, base, group[r], steps)
                    if j is None and steps and steps[-1] < len(base.raw) - 1:
                        going.append(a)
                        continue
                    row = self._candidate_row(base, c, j, group[r], hidden[a, wp - 1 + j - pos] if j is not None
                                              else None)
                    out.append(row)
                    if row.finish is None and self.hybrid:  # its states at j: computed again (`_reprefill`)
                        again.append((row, removed))
                    elif row.finish is None:  # its cache: prompt + the base output before j
                        first = wp - base.prompt_len
                        resumed = KVRows.from_cache(cache, trace.mask[index, :end]) if keep else None
                        layers = [(trace.kv, r) if layer not in keep else (resumed, a) for layer in range(self.num_layers)]
                        kv = KVRows.join_layers([source.row(b, first, wp + j, [keep.index(layer) if layer in keep
                                                                                  else layer])
                                                 for layer, (source, b) in enumerate(layers)])
                        decoding.add(Pending(row, kv), removed)
                if not going:
                    break
                if len(going) < len(alive) and keep:
                    kept = torch.tensor(going, device=self.device)
                    if self.hybrid:  # the cache's own row selection, which selects states as it does keys
                        cache.reorder_cache(kept)
                    else:
                        cache = KVRows.from_cache(cache, trace.mask[index, :end]).select_rows(kept).cache()
                alive = [alive[a] for a in going]
        if again:
            self._reprefill(again, decoding)
        return out

    def _reprefill(self, rows: list[tuple[Row, tuple[int, ...]]], decoding: "_Decoder") -> None:
        """A hybrid's candidate rows that left the base output: each (row, removed layers) runs its prompt and the
        base output it took (`row.raw[:-1]`) with its layers removed, for the cache and states it decodes from."""
        tokens = [list(self.prompts[row.item]) + row.raw[:-1] for row, _ in rows]
        for group in self._groups([len(t) for t in tokens]):
            _, kv, width = self._run_left_padded([tokens[g] for g in group], [rows[g][1] for g in group])
            for r, g in enumerate(group):
                decoding.add(Pending(rows[g][0], kv.row(r, width - len(tokens[g]), width)), rows[g][1])

    def _candidate_row(self, base: Row, c: int, j: int | None, item: int, hidden_at_j) -> Row:
        """The candidate's row given its first difference `j` from the base output (None: none)."""
        if j is None:  # the candidate writes exactly the base output
            return Row(item, c, base.prompt_len, list(base.raw), base.finish, len(base.raw))
        row = Row(item, c, base.prompt_len, list(base.raw[:j]), reused=j)
        row.raw.append(self.choose(self.logits(hidden_at_j[None]), [item], [j])[0])
        row.finish = self.ending.reason(row.raw)
        return row

    def _first_difference(self, hidden, pos: int, wp: int, base: Row, item: int, steps: range) -> int | None:
        """The first of `steps` where the candidate (final hidden states `hidden` of one row, from column `pos`)
        chooses another token than the base output, or None."""
        if not steps:
            return None
        columns = [wp - 1 + t - pos for t in steps]
        chosen = self.choose(self.logits(hidden[columns]), [item] * len(steps), list(steps))
        return next((t for t, token in zip(steps, chosen) if token != base.raw[t]), None)

    def _base_traces(self, requests, base_rows: list[Row]):
        """(items, trace) per group of items: the base model over prompt + base output (without its last token),
        prompts left-padded to a common width and outputs after it, with every layer's input and the KV cache
        (bounded by `batch_tokens` per group)."""
        lengths = [len(requests[i].prompt_ids) + len(base_rows[i].raw) - 1 for i in range(len(requests))]
        return [(group, self._trace(requests, [base_rows[i] for i in group], group)) for group in self._groups(lengths)]

    def _trace(self, requests, rows: list[Row], group: list[int]) -> "_Trace":
        width_prompt = max(row.prompt_len for row in rows)
        width = width_prompt + max(len(row.raw) for row in rows) - 1
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for r, (i, row) in enumerate(zip(group, rows)):
            tokens = list(requests[i].prompt_ids) + row.raw[:-1]
            start = width_prompt - row.prompt_len
            ids[r, start : start + len(tokens)] = torch.tensor(tokens, device=self.device)
            mask[r, start : start + len(tokens)] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with self.view.recording() as inputs:
            result = self.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                               **with_cache(self.new_cache()), use_cache=True)
        return _Trace(inputs, self.rows_of(cache_of(result), mask), mask, positions, width_prompt)


@dataclass
class _Trace:
    inputs: list[torch.Tensor]  # input of every decoder layer, (B, T, hidden)
    kv: KVRows
    mask: torch.Tensor
    positions: torch.Tensor
    width_prompt: int  # prompts end at this column; output token t is the input at column width_prompt + t


class _Decoder:
    """Decodes queued rows in batches of at most `decode_tokens` KV tokens (prompt + max_new_tokens per row),
    admitting queued rows as others finish."""

    def __init__(self, generator: CandidateGenerator, beat: Heartbeat | None = None):
        self.g, self.beat, self.steps, self.finished, self.at = generator, beat, 0, 0, ""
        self.queue: deque[tuple[Pending, tuple[int, ...]]] = deque()
        self.rows: list[Row] = []
        self.removed: list[tuple[int, ...]] = []
        self.kv: KVRows | None = None

    def tick(self) -> None:
        if self.beat is not None:
            self.beat(lambda: f"{self.at}{len(self.rows)} rows decoding, {len(self.queue)} queued, {self.finished} "
                              f"finished after decoding, {self.steps} decode steps")

    def cost(self, row: Row) -> int:
        return row.prompt_len + self.g.sampling.max_new_tokens

    def add(self, pending: Pending, removed: tuple[int, ...]) -> None:
        self.queue.append((pending, removed))

    def run(self, until_queued: int | None = None) -> None:
        """Decodes until every row has finished, or (with `until_queued`) until the queued rows' cost is below it."""
        while self.queue or self.rows:
            if until_queued is not None and sum(self.cost(p.row) for p, _ in self.queue) < until_queued:
                return
            self._admit()
            self._step()

    def _admit(self) -> None:
        used = sum(self.cost(row) for row in self.rows)
        # admit when a quarter of the budget is free (or nothing runs): merging copies the whole cache
        if not self.queue or (self.rows and used > 0.75 * self.g.decode_tokens):
            return
        parts = [] if self.kv is None else [self.kv]
        while self.queue and used + self.cost(self.queue[0][0].row) <= self.g.decode_tokens:
            pending, removed = self.queue.popleft()
            parts.append(pending.kv)
            self.rows.append(pending.row)
            self.removed.append(removed)
            used += self.cost(pending.row)
        self.kv = KVRows.concat(parts)
        self.skip = self.g.skip_rows(self.removed)

    def _step(self) -> None:
        g, dev = self.g, self.g.device
        ids = torch.tensor([[row.raw[-1]] for row in self.rows], device=dev)
        positions = torch.tensor([[row.prompt_len + len(row.raw) - 1] for row in self.rows], device=dev)
        mask = torch.cat([self.kv.mask, torch.ones(len(self.rows), 1, dtype=self.kv.mask.dtype, device=dev)], 1)
        with g.skip.rows(self.skip):
            result = g.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                            **with_cache(self.kv.cache()), use_cache=True)
        self.kv = g.rows_of(cache_of(result), mask)
        tokens = g.choose(g.logits(result.last_hidden_state[:, -1]), [row.item for row in self.rows],
                          [len(row.raw) for row in self.rows])
        going = []
        for r, (row, token) in enumerate(zip(self.rows, tokens)):
            row.raw.append(token)
            row.finish = g.ending.reason(row.raw)
            if row.finish is None:
                going.append(r)
        self.steps += 1
        self.finished += len(self.rows) - len(going)
        self.tick()
        if len(going) < len(self.rows):
            self.kv = self.kv.select(going) if going else None
            self.rows = [self.rows[r] for r in going]
            self.removed = [self.removed[r] for r in going]
            self.skip = self.skip[going] if going else None
