"""Benchmark: a generative single-layer sweep three ways, on the same items and candidates, greedy.

    python bench/generative_sweep_speed.py --skip-original                  # 64 HumanEval + 64 GSM8K, layers 0,12,23
    python bench/generative_sweep_speed.py --layers 0,6,12,18,23 --humaneval 2 --gsm8k 2 --max-new-tokens 128

1. prunelab: the multi-candidate engine (`prunelab.generation.candidates`): all candidates of the items in one
   decode batch, each reusing the base model's output up to its first differing token.
2. per candidate (prunelab's previous path): for each candidate, the layer removed in memory and the HF backend
   generating the items as batched as it can: all items of a task per generate call, up to the same KV-token
   budget the engine's decode batch has (`--generation-tokens`), so batching is not what the ratio measures.
3. the original's way: for each candidate, export the pruned checkpoint, load it, generate (HF backend, same
   batches as 2).

Beside the measured ratio it prints what the engine can save at most, in FLOPs of the layers' and head's matrix
products (2 x weights per token; attention scores left out): per candidate, the layers below its removed layer are
the base model's, computed once for all candidates, and the base output positions it agrees with are checked in
parallel, not decoded; the ratio of the per-candidate path's FLOPs to the engine's is the bound, and the measured
ratio over it the fraction reached.

All three must write the same outputs (checked: the count of differing (candidate, item) pairs is printed, with the
first differing position; greedy decoding can only differ at floating-point near-ties). Printed: wall time of each,
the ratios per candidate / prunelab and original / prunelab (goals on this CPU: >= 5x for the full 24-layer sweep),
and the fraction of the candidates' output tokens that were taken from the base output instead of decoded, per
layer. Runs one after another, nothing else running: time it on a quiet machine.
"""

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.cost.bound import Shape  # noqa: E402
from prunelab.execution.worker import Worker, WorkerSpec  # noqa: E402
from prunelab.generation import HFBackend  # noqa: E402
from prunelab.models import load_model, resolve_model_path  # noqa: E402
from prunelab.surgery import drop_layers, num_layers, save_pruned  # noqa: E402
from prunelab.tasks import build_task  # noqa: E402

# as in configs/sweep/qwen-generative.yaml: HumanEval completes the function (no chat turn), GSM8K answers in chat
TASKS = {"humaneval": {"chat": "off", "max_new_tokens": 192}, "gsm8k": {"max_new_tokens": 256}}


def workload(args, tokenizer):
    """(task name, requests, sampling) for HumanEval and GSM8K items, greedy."""
    out = []
    for name, limit in (("humaneval", args.humaneval), ("gsm8k", args.gsm8k)):
        if not limit:
            continue
        task = build_task(name, limit=limit, **TASKS[name])
        items = task.items(tokenizer)
        sampling = task.sampling(items[0].reference["chat"])
        if args.max_new_tokens:
            sampling = replace(sampling, max_new_tokens=args.max_new_tokens)
        out.append((name, [it.request for it in items], sampling))
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def multi_candidate(args, model, tokenizer, work, candidates):
    spec = WorkerSpec(model="bench", batch_tokens=args.batch_tokens, generation_engine="multi-candidate",
                      generation_tokens=args.generation_tokens)
    worker = Worker.around(model, tokenizer, spec)
    return {name: worker.generate_candidates(requests, candidates, sampling) for name, requests, sampling in work}


