"""What one lent GPU machine can check in under 8 minutes, without network, vLLM or Ray: every figure into one JSON.

    python bench/gpu_device_check.py --out $OUT/device_check.json        # on the device (README, "A device check")
    python bench/gpu_device_check.py --smoke --out /tmp/check.json        # here, on a CPU: checks the script itself

Sections, each timed, each recorded as it finishes (a run stopped by its time limit keeps what it finished), each
going on when one before it failed:
  environment    torch, CUDA, the GPU, its compute capability, the NVIDIA driver; prunelab's GPU node check
                 (`hardware.check_gpu_node`: the driver for torch's CUDA, a visible GPU, kernels for it)
  gpu_tests      `pytest -m gpu` on the families' GPU tests and the generation GPU tests, a model spread over the GPU
                 and the CPU included (scorer, multi-candidate generator, KV rows across devices)
  agreement      bf16, random weights of Qwen2.5-0.5B's shape (24 layers, 896 wide): the resumed engine's scores
                 against plain layer removal (max |log-prob difference|, chosen answers that differ), and the
                 multi-candidate generator's greedy outputs against each candidate generated alone
  scorer_cudnn   the scorer's time with cuDNN attention left out (prunelab's default) and allowed, same batches
  qlora_nccl     recovery as a Ray Train worker runs it: a one-process NCCL group, TRL's SFTTrainer with QLoRA
                 (NF4, double quantisation, bf16 compute) on a tiny model's self-generated answers, then the
                 adapter merged into a stock checkpoint that transformers reloads
`--smoke` runs every section that a CPU can (gloo instead of NCCL, LoRA instead of NF4 where bitsandbytes is absent)
at tiny sizes, so the script is tested where it is written (tests/test_device_check.py).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402

QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, max_position_embeddings=4096)


def write(out: Path, report: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)


def environment(args) -> dict:
    from prunelab.hardware import check_gpu_node, nvidia_driver_version

    gpu = torch.cuda.is_available()
    facts = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu,
             "driver": nvidia_driver_version(), "arch_list": torch.cuda.get_arch_list() if gpu else []}
    if gpu:
        facts |= {"device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(),
                  "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
    try:
        import transformers

        facts["transformers"] = transformers.__version__
        check_gpu_node()
        facts["gpu_node_check"] = "passed"
    except Exception as exc:  # the check's verdict is a figure here, not a failure of the section
        facts["gpu_node_check"] = f"{type(exc).__name__}: {exc}"
    return facts


def gpu_tests(args) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    report = Path(tempfile.mkdtemp()) / "junit.xml"
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                          f"--junitxml={report}", "tests/test_families_gpu.py", "tests/test_generation.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=args.test_timeout_s)
    import xml.etree.ElementTree as ET

    failures = []
    suite = ET.parse(report).getroot().find("testsuite") if report.exists() else None
    if suite is not None:
        for case in suite.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                failures.append({"test": f"{case.get('classname')}::{case.get('name')}",
                                 "message": (bad.get("message") or "")[:600]})
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")} if suite is not None else {}
    return {"returncode": run.returncode, "seconds": round(time.perf_counter() - started, 1), **counts,
            "failed": failures, "tail": run.stdout[-2000:]}


def shaped_model(dtype, device, smoke: bool):
    """Random weights of Qwen2.5-0.5B's shape (a tiny one with --smoke), its vocabulary the test tokenizer's."""
    import tiny
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024) if smoke else QWEN_05B
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=tiny.VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2, **shape)
    return Qwen2ForCausalLM(config).to(device=device, dtype=dtype).eval()


def random_requests(n: int, vocab: int, seed: int = 0):
    """Multiple-choice-like scoring requests (a shared prefix, contexts, 4 continuations of 1-4 tokens) and
    generation prompts, of random token ids."""
    from prunelab.generation import GenerationRequest
    from prunelab.scoring.requests import Request

    g = torch.Generator().manual_seed(seed)

    def ids(k):
        return tuple(torch.randint(3, vocab, (k,), generator=g).tolist())

    prefix = ids(24)
    scoring = [Request(prefix + ids(int(torch.randint(8, 40, (1,), generator=g))),
                       tuple(ids(1 + j % 4) for j in range(4)), len(prefix)) for _ in range(n)]
    prompts = [ids(int(torch.randint(8, 48, (1,), generator=g))) for _ in range(n)]
    generation = [GenerationRequest(f"p{i}", "", p) for i, p in enumerate(prompts)]
    return scoring, generation


def agreement(args) -> dict:
    import tiny

    from prunelab.execution.worker import Worker
    from prunelab.generation import HFBackend, Sampling
    from prunelab.generation.candidates import CandidateGenerator
    from prunelab.scoring.engine import Scorer
    from prunelab.surgery import keep_layers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = shaped_model(torch.bfloat16, device, args.smoke)
    tok = tiny.tokenizer()
    layers = model.config.num_hidden_layers
    scoring, generation = random_requests(16 if args.smoke else 64, model.config.vocab_size)
    worker, plain = Worker.around(model, tok), Scorer(model, batch_tokens=4096)
    worker.prepare(scoring)
    candidates = [(layer,) for layer in range(0, layers, max(1, layers // 6))] + [(1, layers - 2)]
    out = {"dtype": "bfloat16", "device": device, "layers": layers, "requests": len(scoring), "scores": []}
    for removed in candidates:
        resumed, removed_plainly = worker.score(removed), plain.score(scoring, removed=removed)
        diff = max(abs(a - b) for r, p in zip(resumed, removed_plainly) for a, b in zip(r.logprobs, p.logprobs))
        chosen = sum(max(range(4), key=r.logprobs.__getitem__) != max(range(4), key=p.logprobs.__getitem__)
                     for r, p in zip(resumed, removed_plainly))
        out["scores"].append({"removed": list(removed), "max_abs_logprob_diff": diff, "answers_differ": chosen})
    sampling = Sampling(max_new_tokens=8 if args.smoke else 32)
    gen_candidates = [(), *candidates[:3]]
    fused = CandidateGenerator(model, tok).generate(generation, gen_candidates, sampling)
    alone = HFBackend(model, tok, batch_size=1)
    equal = []
    for removed, outputs in zip(gen_candidates, fused):
        with keep_layers(model, [i for i in range(layers) if i not in removed]):
            reference = alone.generate(generation, sampling)
        equal.append({"removed": list(removed), "equal": sum(a.text == b.text for a, b in zip(outputs, reference)),
                      "of": len(reference)})
    out["generation"] = equal
    return out


def scorer_cudnn(args) -> dict:
    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import prunelab.scoring.engine as engine
    from prunelab.scoring.engine import Scorer

    model = shaped_model(torch.bfloat16, "cuda", args.smoke)
    scoring, _ = random_requests(64, model.config.vocab_size, seed=1)
    scorer = Scorer(model, batch_tokens=4096)
    times = {}
    default = engine.attention_backends
    cudnn_first = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                   SDPBackend.MATH]
    for name, backends in (("without_cudnn", default), ("with_cudnn", lambda device: sdpa_kernel(cudnn_first))):
        engine.attention_backends = backends
        try:
            scorer.score(scoring)  # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(3):
                scorer.score(scoring)
            torch.cuda.synchronize()
            times[name] = round((time.perf_counter() - start) / 3, 4)
        finally:
            engine.attention_backends = default
    return {"seconds_per_pass": times, "with_over_without": round(times["with_cudnn"] / times["without_cudnn"], 2)}


def qlora_nccl(args) -> dict:
    import torch.distributed as dist
    from test_recover import make_lineage, recover_config
    from transformers import AutoModelForCausalLM

    from prunelab.stages.recover import recover

    gpu = torch.cuda.is_available()
    try:
        import bitsandbytes  # noqa: F401

        quantization = "nf4"
    except ImportError:
        if gpu:
            raise
        quantization = "none"  # a CPU without bitsandbytes: LoRA, the rest of the path the same
    root = Path(tempfile.mkdtemp())
    started = time.perf_counter()
    import tiny

    base = tiny.save(root / "base", "llama", 4, hidden=256)  # 256 wide: NF4 quantises in blocks of 64
    _, pruned, corpus = make_lineage(root / "lineage", base)
    # what Ray Train sets in each worker before the trainer starts (transformers reads LOCAL_RANK to run DDP)
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531", "RANK": "0", "LOCAL_RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}.items():
        os.environ.setdefault(name, value)
    backend = "nccl" if gpu else "gloo"
    dist.init_process_group(backend, rank=0, world_size=1)  # a Ray Train worker's group, of one
    try:
        config = recover_config(pruned, corpus, root / "recover", quantization=quantization,
                                training={"max_steps": 4, "save_steps": 2},
                                model={"dtype": "bfloat16" if gpu else "float32"})
        out = recover(config, progress=False)
    finally:
        dist.destroy_process_group()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    history = json.loads((out / "meta.json").read_text()).get("training", {})
    return {"process_group": backend, "quantization": quantization, "seconds": round(time.perf_counter() - started, 1),
            "merged_layers": merged.config.num_hidden_layers, "merged_dtype": str(merged.dtype),
            "quantization_config_in_merged": "quantization_config" in json.loads(
                (out / "merged" / "config.json").read_text()), "training": history}


SECTIONS = {"environment": environment, "gpu_tests": gpu_tests, "agreement": agreement,
            "scorer_cudnn": scorer_cudnn, "qlora_nccl": qlora_nccl}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script on a CPU")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--test-timeout-s", type=int, default=300)
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": args.smoke, "sections": {}}
    failed = 0
    for name in args.only.split(","):
        start = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            result = {"ok": True, **SECTIONS[name](args)}
        except Exception as exc:
            failed += 1
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        result["section_seconds"] = round(time.perf_counter() - start, 1)
        report["sections"][name] = result
        write(args.out, report)
        print(f"[{name}] {json.dumps(result, default=str)[:1500]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
