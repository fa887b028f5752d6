"""One vLLM engine for every candidate of a generative sweep: layers are removed and restored at run time.

vLLM has no layer-skip API, and its families call their decoder layers in three ways (read in vLLM 0.33's source):
most as `layer(positions, hidden_states, residual) -> (hidden_states, residual)`, with the residual add fused into
the next layer's norm; gpt_oss as `layer(x, positions, residual)` (hidden states first); Qwen3-Next and Qwen3.5 by
keyword; granite as `layer(positions, hidden_states) -> hidden_states`; and families served by vLLM's Transformers
backend (olmo2, smollm3) as Hugging Face layers, `layer(hidden_states, attention_mask=..., ...) -> hidden_states`.
A removed layer is a forward that returns its inputs in the shape its caller expects (`passthrough`): the arguments
are bound to the layer's own signature, so the hidden states are found by name whatever the order, and the
residual is passed on where the layer has one (None after a removed layer 0 is what the first layer expects).

`LayerSkip` is mixed into vLLM's worker (engine argument `worker_extension_cls`) and sets that instance-level
forward through `LLM.collective_rpc`. Two things would silently undo it, and both are handled: CUDA graphs and
torch.compile replay what they captured (vLLM drops Dynamo's guards), so the engine runs eager; and prefix-cache
blocks computed with another layer set would be reused, so the prefix cache is reset between candidates, and a
reset that fails (blocks still held) is an error, never ignored.
"""

import inspect
from collections.abc import Sequence

from prunelab.generation.base import Generation, GenerationRequest, Sampling
from prunelab.generation.vllm import VLLMBackend

EXTENSION = "prunelab.generation.vllm_layers.LayerSkip"
HIDDEN = ("hidden_states", "x")  # what vLLM's layers call their input (gpt_oss: x in the loop, hidden_states here)


def passthrough(layer):
    """A forward for `layer` that returns its input hidden states (and residual, where it has one) unchanged, for
    however its model calls it. Refuses a layer whose signature names no hidden-states argument."""
    signature = inspect.signature(type(layer).forward)
    params = list(signature.parameters)[1:]  # without self
    hidden = next((name for name in HIDDEN if name in params), None)
    if hidden is None:
        raise ValueError(f"vLLM's {type(layer).__name__}.forward{signature} has no hidden-states argument "
                         f"({' or '.join(HIDDEN)}); its layers cannot be switched off: use generation.backend hf "
                         "for this family's sweep")
    bind = inspect.Signature(list(signature.parameters.values())[1:]).bind_partial
    residual = "residual" in params

    def forward(*args, **kwargs):
        given = bind(*args, **kwargs).arguments
        return (given[hidden], given.get("residual")) if residual else given[hidden]

    return forward

def _decoder_layers(model):
    """vLLM's decoder layers: `model.layers` of a text model, `language_model.model.layers` of a multimodal one."""
    for path in ("model.layers", "language_model.model.layers"):
        layers = model
        for name in path.split("."):
            layers = getattr(layers, name, None)
        if layers is not None:
            return layers
    raise ValueError(f"vLLM's {type(model).__name__} has its decoder layers neither at .model.layers nor at "
                     ".language_model.model.layers; its layers cannot be switched")


class LayerSkip:
    """Methods added to every vLLM worker (one per tensor-parallel rank)."""

    def prunelab_remove_layers(self, layers: list[int]) -> list[int]:
        """Makes decoder layers `layers` identities and restores every other layer; returns the removed layers."""
        decoder_layers = _decoder_layers(self.get_model())
        removed = set(layers)
        bad = sorted(removed - set(range(len(decoder_layers))))
        if bad:
            raise ValueError(f"layers {bad} out of range; the model has {len(decoder_layers)} layers")
        for index, layer in enumerate(decoder_layers):
            if index in removed:
                layer.forward = passthrough(layer)
            elif "forward" in layer.__dict__:
                del layer.forward
        return sorted(removed)


class VLLMCandidateGenerator:
    """`generate(requests, candidates, sampling)` like `CandidateGenerator`, on one eager vLLM engine that switches
    the removed layers between candidates (no restart, no checkpoint written)."""

    def __init__(self, model_path: str, dtype: str = "auto", **engine_kwargs):
        # always eager, whatever the config says: CUDA graphs would replay the layers they captured
        self.backend = VLLMBackend(model_path, dtype=dtype, worker_extension_cls=EXTENSION,
                                   **{**engine_kwargs, "enforce_eager": True})

    def remove(self, layers: Sequence[int]) -> None:
        llm = self.backend.llm
        answers = llm.collective_rpc("prunelab_remove_layers", args=(list(layers),))
        if any(a != sorted(layers) for a in answers):
            raise RuntimeError(f"a vLLM worker did not remove layers {list(layers)}: {answers}")
        # blocks cached with the previous layer set must never serve this one; vLLM returns False (and keeps them)
        # while any block is still held by a request
        if llm.reset_prefix_cache() is False:
            raise RuntimeError(f"vLLM did not reset its prefix cache after switching to layers {list(layers)} "
                               "removed (blocks still held by a request): outputs would mix two layer sets")

    def generate(self, requests: Sequence[GenerationRequest], candidates: Sequence[Sequence[int]],
                 sampling: Sampling) -> list[list[Generation]]:
        out = []
        try:
            for removed in candidates:
                self.remove(removed)
                out.append(self.backend.generate(requests, sampling))
        finally:
            self.remove([])
        return out
