"""What a model's architecture implies for its inference cost, from its config alone (no weights read):
parameters by part, KV-cache bytes per token, prefill FLOPs and decode bytes, and so the speed-up a pruned model can
at best reach over its base.

Prefill is compute-bound: FLOPs per token = 2 x (decoder-layer weights + output head) + attention scores and
values (4 x layers x query width x the mean causal context). Decode is memory-bound: bytes read per step = every
weight a step multiplies by (the layers and the head; one embedding row) + the KV cache of every row of the batch.
The embedding and the head do not shrink with depth, so a model whose vocabulary is a large share of its weights
(Gemma 3 270M: most of them) gains little from removing layers; this is the bound a measurement is held against.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    sliding_window: int | None
    sliding_layers: int  # layers that attend within the window only

    @classmethod
    def of(cls, config) -> "Shape":
        text = getattr(config, "text_config", None) or config
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        types = list(getattr(text, "layer_types", None) or [])
        window = getattr(text, "sliding_window", None)
        sliding = sum(t == "sliding_attention" for t in types) if window else 0
        return cls(text.num_hidden_layers, text.hidden_size, text.intermediate_size, heads,
                   getattr(text, "num_key_value_heads", None) or heads, head_dim, text.vocab_size,
                   bool(getattr(config, "tie_word_embeddings", getattr(text, "tie_word_embeddings", False))),
                   window, sliding)

    def layer_params(self) -> int:
        """One decoder layer: attention projections (biases aside), the gated MLP, its norms."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def head_params(self) -> int:
        """The output projection's weights (read every step whether or not they are tied to the embedding)."""
        return self.vocab * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V of every layer for one token (sliding-window layers stop growing past their window)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def kv_bytes(self, context: int, dtype_bytes: int) -> int:
        """The cache of one sequence of `context` tokens; a sliding-window layer keeps the last window - 1 (as
        transformers' cache does: the current token is the window's last)."""
        per_layer = 2 * self.kv_heads * self.head_dim * dtype_bytes
        full = self.layers - self.sliding_layers
        kept = min(context, self.sliding_window - 1) if self.sliding_window else context
        return per_layer * (full * context + self.sliding_layers * kept)

    def prefill_flops_per_token(self, prompt_tokens: int) -> float:
        weights = self.layers * self.layer_params() + self.head_params()
        attention = 4 * self.layers * self.heads * self.head_dim * (prompt_tokens + 1) / 2
        return 2.0 * weights + attention

    def decode_bytes_per_step(self, batch: int, context: int, dtype_bytes: int) -> float:
        weights = (self.layers * self.layer_params() + self.head_params()) * dtype_bytes
        return weights + batch * self.kv_bytes(context, dtype_bytes)


def expected_speedups(base: Shape, pruned: Shape, prompt_tokens: int, new_tokens: int, batch: int,
                      dtype_bytes: int) -> dict[str, float]:
    """The speed-up the architecture allows: prefill by FLOPs, decode by bytes read per step (at the mean context
    of the measured decode), at batch 1 and at `batch`."""
    context = prompt_tokens + new_tokens // 2
    return {"prefill": base.prefill_flops_per_token(prompt_tokens) / pruned.prefill_flops_per_token(prompt_tokens),
            "decode_b1": base.decode_bytes_per_step(1, context, dtype_bytes)
            / pruned.decode_bytes_per_step(1, context, dtype_bytes),
            "decode_batch": base.decode_bytes_per_step(batch, context, dtype_bytes)
            / pruned.decode_bytes_per_step(batch, context, dtype_bytes)}


__all__ = ["Shape", "expected_speedups"]
