"""What a model's architecture implies for its inference cost, from its config alone (no weights read):
parameters by part, KV-cache bytes per token, prefill FLOPs and decode bytes, and so the speed-up a pruned model can
at best reach over its base.

Prefill is compute-bound: FLOPs per token = 2 x (decoder-layer weights + output head) + attention scores and
values (4 x layers x query width x the mean causal context). Decode is memory-bound: bytes read per step = every
weight a step multiplies by (the layers and the head; one embedding row) + the KV cache of every row of the batch.
The embedding and the head do not shrink with depth, so a model whose vocabulary is a large share of its weights
(Gemma 3 270M: most of them) gains little from removing layers; this is the bound a measurement is held against.
"""

import copy
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
    linear_layers: int = 0  # linear-attention layers: a fixed recurrent state, no KV cache that grows
    sparse_layers: int = 0  # mixture-of-experts layers
    expert_intermediate: int = 0
    active_experts: int = 0  # experts each token runs through (routed and shared)

    @classmethod
    def of(cls, config, keep: list[int] | None = None) -> "Shape":
        """The shape of a model from its config (`prunelab.models.view` reads its layers); with `keep`, of the model
        with only those layers."""
        from prunelab.models.view import LINEAR, SLIDING, SPARSE, keep_in_config, layer_kinds, text_config

        if keep is not None:
            config = copy.deepcopy(config)
            keep_in_config(config, keep)
        text = text_config(config)
        kinds = layer_kinds(config)
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        sparse = sum(k.ffn == SPARSE for k in kinds)
        experts = (getattr(text, "num_experts_per_tok", 0) or 0) + (getattr(text, "n_shared_experts", 0) or 0)
        expert_width = (getattr(text, "moe_intermediate_size", None) or text.intermediate_size) if sparse else 0
        return cls(len(kinds), text.hidden_size, text.intermediate_size, heads,
                   getattr(text, "num_key_value_heads", None) or heads, head_dim, text.vocab_size,
                   bool(getattr(config, "tie_word_embeddings", getattr(text, "tie_word_embeddings", False))),
                   getattr(text, "sliding_window", None), sum(k.attention == SLIDING for k in kinds),
                   sum(k.attention == LINEAR for k in kinds), sparse, expert_width, experts)

    @property
    def attention_layers(self) -> int:
        """Layers with a KV cache."""
        return self.layers - self.linear_layers

    def layer_params(self) -> int:
        """The weights one token multiplies by in a decoder layer, on average over the layers: attention projections
        (biases aside) and the gated MLP, or the experts it is routed to in a mixture-of-experts layer."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        dense = 3 * self.hidden * self.intermediate
        routed = 3 * self.hidden * self.expert_intermediate * self.active_experts
        mlp = (dense * (self.layers - self.sparse_layers) + routed * self.sparse_layers) / max(1, self.layers)
        return int(q + kv + o + mlp)

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def head_params(self) -> int:
        """The output projection's weights (read every step whether or not they are tied to the embedding)."""
        return self.vocab * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V of every layer for one token (sliding-window layers stop growing past their window)."""
        return 2 * self.attention_layers * self.kv_heads * self.head_dim * dtype_bytes

    def kv_bytes(self, context: int, dtype_bytes: int) -> int:
        """The cache of one sequence of `context` tokens; a sliding-window layer keeps the last window - 1 (as
        transformers' cache does: the current token is the window's last)."""
        per_layer = 2 * self.kv_heads * self.head_dim * dtype_bytes
        full = self.attention_layers - self.sliding_layers
        kept = min(context, self.sliding_window - 1) if self.sliding_window else context
        return per_layer * (full * context + self.sliding_layers * kept)

    def prefill_flops_per_token(self, prompt_tokens: int) -> float:
        weights = self.layers * self.layer_params() + self.head_params()
        attention = 4 * self.attention_layers * self.heads * self.head_dim * (prompt_tokens + 1) / 2
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
