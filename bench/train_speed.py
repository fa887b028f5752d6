"""Benchmark: recovery's step time on Ray Train (TorchTrainer, one worker) against TRL alone on the same data.

    python bench/train_speed.py                                  # gemma3-270m pruned by 2 layers, CPU, LoRA
    python bench/train_speed.py --model qwen2.5-coder-0.5b-instruct --steps 6
    python bench/train_speed.py --quantization nf4               # QLoRA (on a GPU machine)

Both arms run the same TRL `SFTTrainer` (prunelab's settings: LoRA r16 on q,k,v,o,gate,up,down, effective batch 8,
completion-only loss) on the same prompt-completion examples (ShareGPT prompts with their original answers) for the
same number of optimizer steps. "TRL alone" trains in this process; "prunelab" trains inside a Ray Train
`TorchTrainer` worker with its report callback and checkpoints. The figure compared is the median optimizer step
after the first (start-up, data preparation and model load are printed separately). Goal: ratio <= 1.10.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))


class StepTimes(TrainerCallback):
    """Appends the wall time of every optimizer step to a file (the Ray worker writes it too)."""

    def __init__(self, path: str):
        self.path, self.last = path, None

    def on_step_begin(self, args, state, control, **kw):
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        with open(self.path, "a") as f:
            f.write(f"{time.perf_counter() - self.last}\n")


def setup(args, root: Path):
    """(pruned model dir, corpus dir): the model minus two middle layers, and a corpus of ShareGPT prompts whose
    original answers are the training data (generated with a 1-token limit: only the prompts matter here)."""
    from prunelab.config import SGRConfig, parse_config
    from prunelab.models import inspect_model, load_model, resolve_model_path
    from prunelab.stages.sgr import generate_corpus
    from prunelab.surgery import drop_layers, save_pruned

    n = inspect_model(parse_config({"kind": "sgr", "name": "x", "model": {"name": args.model}, "output_dir": "x"},
                                   cls=SGRConfig).model).num_layers
    model, tok = load_model(args.model, dtype=args.dtype)
    drop_layers(model, [n // 2, n // 2 + 1])
    pruned = save_pruned(model, tok, root / "pruned", {"base_model": args.model,
                                                        "base_model_path": resolve_model_path(args.model),
                                                        "removed_layers": [n // 2, n // 2 + 1]})
    corpus = generate_corpus(parse_config({
        "kind": "sgr", "name": "bench", "model": {"name": args.model, "dtype": args.dtype},
        "chat_template": args.chat_template, "output_dir": str(root / "corpus"),
        "prompts": {"source": "sharegpt", "limit": 8 * (args.steps + 2), "max_prompt_tokens": 192,
                    "exclude_tasks": []},
        "sampling": {"max_new_tokens": 1}}, cls=SGRConfig), progress=False)
    return pruned, corpus


def job_for(args, pruned, corpus, out: Path):
    from prunelab.config import RecoverConfig, parse_config
    from prunelab.recovery.run import TrainJob

    config = parse_config({"kind": "recover", "name": "bench", "model": {"name": str(pruned), "dtype": args.dtype},
                           "corpus": str(corpus), "responses": "reference", "quantization": args.quantization,
                           "output_dir": str(out),
                           "training": {"max_steps": args.steps, "save_steps": args.steps, "max_length": args.max_length,
                                        "warmup_steps": 0},
                           "workers": {"num_workers": 1, "cpus_per_worker": args.cpus}}, cls=RecoverConfig)
    corpus_meta = json.loads((Path(corpus) / "meta.json").read_text())
    return config, TrainJob(config=config.model_dump(mode="json"), model_path=str(pruned),
                            chat_template=corpus_meta["chat_template"], run_name=f"bench-{out.name}",
                            storage_path=str(out / "train"))


def steps(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--chat-template", default="plain", help="auto for chat models (qwen2.5-coder-0.5b-instruct)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--quantization", default="auto", choices=["auto", "nf4", "none"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--max-length", type=int, default=256,
                   help="tokens per example (Gemma's 262k-token vocabulary makes long examples slow on a CPU)")
    p.add_argument("--cpus", type=float, default=2, help="CPUs of the Ray Train worker")
    args = p.parse_args()

    import ray

    from prunelab.distributed.train import train_on_ray
    from prunelab.recovery.run import train_in_process

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pruned, corpus = setup(args, root)
        _, job = job_for(args, pruned, corpus, root / "trl")
        start = time.perf_counter()
        train_in_process(job, root / "trl", [StepTimes(str(root / "trl-steps"))])
        trl_wall = time.perf_counter() - start
        config, job = job_for(args, pruned, corpus, root / "ray")
        ray.init(num_cpus=max(2, int(args.cpus)), include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(BENCH)}})
        try:
            start = time.perf_counter()
            train_on_ray(job, config.workers, root / "ray", [StepTimes(str(root / "ray-steps"))])
            ray_wall = time.perf_counter() - start
        finally:
            ray.shutdown()
        trl, ours = steps(root / "trl-steps"), steps(root / "ray-steps")
    trl_step, ray_step = statistics.median(trl[1:]), statistics.median(ours[1:])
    print(f"{args.model} minus 2 layers, {args.steps} steps of batch 8 (max length {args.max_length}), quantization "
          f"{args.quantization}")
    print(f"TRL alone:            median step {trl_step:.2f} s (steps {', '.join(f'{s:.2f}' for s in trl)}), "
          f"wall {trl_wall:.1f} s")
    print(f"prunelab (Ray Train): median step {ray_step:.2f} s (steps {', '.join(f'{s:.2f}' for s in ours)}), "
          f"wall {ray_wall:.1f} s")
    print(f"ratio prunelab / TRL step time: {ray_step / trl_step:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
