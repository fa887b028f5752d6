"""One vLLM engine for every candidate of a generative sweep: layers are removed and restored at run time.

vLLM has no layer-skip API. Its decoder layers are `forward(positions, hidden_states, residual) -> (hidden_states,
residual)` with the residual add fused into the next layer's norm, so a layer whose forward returns its inputs is
exactly a removed layer (a `residual` of None after a removed layer 0 is what the first layer expects). `LayerSkip`
is mixed into vLLM's worker (engine argument `worker_extension_cls`) and sets that instance-level forward through
`LLM.collective_rpc`. Two things would silently undo it, and both are handled: CUDA graphs and torch.compile replay
what they captured, so the engine runs eager; and prefix-cache blocks computed with another layer set would be
reused, so the prefix cache is reset between candidates.
"""

from collections.abc import Sequence

from prunelab.generation.base import Generation, GenerationRequest, Sampling
from prunelab.generation.vllm import VLLMBackend

EXTENSION = "prunelab.generation.vllm_layers.LayerSkip"


def _passthrough(positions, hidden_states, residual, *args, **kwargs):
    return hidden_states, residual


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
                layer.forward = _passthrough
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
        llm.reset_prefix_cache()

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