def batch_rows(args, requests, sampling) -> int:
    """Rows per generate call for the per-candidate paths: every item of the task, unless their KV tokens (prompt
    + new tokens each) pass the engine's decode budget; `--batch-size` overrides."""
    if args.batch_size:
        return args.batch_size
    longest = max(len(r.prompt_ids) for r in requests) + sampling.max_new_tokens
    return max(1, min(len(requests), args.generation_tokens // longest))


def per_candidate(args, model, tokenizer, work, candidates):
    out = {}
    for name, requests, sampling in work:
        spec = WorkerSpec(model="bench", generation_batch_size=batch_rows(args, requests, sampling))
        worker = Worker.around(model, tokenizer, spec)
        out[name] = [worker.generate(requests, removed, sampling) for removed in candidates]
    return out


def original(args, work, candidates):
    """Export each candidate's checkpoint, load it, generate."""
    out = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for removed in candidates:
            model, tokenizer = load_model(args.model, dtype=args.dtype)
            drop_layers(model, removed)
            path = save_pruned(model, tokenizer, Path(tmp) / "candidate", {"removed_layers": list(removed)})
            del model
            model, tokenizer = load_model(str(path), dtype=args.dtype)
            for name, requests, sampling in work:
                backend = HFBackend(model, tokenizer, batch_size=batch_rows(args, requests, sampling))
                out[name].append(backend.generate(requests, sampling))
    return out


def flops(shape, work, ours, candidates) -> tuple[float, float]:
    """(per-candidate path, engine): FLOPs of the matrix products (2 x weights per token) of the whole sweep, from
    the prompts and the engine's own outputs (tokens written, tokens reused from the base output)."""
    from prunelab.generation.candidates import CHECK_CHUNK

    layer, head, n = 2.0 * shape.layer_params(), 2.0 * shape.head_params(), shape.layers
    alone = engine = 0.0
    for name, requests, _ in work:
        base = ours[name][0]
        for removed, generations in zip(candidates, ours[name]):
            depth = n - len(removed)
            for request, g, b in zip(requests, generations, base):
                prompt = len(request.prompt_ids)
                alone += (prompt + g.output_tokens) * depth * layer + g.output_tokens * head
                if not removed:  # the base trace: every candidate's layers below its removed one come from it
                    engine += (prompt + g.output_tokens) * n * layer + g.output_tokens * head
                    continue
                reused = min(g.reused_tokens, g.output_tokens)
                # checked in chunks of CHECK_CHUNK output positions until the first difference (or the end)
                checked = b.output_tokens if reused >= b.output_tokens else \
                    min(b.output_tokens, (reused // CHECK_CHUNK + 1) * CHECK_CHUNK)
                above = n - 1 - min(removed)  # layers after the first removed one
                engine += (prompt + checked) * above * layer + checked * head
                engine += (g.output_tokens - reused) * (depth * layer + head)
    return alone, engine


def differences(a, b, candidates) -> list[str]:
    found = []
    for name in a:
        for removed, ga, gb in zip(candidates, a[name], b[name]):
            for x, y in zip(ga, gb):
                if x.text != y.text:
                    at = next((k for k, (p, q) in enumerate(zip(x.text, y.text)) if p != q), min(len(x.text), len(y.text)))
                    found.append(f"{name} {x.id} drop-{removed}: differs at character {at} of {len(x.text)}")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--layers", default="0,12,23", help="comma-separated layers to sweep ('all': every layer)")
    p.add_argument("--humaneval", type=int, default=64, help="HumanEval items")
    p.add_argument("--gsm8k", type=int, default=64, help="GSM8K items")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: 192 (HumanEval), 256 (GSM8K)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per generate call of paths 2 and 3 (default: every item of a task, within the budget)")
    p.add_argument("--batch-tokens", type=int, default=4096, help="prunelab: tokens per base trace group")
    p.add_argument("--generation-tokens", type=int, default=65536, help="prunelab: KV tokens per decode batch")
    p.add_argument("--skip-original", action="store_true", help="leave out path 3 (export, load, generate)")
    args = p.parse_args()

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    shape = Shape.of(model.config)
    layers = list(range(num_layers(model))) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    candidates = [(), *[(layer,) for layer in layers]]
    work = workload(args, tokenizer)
    print(f"{resolve_model_path(args.model)} ({next(model.parameters()).dtype}, {torch.get_num_threads()} threads): "
          f"{len(candidates)} candidates (base + layers {layers}) x "
          + ", ".join(f"{len(r)} {n} items (max_new_tokens {s.max_new_tokens}, {batch_rows(args, r, s)} rows per "
                      "per-candidate call)" for n, r, s in work), flush=True)

    ours, t_ours = timed(lambda: multi_candidate(args, model, tokenizer, work, candidates))
    print(f"prunelab multi-candidate engine: {t_ours:.1f} s", flush=True)
    theirs, t_per = timed(lambda: per_candidate(args, model, tokenizer, work, candidates))
    print(f"per-candidate generation:        {t_per:.1f} s", flush=True)
    model = None  # noqa: F841 (path 3 loads its own copies; free this one)
    if not args.skip_original:
        orig, t_orig = timed(lambda: original(args, work, candidates))
        print(f"export + load + generate:        {t_orig:.1f} s", flush=True)

    for label, other in [("per-candidate", theirs)] + ([] if args.skip_original else [("original", orig)]):
        diff = differences(ours, other, candidates)
        total = sum(len(g) for gens in ours.values() for g in gens)
        print(f"outputs equal to {label}: {total - len(diff)} of {total}" + "".join(f"\n  {d}" for d in diff[:10]))
    alone, engine = flops(shape, work, ours, candidates)
    print(f"ratio per-candidate / prunelab: {t_per / t_ours:.2f}; FLOPs bound {alone / engine:.2f} "
          f"({alone / 1e12:.1f} against {engine / 1e12:.1f} TFLOP); reached {t_per / t_ours / (alone / engine):.0%} "
          "of it")
    if not args.skip_original:
        print(f"ratio original / prunelab:      {t_orig / t_ours:.2f}")

    reused, written = defaultdict(int), defaultdict(int)
    for gens in ours.values():
        for removed, generations in zip(candidates, gens):
            for g in generations:
                reused[removed] += min(g.reused_tokens, g.output_tokens)
                written[removed] += g.output_tokens
    pruned = [c for c in candidates if c]
    share = sum(reused[c] for c in pruned) / max(1, sum(written[c] for c in pruned))
    print(f"output tokens taken from the base output instead of decoded: {share:.1%} over all candidates")
    print("per layer: " + ", ".join(f"{c[0]}: {reused[c] / max(1, written[c]):.0%}" for c in pruned))


if __name__ == "__main__":
    main()
