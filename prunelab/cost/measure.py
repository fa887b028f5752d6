"""Measures one model's inference cost with transformers, in a process of its own (so that its peak memory is its own):

    python -m prunelab.cost.measure SPEC.json OUT.json

SPEC: the checkpoint path (and `removed`: layers to drop from it in memory), dtype, device, threads, the prompt token ids (one row per sequence of the batched
setting; row 0 alone is batch 1), new_tokens, warmup and runs. Every model gets the same ids and generates exactly
`new_tokens` tokens (`min_new_tokens` = `max_new_tokens`: no early end of sequence), so every model does the same
work whatever it writes. Per run: generation of `new_tokens` at batch 1 and at the batch, each timed
at its first token (a stopping criterion that only reads the clock), so the time to first token (batch 1), the
prefill (the whole batch: prompt + one token) and the decode (the tokens after the first over the time after the
first) come from one call and never from a difference of two. Peak memory: the process's peak resident set after loading, and
its peak while generating counted from what was resident once the model was loaded (on Linux the high-water mark is
reset then, through /proc/self/clear_refs), or CUDA's peak allocation, reset the same way (GPU). Without that reset,
a variant made in memory would report the peak of loading the whole checkpoint it was cut from.
"""

import ctypes
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path


def _peak_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    try:  # the high-water mark, which reset_peak can reset; ru_maxrss cannot be
        return _proc_status_kib("VmHWM") * 1024
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {field} in /proc/self/status")


def reset_peak(device: str) -> bool:
    """Counts the peak from now on: CUDA's counter, or the process's high-water mark (after the memory of layers
    dropped in memory was handed back: gc, then glibc's malloc_trim). False where it cannot be reset."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return True
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak resident set to the current one
        return _proc_status_kib("VmHWM") <= _proc_status_kib("VmRSS") + 1024
    except (OSError, ValueError):
        return False


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _cache_bytes(cache) -> int:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in layers if getattr(layer, "keys", None) is not None)
    return sum(k.nbytes + v.nbytes for k, v in cache)


STEADY = 0.05  # warm-up goes on while the last two warm-up runs' batch-1 decode rates differ by more than this
EXTRA_WARMUP = 3  # at most this many warm-up runs beyond `warmup`


def _steady(rates: list[float]) -> bool:
    return len(rates) >= 2 and abs(rates[-1] - rates[-2]) <= STEADY * rates[-2]


def timed_runs(generate, one, batch, rows: int, prompt_tokens: int, n: int, warmup: int,
               runs: int) -> tuple[dict, set[int], int]:
    """Per run, `n` tokens at batch 1 (`one`) and at the batch; `generate(prompts, n)` gives (prompt + first token
    seconds, the other tokens' seconds, the token counts made). At least `warmup` warm-up runs, more while the
    last two still differ (caches, allocator and clock settling), then `runs` measured ones. Returns the stats of
    time to first token, prefill and decode tokens/s over the measured runs, every token count made (warm-up
    included) and the number of warm-up runs."""
    timings = {"ttft_s": [], "prefill_tps": [], "decode_b1_tps": [], "decode_batch_tps": []}
    generated = set()
    warm: list[float] = []
    while len(warm) < warmup or (warmup and not _steady(warm) and len(warm) < warmup + EXTRA_WARMUP):
        _, decode_one, made_one = generate(one, n)
        _, _, made_batch = generate(batch, n)
        generated |= made_one | made_batch
        warm.append((n - 1) / decode_one)
    for _ in range(runs):
        ttft, decode_one, made_one = generate(one, n)
        prefill, decode_batch, made_batch = generate(batch, n)
        generated |= made_one | made_batch
        timings["ttft_s"].append(ttft)
        timings["prefill_tps"].append(rows * prompt_tokens / prefill)
        timings["decode_b1_tps"].append((n - 1) / decode_one)
        timings["decode_batch_tps"].append(rows * (n - 1) / decode_batch)
    return {k: _stats(v) for k, v in timings.items()}, generated, len(warm)


def _load(spec: dict):
    """(the model on its device, load seconds, peak bytes while loading, whether the peak could be reset after)."""
    import torch
    from transformers import AutoModelForCausalLM

    from prunelab.models.loading import resolve_dtype

    device = spec["device"]
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=resolve_dtype(spec["dtype"], device))
    if spec.get("removed"):  # a pruned variant of the checkpoint, made in memory (as a sweep makes them)
        from prunelab.surgery import drop_layers

        drop_layers(model, spec["removed"])
    model = model.to(device).eval()
    load_s = time.perf_counter() - start
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return model, load_s, _peak_bytes(device), reset_peak(device)


def _pad_id(model) -> int:
    pad = model.generation_config.pad_token_id
    if pad is None:
        eos = model.generation_config.eos_token_id
        pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    return pad


def _timed_generate(model, device: str):
    """generate(batch, tokens) -> (prompt + first token seconds, the other tokens' seconds, {tokens made}): both
    times from the same call, the first token's time taken by a stopping criterion called after each token."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from prunelab.hardware import attention_backends

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class Clock(StoppingCriteria):
        """Called once per generated token, after it is made: the first call ends the prefill."""

        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores, **kwargs):
            sync()
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    pad = _pad_id(model)

    @torch.inference_mode()
    def generate(batch, tokens: int) -> tuple[float, float, set[int]]:
        clock = Clock()
        t0 = time.perf_counter()
        with attention_backends(torch.device(device)):
            out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=False,
                                 max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=pad,
                                 stopping_criteria=StoppingCriteriaList([clock]))
        sync()
        end = time.perf_counter()
        return clock.times[0] - t0, end - clock.times[0], {out.shape[1] - batch.shape[1]}

    return generate


def _sizes(model) -> dict:
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "embedding_parameters": embedding.numel(),
            "head_parameters": 0 if head is embedding else head.numel(),
            "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "num_layers": model.config.get_text_config().num_hidden_layers}


def measure(spec: dict) -> dict:
    """One model's sizes, KV bytes per token, load time, peak memory and timed generation (`timed_runs`), in this
    process."""
    import torch

    from prunelab.models.cache_api import cache_of

    device = spec["device"]
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model, load_s, peak_load, peak_reset = _load(spec)
    ids = torch.tensor(spec["prompt_ids"], device=device)
    n = spec["new_tokens"]
    with torch.inference_mode():
        kv = _cache_bytes(cache_of(model(ids[:1], use_cache=True)))
    timings, generated, warmed = timed_runs(_timed_generate(model, device), ids[:1], ids, int(ids.shape[0]),
                                            int(ids.shape[1]), n, spec["warmup"], spec["runs"])
    return {
        **_sizes(model),
        "kv_bytes_per_token": kv / ids.shape[1],
        "load_s": load_s, "peak_load_bytes": peak_load, "peak_generate_bytes": _peak_bytes(device),
        "peak_generate_counts_load": not peak_reset,  # the peak could not be reset after loading
        "workload": {"batch": int(ids.shape[0]), "prompt_tokens": int(ids.shape[1]), "new_tokens": n,
                     "generated_tokens": sorted(generated)},
        "warmup_runs": warmed, "threads": torch.get_num_threads() if not device.startswith("cuda") else None,
        **timings,
    }


if __name__ == "__main__":
    result = measure(json.loads(open(sys.argv[1]).read()))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
