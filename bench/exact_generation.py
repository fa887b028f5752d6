"""Benchmark: what `generation.exact` costs and what it removes, side by side in one run.

    python bench/exact_generation.py                         # embedded default (Qwen2.5-Coder-0.5B), HumanEval
    python bench/exact_generation.py --prompts 8 --max-new-tokens 64 --dtype bfloat16

The same HumanEval chat prompts, greedy, the same token limit, through prunelab's HF backend:
- batched: `generation.batch_size` rows per batch (longest first, left-padded), as every run generates by default;
- exact: each prompt alone (a batch of one, no padding), what `generation.exact: true` runs.
Runs alternate and the best of `--repeats` is kept for each. Printed: tokens/s of each, exact's time as a ratio of
batched's (its cost), and how many outputs change when only the batch layout changes (batch size B against 3): the
noise exact removes. With exact, the two layouts give the same outputs by construction; the bench checks that too.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.generation import HFBackend, Sampling  # noqa: E402
from prunelab.models import load_model  # noqa: E402
from prunelab.tasks import build_task  # noqa: E402


def timed(backend, requests, sampling):
    start = time.perf_counter()
    out = backend.generate(requests, sampling)
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    task = build_task("humaneval", limit=args.prompts, seed=0, max_new_tokens=args.max_new_tokens)
    requests = [it.request for it in task.items(tokenizer)]
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    batched, exact = HFBackend(model, tokenizer, args.batch_size), HFBackend(model, tokenizer, 1)
    best = {"batched": float("inf"), "exact": float("inf")}
    outputs = {}
    for _ in range(args.repeats):
        for name, backend in (("batched", batched), ("exact", exact)):
            seconds, outputs[name] = timed(backend, requests, sampling)
            best[name] = min(best[name], seconds)
    tokens = {name: sum(g.output_tokens for g in out) for name, out in outputs.items()}
    other = HFBackend(model, tokenizer, 3).generate(requests, sampling)
    exact_again = HFBackend(model, tokenizer, 1).generate(list(reversed(requests)), sampling)[::-1]
    moved = sum(a.text != b.text for a, b in zip(outputs["batched"], other))
    print(f"model {args.model}, dtype {next(model.parameters()).dtype}, {len(requests)} prompts, "
          f"{args.max_new_tokens} new tokens, {torch.get_num_threads()} threads")
    for name in best:
        print(f"{name:8s} {best[name]:7.1f} s  {tokens[name] / best[name]:6.1f} tok/s")
    print(f"exact / batched time: {best['exact'] / best['batched']:.2f}x (the cost of batch invariance)")
    print(f"outputs that change between batch {args.batch_size} and batch 3: {moved} of {len(requests)}")
    print(f"exact outputs equal in another order: {all(a.text == b.text for a, b in zip(outputs['exact'], exact_again))}")


if __name__ == "__main__":
    main()
