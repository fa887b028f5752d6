"""Benchmark: block-influence and angular-distance scoring by prunelab against the original one-prompt-at-a-time
loop (nnsight tracing, one prompt per pass, as the ShortGPT and layer-pruning reference code do), side by side.
Both strategies' statistics come from the same pass, on both sides.

    pip install nnsight        # not a dependency of prunelab
    python bench/strategy_speed.py                                  # embedded default: Qwen2.5-Coder-0.5B
    python bench/strategy_speed.py --samples 32 --max-length 256

Same model, same calibration texts (ShareGPT, packaged), same truncation, same threads. prunelab runs one batched
pass per metric over texts sorted by length (decoder stack only, hooks on the layers, padding masked out); the loop
traces each prompt alone and saves every layer's input and the last layer's output. It checks that both give the
same scores and prints the speed-up (goal >= 10x). Both sides compute both metrics from one pass per text.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.data.corpora import load_corpus  # noqa: E402
from prunelab.models import load_model  # noqa: E402
from prunelab.strategies.similarity import angular_distances, calibration_pass  # noqa: E402


def nnsight_states(lm, text: str, max_length: int) -> list[torch.Tensor]:
    """Every layer's input and the last layer's output for one prompt, [seq, hidden] each."""
    ids = lm.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad(), lm.trace(ids):  # as the reference code does; without it every graph is kept
        saved = list().save()
        for layer in lm.model.layers:
            saved.append(layer.input)
        last = lm.model.layers[-1].output.save()
    return [s[0].float() for s in saved] + [(last[0] if isinstance(last, tuple) else last)[0].float()]


def loop_both(lm, texts, max_length):
    """Block influence per layer and last-token states, one traced prompt at a time."""
    sums, count, last = None, 0, []
    for text in texts:
        states = nnsight_states(lm, text, max_length)
        cos = torch.stack([torch.nn.functional.cosine_similarity(a, b, dim=-1).sum()
                           for a, b in zip(states[:-1], states[1:])])
        sums = cos if sums is None else sums + cos
        count += states[0].shape[0]
        last.append(torch.stack([s[-1] for s in states]))
    return [1.0 - float(s) / count for s in sums], torch.stack(last)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block", type=int, default=4, help="angular: block size n")
    args = p.parse_args()
    from nnsight import LanguageModel

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    texts = load_corpus("sharegpt", limit=args.samples, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = LanguageModel(model, tokenizer=tokenizer)
    nnsight_states(lm, texts[0], 16)  # warm-up of both paths, not timed
    calibration_pass(model, tokenizer, texts[:2], 16)

    timings, results = {}, {}
    for name, fn in [("prunelab (batched, decoder only)",
                      lambda: calibration_pass(model, tokenizer, texts, args.max_length, args.batch_size)),
                     ("nnsight loop (a prompt per pass)", lambda: loop_both(lm, texts, args.max_length))]:
        start = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - start
        print(f"  ... {name}: {timings[name]:.1f} s, process RSS {psutil.Process().memory_info().rss / 2**30:.1f} GiB",
              flush=True)
    tokens = sum(min(len(tokenizer(t)["input_ids"]), args.max_length) for t in texts)
    print(f"strategy scoring, block influence + angular distance ({args.model}, {len(texts)} ShareGPT texts, "
          f"{tokens} tokens, max_length {args.max_length}, batch {args.batch_size}, {torch.get_num_threads()} threads):")
    for name, seconds in timings.items():
        print(f"  {name:34s} {seconds:8.2f} s")
    (bi_ours, states_ours), (bi_loop, states_loop) = results.values()
    bi_diff = max(abs(a - b) for a, b in zip(bi_ours, bi_loop))
    ang_diff = max(abs(a - b) for a, b in zip(angular_distances(states_ours, args.block),
                                               angular_distances(states_loop, args.block)))
    ratio = timings["nnsight loop (a prompt per pass)"] / timings["prunelab (batched, decoder only)"]
    print(f"  ratio nnsight loop / prunelab = {ratio:.2f}x (goal >= 10x); max difference: block influence "
          f"{bi_diff:.1e}, angular (n={args.block}) {ang_diff:.1e}")


if __name__ == "__main__":
    main()
