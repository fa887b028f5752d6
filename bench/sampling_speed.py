"""Benchmark: choosing a sampled token, side by side in one run, on a real model's next-token logits.

    python bench/sampling_speed.py                               # embedded default (Qwen2.5-Coder-0.5B), 151,936 tokens
    python bench/sampling_speed.py --rows 32 --temperature 0.9 --top-p 0.95

The logits are the model's own (HumanEval chat prompts, `--steps` greedy steps each, `--rows` at a time), so the
distributions are as peaked as a real decode's. Three ways to choose one token per row, each timed over the same
logits (best of `--repeats`):
- prunelab: `generation.tokens.choose`, the 256 most probable tokens first, the full sort only where they cannot
  decide (what both engines sample with);
- full sort: the same rule on the whole vocabulary sorted in float64 (what prunelab did before);
- multinomial: softmax and `torch.multinomial`, as transformers samples (another random stream; for scale only).
Printed: ms per decode step (one call for `--rows` rows) of each, the ratios, the share of rows the fast path
decided, and whether prunelab picked exactly what the full sort picks (it must).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.generation import Sampling  # noqa: E402
from prunelab.generation.tokens import TOP, _choose_sorted, _choose_top, choose  # noqa: E402
from prunelab.models import load_model  # noqa: E402
from prunelab.models.cache_api import cache_of, with_cache  # noqa: E402
from prunelab.tasks import build_task  # noqa: E402


def real_logits(model, tokenizer, rows: int, steps: int) -> list[torch.Tensor]:
    """Next-token logits (rows, vocab) at each of `steps` greedy steps of `rows` prompts generated alone."""
    items = build_task("humaneval", limit=rows).items(tokenizer)
    per_step = [[] for _ in range(steps)]
    with torch.inference_mode():
        for item in items:
            ids = torch.tensor([item.request.prompt_ids])
            out = model(ids, use_cache=True)
            for step in range(steps):
                logits = out.logits[0, -1].float()
                per_step[step].append(logits)
                # the cache argument's name moved across transformers releases: `models.cache_api` knows which
                out = model(logits.argmax().view(1, 1), use_cache=True, **with_cache(cache_of(out)))
    return [torch.stack(rows_) for rows_ in per_step]


def best(fn, batches, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            fn(b)
        times.append((time.perf_counter() - start) / len(batches))
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = load_model(args.model, dtype="float32")
    batches = real_logits(model, tokenizer, args.rows, args.steps)
    sampling = Sampling(max_new_tokens=1, temperature=args.temperature, top_p=args.top_p)
    generator = torch.Generator().manual_seed(0)
    uniforms = [torch.rand(len(b), generator=generator, dtype=torch.float64) for b in batches]
    pairs = list(zip(batches, uniforms))

    def full(pair):
        logits, u = pair
        return _choose_sorted(torch.softmax(logits.double() / sampling.temperature, dim=-1), sampling.top_p, u)

    def fast(pair):
        return choose(pair[0], sampling, pair[1])

    def multinomial(pair):
        return torch.multinomial(torch.softmax(pair[0] / sampling.temperature, dim=-1), 1)

    same = all(torch.equal(fast(p), full(p)) for p in pairs)
    decided = sum(int((_choose_top(torch.softmax(b.double() / sampling.temperature, dim=-1), sampling.top_p,
                                   u.double(), TOP) >= 0).sum()) for b, u in pairs)
    t_fast, t_full, t_multi = (best(f, pairs, args.repeats) for f in (fast, full, multinomial))
    vocab = batches[0].shape[-1]
    print(f"{args.model}: {len(pairs)} decode steps x {args.rows} rows, vocabulary {vocab}, temperature "
          f"{args.temperature}, top_p {args.top_p}")
    print(f"prunelab (top {TOP} first): {1000 * t_fast:.1f} ms per step; decided among them: "
          f"{decided} of {len(pairs) * args.rows} rows")
    print(f"full sort:                 {1000 * t_full:.1f} ms per step")
    print(f"multinomial (transformers): {1000 * t_multi:.1f} ms per step")
    print(f"ratio prunelab / full sort: {t_fast / t_full:.2f} ({t_full / t_fast:.1f}x faster); "
          f"prunelab / multinomial: {t_fast / t_multi:.2f}")
    print(f"prunelab picks what the full sort picks: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
