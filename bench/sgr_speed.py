"""Benchmark: SGR output tokens/s through prunelab's Ray Data pipeline against the raw backend on the same prompts.

    python bench/sgr_speed.py                                    # embedded default (Qwen2.5-Coder-0.5B), CPU, HF
    python bench/sgr_speed.py --prompts 16 --max-new-tokens 64 --model gemma3-270m --chat-template plain
    python bench/sgr_speed.py --backend vllm --model /path/to/checkpoint --prompts 512   # GPU machine with vLLM

The same ShareGPT prompts (chosen and rendered by prunelab's selection, token ids), greedy, the same token limit.
"raw" is the backend called directly in this process: transformers' `model.generate` on left-padded batches of
`--batch-size` (CPU), or one `vllm.LLM.generate` call (GPU). "prunelab" is `prunelab sgr`'s path: Ray Data with one
generator actor (hf; `--cpus` for it) or one vLLM engine, rows streamed back, shards written atomically. Both arms
count the model load (the raw arm in this process, the pipeline in its actor); a running Ray (the cluster) is
not counted. Goal: prunelab's throughput >= 90% of the raw backend's (overhead <= 10%).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def sgr_config(args, out: str):
    from prunelab.config import SGRConfig, parse_config

    return parse_config({
        "kind": "sgr", "name": "bench", "model": {"name": args.model, "dtype": args.dtype},
        "chat_template": args.chat_template, "output_dir": out,
        "prompts": {"source": args.source, "limit": args.prompts, "max_prompt_tokens": 256, "exclude_tasks": []},
        "sampling": {"max_new_tokens": args.max_new_tokens},
        "engine": {"backend": args.backend, "replicas": 1, "batch_size": args.batch_size, "num_cpus": args.cpus,
                   "num_gpus": 1 if args.backend == "hf" and args.gpu else 0, "shard_size": args.batch_size}},
        cls=SGRConfig)


def raw_hf(args, planned) -> tuple[int, float]:
    import torch

    from prunelab.models import load_model

    start = time.perf_counter()
    model, tokenizer = load_model(args.model, dtype=args.dtype, device="cuda" if args.gpu else "cpu")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos or [tokenizer.eos_token_id])
    tokens = 0
    for i in range(0, len(planned), args.batch_size):
        batch = [list(p.prompt_ids) for p in planned[i : i + args.batch_size]]
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(b)) + b for b in batch], device=model.device)
        mask = torch.tensor([[0] * (width - len(b)) + [1] * len(b) for b in batch], device=model.device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=sorted(eos))
        for row in out[:, width:].tolist():
            tokens += next((k for k, t in enumerate(row) if t in eos), len(row))
    return tokens, time.perf_counter() - start


def raw_vllm(args, planned) -> tuple[int, float]:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    start = time.perf_counter()
    llm = LLM(model=args.model_path, generation_config="vllm")
    outputs = llm.generate([TokensPrompt(prompt_token_ids=list(p.prompt_ids)) for p in planned],
                           SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0))
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return tokens, time.perf_counter() - start


def prunelab_pipeline(args) -> tuple[int, float]:
    from prunelab.distributed.sgr import ray_responses
    from prunelab.sgr.shards import CorpusShards
    from prunelab.stages.sgr import generate_corpus

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        root = generate_corpus(sgr_config(args, out), ray_responses, progress=False)
        elapsed = time.perf_counter() - start
        tokens = sum(CorpusShards(root).read().column("output_tokens").to_pylist())
    return tokens, elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--chat-template", default="auto")
    p.add_argument("--source", default="sharegpt")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cpus", type=float, default=2, help="CPUs of the pipeline's generator actor")
    p.add_argument("--gpu", action="store_true", help="hf on a GPU")
    args = p.parse_args()

    import ray

    from prunelab.models import inspect_model
    from prunelab.stages.sgr import plan_corpus

    with tempfile.TemporaryDirectory() as out:
        facts, _, selection = plan_corpus(sgr_config(args, out))
    args.model_path = facts.path
    planned = selection.prompts
    print(f"{len(planned)} prompts, {args.max_new_tokens} new tokens max, batch {args.batch_size}, "
          f"backend {args.backend}, model {args.model} ({inspect_model(sgr_config(args, out).model).num_layers} "
          "layers)")
    raw_tokens, raw_s = (raw_vllm if args.backend == "vllm" else raw_hf)(args, planned)
    print(f"raw {args.backend}: {raw_tokens} tokens in {raw_s:.1f} s = {raw_tokens / raw_s:.1f} tok/s")
    ray.init(num_cpus=max(2, int(args.cpus)), include_dashboard=False)
    try:
        ours_tokens, ours_s = prunelab_pipeline(args)
    finally:
        ray.shutdown()
    print(f"prunelab (Ray Data): {ours_tokens} tokens in {ours_s:.1f} s = {ours_tokens / ours_s:.1f} tok/s")
    ratio = (ours_tokens / ours_s) / (raw_tokens / raw_s)
    print(f"ratio prunelab / raw throughput: {ratio:.2f} (goal >= 0.90; greedy, so token counts should match: "
          f"{ours_tokens} vs {raw_tokens})")


if __name__ == "__main__":
    main()
