"""The KV cache of a batch of rows that each carry their own removed layers.

`KVRows` holds every layer's keys and values, rows left-padded (a row's tokens are contiguous and end at the last
column, so token distances, and with them sliding windows, are those of the row alone). Rows of different lengths
and origins (a prompt prefill, a candidate resumed from the base model's output) are concatenated into one decode
batch, and finished rows are dropped, with the columns no remaining row uses trimmed.

A hybrid model's linear-attention layers keep a state per row instead of keys and values (`KVRows.states`): rows
are selected and joined alike, and a state, which has no columns, needs no padding.

`RowSkip` makes one batch run different models: at layer l, the rows whose candidate removed l leave it with the
hidden state they entered with. The layer still computes (and caches) something for those rows, which they never
read: a removed layer's cache entries are only ever read by that layer, for the same row, and thrown away.
"""

import contextlib
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class KVRows:
    keys: list[torch.Tensor | None]  # per layer (B, heads, T, head_dim); None for a linear-attention layer
    values: list[torch.Tensor | None]
    mask: torch.Tensor  # (B, T) long: 1 where a row has a token
    # a hybrid's linear-attention layers (Qwen3.5): per layer (convolution state, recurrent state), batch first, the
    # state after each row's last column; None for an attention layer, or no list where there is none. A state has
    # no columns: left-padding leaves it as unpadded (the model zeroes padded inputs, from a zero state)
    states: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None
    config: object = None  # the model config a hybrid cache is laid out by

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @classmethod
    def from_cache(cls, cache: DynamicCache, mask: torch.Tensor, config=None) -> "KVRows":
        linear = [hasattr(layer, "conv_states") for layer in cache.layers]
        if not any(linear):
            return cls([layer.keys for layer in cache.layers], [layer.values for layer in cache.layers], mask)
        return cls([None if lin else layer.keys for lin, layer in zip(linear, cache.layers)],
                   [None if lin else layer.values for lin, layer in zip(linear, cache.layers)], mask,
                   [(layer.conv_states[0], layer.recurrent_states[0]) if lin else None
                    for lin, layer in zip(linear, cache.layers)], config)

    def cache(self) -> DynamicCache:
        if self.states is None:
            return DynamicCache(ddp_cache_data=list(zip(self.keys, self.values)))
        # transformers builds a hybrid cache from its config only; its linear layers are filled as after a forward
        # over `width` columns (the length a decode step reads its positions from, as the attention layers' keys)
        cache = DynamicCache(config=self.config)
        for layer, keys, values, state in zip(cache.layers, self.keys, self.values, self.states):
            if state is None:
                layer.update(keys, values)
                continue
            conv, recurrent = state
            layer.lazy_initialization(conv_states=conv, recurrent_states=recurrent)
            layer.conv_states[0].copy_(conv)
            layer.recurrent_states[0].copy_(recurrent)
            layer.has_previous_state[0] = True
            layer.cumulative_length_linear.fill_(self.width)
        return cache

    def _with(self, keys, values, mask, states) -> "KVRows":
        return KVRows(keys, values, mask, states, self.config)

    def row(self, r: int, start: int, end: int, layers: list[int] | None = None) -> "KVRows":
        """A copy of row `r`'s columns [start, end) (which must all be its tokens). `layers[l]` picks which of this
        batch's layers becomes layer l of the copy (by default the same). A linear-attention layer's state is the
        row's after its last column: `end` must be that column's end."""
        layers = list(range(len(self.keys))) if layers is None else layers

        def cut(t):
            return None if t is None else t[r : r + 1, :, start:end].clone()

        states = None if self.states is None else [
            None if self.states[i] is None else tuple(t[r : r + 1].clone() for t in self.states[i]) for i in layers]
        return self._with([cut(self.keys[i]) for i in layers], [cut(self.values[i]) for i in layers],
                          torch.ones(1, end - start, dtype=self.mask.dtype, device=self.mask.device), states)

    @staticmethod
    def join_layers(parts: list["KVRows"]) -> "KVRows":
        """The one-layer `parts` (same rows and columns) as the layers of one batch, in order."""
        return KVRows([p.keys[0] for p in parts], [p.values[0] for p in parts], parts[0].mask)

    @staticmethod
    def concat(parts: list["KVRows"]) -> "KVRows":
        """One batch of all rows of `parts`, left-padded to the widest."""
        width = max(p.width for p in parts)

        def padded(t: torch.Tensor, w: int) -> torch.Tensor:
            return t if w == width else torch.nn.functional.pad(t, (0, 0, width - w, 0))

        def joined(layer: int, which: str):
            if getattr(parts[0], which)[layer] is None:
                return None
            return torch.cat([padded(getattr(p, which)[layer], p.width) for p in parts])

        layers = range(len(parts[0].keys))
        mask = torch.cat([torch.nn.functional.pad(p.mask, (width - p.width, 0)) for p in parts])
        states = None if parts[0].states is None else [
            None if parts[0].states[l] is None else tuple(torch.cat([p.states[l][i] for p in parts]) for i in (0, 1))
            for l in layers]
        return parts[0]._with([joined(l, "keys") for l in layers], [joined(l, "values") for l in layers], mask,
                              states)

    def _rows(self, index: torch.Tensor, start: int = 0) -> "KVRows":
        """Rows `index` (each layer's on its own device: a model spread over GPUs), from column `start`."""
        def pick(t):
            return None if t is None else t.index_select(0, index.to(t.device))[:, :, start:]

        states = None if self.states is None else [
            None if s is None else tuple(t.index_select(0, index.to(t.device)) for t in s) for s in self.states]
        return self._with([pick(k) for k in self.keys], [pick(v) for v in self.values],
                          self.mask.index_select(0, index.to(self.mask.device))[:, start:], states)

    def select_rows(self, index: torch.Tensor) -> "KVRows":
        """Rows `index`, every column kept."""
        return self._rows(index)

    def select(self, rows: list[int]) -> "KVRows":
        """Rows `rows`, without the leading columns that are padding for all of them."""
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.cumsum(1) == 0).sum(1).min()) if len(rows) else 0
        return self._rows(index, start)


class RowSkip:
    """Installs, for the life of the context, a hook on every decoder layer that passes rows through unchanged
    where `self.skip[:, layer]` (a (B, num_layers) bool tensor, or None: every row runs every layer) is set."""

    def __init__(self, layers):
        self.layers = list(layers)
        self.skip: torch.Tensor | None = None

    @contextlib.contextmanager
    def installed(self):
        handles = [layer.register_forward_hook(self._hook(index)) for index, layer in enumerate(self.layers)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self.skip = None

    @contextlib.contextmanager
    def rows(self, skip: torch.Tensor | None):
        self.skip = skip if skip is not None and bool(skip.any()) else None
        try:
            yield
        finally:
            self.skip = None

    def _hook(self, index: int):
        def hook(module, args, output):
            if self.skip is None:
                return output
            passed = self.skip[:, index]
            if not bool(passed.any()):
                return output
            hidden_out = output[0] if isinstance(output, tuple) else output
            # on the layer's output's device: in a model spread over devices its input may still be on the previous
            # layer's (accelerate moves it inside forward, after this hook was handed the arguments)
            at = hidden_out.device
            mixed = torch.where(passed.to(at)[:, None, None], args[0].to(at), hidden_out)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        return hook
