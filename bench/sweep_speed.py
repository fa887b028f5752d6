"""Benchmark: a single-layer sweep by prunelab against two ways people run it today, side by side in one run.

    python bench/sweep_speed.py                          # embedded default: Qwen2.5-Coder-0.5B, probe + ARC-Easy
    python bench/sweep_speed.py --limit 8 --layers 0,4,8,12,16,20   # a quicker subset of the same sweep

Three ways, same model, same items, same tasks, same candidates (base + each layer removed), same threads:
  prunelab     the sweep engine (prefix cache over layers, shared few-shot and context, head only where read);
  lm-eval      in memory, per candidate a full forward with full logits of every (context + continuation), as
               lm-eval's HF backend does (single-token continuations of one context share a forward, as there);
  seed         per candidate: write the pruned checkpoint to disk, load it, then the lm-eval-style forward.
It prints both speed-ups, checks that all three agree on the metrics and that prunelab's chosen answers agree with
lm-eval's own HFLM within HFLM's own batch-size noise (bf16 included), and prints the fraction of this machine's
matmul peak (measured here, in the same run) that prunelab's matmul FLOPs reach. Ray is left out of all three:
the engine is what is compared; actors divide the same work among cores.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.execution.worker import Worker, WorkerSpec  # noqa: E402
from prunelab.models import load_model  # noqa: E402
from prunelab.surgery import drop_layers, keep_layers, save_pruned  # noqa: E402
from prunelab.tasks import build_task  # noqa: E402


def matmul_peak(dtype: torch.dtype, seconds: float = 3.0) -> float:
    """GFLOP/s of the best of a few GEMM shapes typical of the model (hidden 896, MLP 4864) and a square one."""
    best = 0.0
    for m, k, n in [(2048, 896, 4864), (2048, 4864, 896), (2048, 2048, 2048)]:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


class FlopCounter:
    """Counts 2*in*out FLOPs per row through every nn.Linear (the model's matmuls; attention scores excluded)."""

    def __init__(self, model: nn.Module):
        self.flops = 0
        self.hooks = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.Linear)]

    def _hook(self, module, args, out):
        self.flops += 2 * args[0].numel() // module.in_features * module.in_features * module.out_features

    def close(self):
        for h in self.hooks:
            h.remove()


def metrics(task, items, scores):
    rows = [task.score_item(it, [s]) for it, s in zip(items, scores)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in task.metrics}


def chosen(items, scores) -> list[int]:
    """Each item's answer: the continuation (or context) with the highest log-likelihood."""
    from prunelab.tasks import regroup

    flat = [[x for s in per_item for x in s.logprobs] for per_item in regroup(items, scores)]
    return [max(range(len(lp)), key=lp.__getitem__) for lp in flat]


def run_prunelab(model, tasks, candidates, batch_tokens, answers=None):
    """Task means per (task, candidate); `answers` (a dict) gets each (task, candidate)'s chosen answers."""
    worker = Worker.around(model, None, WorkerSpec(model="in-memory", batch_tokens=batch_tokens))
    out = {}
    for name, (task, items) in tasks.items():
        reqs = [it.request for it in items]
        per_cand = {c: [None] * len(items) for c in candidates}
        for batch in worker.scorer.plan(reqs):  # units of about one batch, as the sweep cuts them
            unit = [reqs[i] for i in batch.indices]
            base = worker.prepare(unit)
            for c in candidates:
                scores = base if c == () else worker.score(c)
                for i, s in zip(batch.indices, scores):
                    per_cand[c][i] = s
        for c in candidates:
            out[(name, c)] = metrics(task, items, per_cand[c])
            if answers is not None:
                answers[(name, c)] = chosen(items, per_cand[c])
    return out


@torch.inference_mode()
def lm_eval_fidelity(model, tok, tasks, candidates, answers) -> str:
    """prunelab's chosen answers against lm-eval's own HFLM (same model, same items, the candidates' layers removed
    in memory): HFLM with the log-softmax in float32 (as prunelab computes it) at batch 1 and 8, and with its
    default (the log-softmax in the model's dtype)."""
    from lm_eval.models.huggingface import HFLM

    from prunelab.scoring.lm_eval_backend import LMEvalScorer
    from prunelab.tasks import flatten

    def hflm(items, batch_size, softmax_dtype=None):
        scorer = LMEvalScorer(model, tok, batch_size=batch_size)
        scorer.lm = HFLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=batch_size,
                         softmax_dtype=softmax_dtype)
        return chosen(items, scorer.score(flatten(items)))

    count = {"ours-fp32": 0, "fp32 1-8": 0, "ours-default": 0, "items": 0}
    L = len(model.model.layers)
    for c in candidates:
        with keep_layers(model, [l for l in range(L) if l not in c]):
            for name, (_task, items) in tasks.items():
                one, eight, default = hflm(items, 1, torch.float32), hflm(items, 8, torch.float32), hflm(items, 1)
                ours = answers[(name, c)]
                count["ours-fp32"] += sum(a != b for a, b in zip(ours, one))
                count["fp32 1-8"] += sum(a != b for a, b in zip(one, eight))
                count["ours-default"] += sum(a != b for a, b in zip(ours, default))
                count["items"] += len(items)
    return (f"chosen answers against lm-eval's HFLM ({count['items']} item x candidate pairs, "
            f"{next(model.parameters()).dtype}): prunelab vs HFLM (float32 log-softmax, batch 1) differ on "
            f"{count['ours-fp32']}, HFLM batch 1 vs batch 8 on {count['fp32 1-8']} (goal: the first <= the second); "
            f"prunelab vs HFLM's default (log-softmax in the model's dtype) on {count['ours-default']}")


