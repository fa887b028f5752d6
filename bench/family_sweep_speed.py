"""Benchmark: a single-layer sweep of a tiny random model of every supported family, side by side in one run.

    python bench/family_sweep_speed.py                    # 8 layers, hidden 128, 48 scoring requests
    python bench/family_sweep_speed.py --layers 12 --hidden 256 --requests 96

Per family, the same requests (multiple-choice items with a shared few-shot prefix) and the same candidates (the
base model and each layer removed alone) are scored two ways:
  prunelab   the sweep engine: one base pass recording every layer's input, each candidate resumed from its layer;
  plain      the same engine without the layer-input cache: every candidate a full pass with its layer removed.
It prints each family's sweep time, its ratio to Llama's (so a family that is slow shows it) and the speed-up of
prunelab over plain. Sliding-window families get masks built from each row's own positions (`Scorer._masks`), so
requests longer than the window batch with a shared prefix like any other; `--window 16` makes every request longer
than the window. Every request of a hybrid (linear-attention) model is left-padded and batched without a shared
prefix (`plan_batches`). Tiny models measure the plumbing (hooks, caches, masks, MoE routing) more than matmuls;
threads are pinned to 2.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import tiny  # noqa: E402

from prunelab.errors import ModelError  # noqa: E402
from prunelab.scoring.engine import Scorer  # noqa: E402
from prunelab.scoring.requests import choice_request  # noqa: E402

PREFIX = "Question: What is (4 * 4) * 1? Answer: 16\nQuestion: What is (8 + 3) * 5? Answer: 55\n"


def requests(tok, n: int):
    out = []
    for i in range(n):
        a, b = i % 10, (3 * i) % 10
        out.append(choice_request(tok, PREFIX + f"Question: What is {a} + {b}? Answer:",
                                  [f" {a + b}", f" {a + b + 1}", f" {a * b}", " carbon dioxide"], PREFIX))
    return out


def sweep_cached(scorer: Scorer, reqs) -> float:
    start = time.perf_counter()
    for batch in scorer.plan(reqs):
        _, capture = scorer.run(reqs, batch, capture=True)
        for layer in range(scorer.num_layers):
            first, keep = scorer.resume_point((layer,))
            scorer.run(reqs, batch, keep=keep, resume=(first, capture))
    return time.perf_counter() - start


def sweep_plain(scorer: Scorer, reqs) -> float:
    start = time.perf_counter()
    scorer.score(reqs)
    for layer in range(scorer.num_layers):
        scorer.score(reqs, removed=(layer,))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="the best of this many runs is reported")
    parser.add_argument("--window", type=int, default=512,
                        help="sliding window of the families that have one (Gemma 3: 512)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tok = tiny.tokenizer()
    reqs = requests(tok, args.requests)
    rows = []
    for family in tiny.FAMILIES:
        model = tiny.model(family, args.layers, hidden=args.hidden, window=args.window)
        try:
            scorer = Scorer(model, batch_tokens=4096)
        except ModelError as exc:
            rows.append((family, None, None, str(exc).split(";")[0].split(", and ")[-1]))
            continue
        with torch.inference_mode():
            sweep_cached(scorer, reqs)  # warm-up
            cached = min(sweep_cached(scorer, reqs) for _ in range(args.repeats))
            plain = min(sweep_plain(scorer, reqs) for _ in range(args.repeats))
        rows.append((family, cached, plain, ""))
    llama = next(cached for family, cached, _, _ in rows if family == "llama")
    print(f"single-layer sweep of {args.layers} layers, hidden {args.hidden}, {args.requests} requests of "
          f"{max(len(r.context) for r in reqs)} tokens at most, sliding window {args.window} (best of {args.repeats})")
    print(f"{'family':<12} {'prunelab s':>10} {'vs llama':>9} {'plain s':>9} {'prunelab/plain speed-up':>24}")
    for family, cached, plain, why in rows:
        if cached is None:
            print(f"{family:<12} {'-':>10} {'-':>9} {'-':>9}   no prefix-cached sweep: {why}")
        else:
            print(f"{family:<12} {cached:>10.3f} {cached / llama:>8.2f}x {plain:>9.3f} {plain / cached:>23.2f}x")


if __name__ == "__main__":
    main()
