"""The KV cache of a batch of rows that each carry their own removed layers.

`KVRows` holds every layer's keys and values, rows left-padded (a row's tokens are contiguous and end at the last
column, so token distances, and with them sliding windows, are those of the row alone). Rows of different lengths
and origins (a prompt prefill, a candidate resumed from the base model's output) are concatenated into one decode
batch, and finished rows are dropped, with the columns no remaining row uses trimmed.

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
    keys: list[torch.Tensor]  # per layer (B, heads, T, head_dim)
    values: list[torch.Tensor]
    mask: torch.Tensor  # (B, T) long: 1 where a row has a token

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @classmethod
    def from_cache(cls, cache: DynamicCache, mask: torch.Tensor) -> "KVRows":
        return cls([layer.keys for layer in cache.layers], [layer.values for layer in cache.layers], mask)

    def cache(self) -> DynamicCache:
        return DynamicCache(ddp_cache_data=list(zip(self.keys, self.values)))

    def row(self, r: int, start: int, end: int, layers: list[int] | None = None) -> "KVRows":
        """A copy of row `r`'s columns [start, end) (which must all be its tokens). `layers[l]` picks which of this
        batch's layers becomes layer l of the copy (by default the same)."""
        layers = list(range(len(self.keys))) if layers is None else layers
        return KVRows([self.keys[i][r : r + 1, :, start:end].clone() for i in layers],
                      [self.values[i][r : r + 1, :, start:end].clone() for i in layers],
                      torch.ones(1, end - start, dtype=self.mask.dtype, device=self.mask.device))

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

        keys = [torch.cat([padded(p.keys[l], p.width) for p in parts]) for l in range(len(parts[0].keys))]
        values = [torch.cat([padded(p.values[l], p.width) for p in parts]) for l in range(len(parts[0].keys))]
        mask = torch.cat([torch.nn.functional.pad(p.mask, (width - p.width, 0)) for p in parts])
        return KVRows(keys, values, mask)

    def select_rows(self, index: torch.Tensor) -> "KVRows":
        """Rows `index`, every column kept (each layer's on its own device: a model spread over GPUs)."""
        return KVRows([k.index_select(0, index.to(k.device)) for k in self.keys],
                      [v.index_select(0, index.to(v.device)) for v in self.values],
                      self.mask.index_select(0, index.to(self.mask.device)))

    def select(self, rows: list[int]) -> "KVRows":
        """Rows `rows`, without the leading columns that are padding for all of them."""
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.cumsum(1) == 0).sum(1).min()) if len(rows) else 0
        return KVRows([k.index_select(0, index.to(k.device))[:, :, start:] for k in self.keys],
                      [v.index_select(0, index.to(v.device))[:, :, start:] for v in self.values], mask[:, start:])


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