def lm_eval_style_scores(model, items, batch_size=16):
    """Full logits for every (context + continuation) sequence, lm-eval's way."""
    from prunelab.scoring.requests import Scores

    seqs = []  # (item, continuation index or None for "all single-token continuations of this context")
    for n, it in enumerate(items):
        conts = it.request.continuations
        if all(len(c) == 1 for c in conts):
            seqs.append((n, None, list(it.request.context)))
        else:
            seqs.extend((n, j, list(it.request.context) + list(c[:-1])) for j, c in enumerate(conts))
    seqs.sort(key=lambda s: -len(s[2]))
    logps = [[0.0] * len(it.request.continuations) for it in items]
    greedy = [[True] * len(it.request.continuations) for it in items]
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = max(len(s[2]) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, (_, _, s) in enumerate(chunk):
            ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for r, (n, j, _) in enumerate(chunk):
            ctx = len(items[n].request.context)
            conts = items[n].request.continuations
            for jj in ([j] if j is not None else range(len(conts))):
                cont = conts[jj]
                rows = logp[r, ctx - 1 : ctx - 1 + len(cont)]
                logps[n][jj] = float(rows.gather(1, torch.tensor(cont)[:, None]).sum())
                greedy[n][jj] = bool((rows.argmax(-1) == torch.tensor(cont)).all())
    return [Scores(tuple(lp), tuple(g)) for lp, g in zip(logps, greedy)]


@torch.inference_mode()
def run_lm_eval_style(model, tasks, candidates):
    out, L = {}, len(model.model.layers)
    for c in candidates:
        with keep_layers(model, [l for l in range(L) if l not in c]):
            for name, (task, items) in tasks.items():
                out[(name, c)] = metrics(task, items, lm_eval_style_scores(model, items))
    return out


@torch.inference_mode()
def run_seed_style(model_name, dtype, tasks, candidates, workdir: Path):
    out = {}
    for c in candidates:
        model, tok = load_model(model_name, dtype=dtype)
        path = save_pruned(drop_layers(model, c) if c else model, tok, workdir / "ckpt", {"removed_layers": list(c)})
        del model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if dtype == "float32" else torch.bfloat16).eval()
        for name, (task, items) in tasks.items():
            out[(name, c)] = metrics(task, items, lm_eval_style_scores(model, items))
        del model
        shutil.rmtree(path)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--tasks", default="arithmetic,arc_easy")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--layers", default=None, help="comma-separated subset of layers; all if unset")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fidelity-candidates", type=int, default=3,
                    help="candidates (base first) whose chosen answers are checked against lm-eval's HFLM")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = load_model(args.model, dtype=args.dtype)
    dtype = next(model.parameters()).dtype
    L = len(model.model.layers)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(L))
    candidates = [()] + [(l,) for l in layers]
    tasks = {}
    for name in args.tasks.split(","):
        task = build_task(name, limit=args.limit)
        tasks[name] = (task, task.items(tok))
    print(f"model {args.model} ({L} layers, {dtype}), tasks {list(tasks)}, {args.limit} items each, "
          f"{len(candidates)} candidates, {args.threads} threads", flush=True)

    peak = matmul_peak(dtype)
    counter = FlopCounter(model)  # an untimed run that counts FLOPs also warms up
    with torch.inference_mode():
        run_prunelab(model, tasks, candidates, args.batch_tokens)
    flops = counter.flops
    counter.close()

    t = time.perf_counter()
    answers = {}
    with torch.inference_mode():
        ours = run_prunelab(model, tasks, candidates, args.batch_tokens, answers)
    t_ours = time.perf_counter() - t
    print(f"prunelab  {t_ours:8.1f} s", flush=True)

    t = time.perf_counter()
    lm = run_lm_eval_style(model, tasks, candidates)
    t_lm = time.perf_counter() - t
    print(f"lm-eval   {t_lm:8.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        seed = run_seed_style(args.model, "float32" if dtype == torch.float32 else "bfloat16", tasks, candidates, Path(tmp))
        t_seed = time.perf_counter() - t
    print(f"seed      {t_seed:8.1f} s", flush=True)

    worst = max(abs(ours[k][m] - other[k][m]) for other in (lm, seed) for k in ours for m in ours[k])
    # in bf16 the three ways batch and pad differently, so sums round differently and items near a tie change answer
    verdict = ("the three ways agree" if worst <= 1e-4 else
               f"they differ ({dtype}: batching reorders rounded sums and near-tie items change answer; in float32 "
               "they agree to 1e-4)" if dtype != torch.float32 else "they DISAGREE in float32: a bug")
    print(f"\nmax |difference| of a task mean across the three ways = {worst:.4f}: {verdict}")
    print(lm_eval_fidelity(model, tok, tasks, candidates[: args.fidelity_candidates], answers), flush=True)
    print(f"speed-up over lm-eval style: {t_lm / t_ours:5.1f}x   (goal >= 8x)")
    print(f"speed-up over seed style:    {t_seed / t_ours:5.1f}x   (goal >= 12x)")
    print(f"prunelab matmul throughput: {flops / t_ours / 1e9:.1f} GFLOP/s; machine {dtype} matmul peak measured now "
          f"{peak:.1f} GFLOP/s; fraction {flops / t_ours / 1e9 / peak:.2f}   (goal >= 0.5)")


if __name__ == "__main__":
    main()
