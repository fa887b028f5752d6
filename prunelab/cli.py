"""The `prunelab` command line.

    prunelab sweep configs/default.yaml                      # local Ray on this machine
    prunelab sweep configs/default.yaml tasks.0.limit=16     # `a.b=value` overrides, validated like the YAML
    prunelab sweep configs/llama-3.1-8b-instruct.yaml --address auto   # attach to a running cluster
    prunelab drop --model gemma3-270m --layers 15,16 --out pruned/gemma3-270m-minus2
    prunelab prune --model qwen2.5-coder-0.5b-instruct --strategy block_influence --ratio 0.25 --out pruned/q-bi25
    prunelab eval --model pruned/gemma3-270m-minus2 --base gemma3-270m --tasks arithmetic,piqa --limit 200 --out runs/e1
    prunelab compare-strategies configs/compare-strategies.yaml   # retention by strategy x ratio
    prunelab models                                          # the built-in models

Bad input (a config, a model, a layer list, a results directory) prints what was wrong and exits with code 2.
"""

import argparse
import logging
import sys
from pathlib import Path

from prunelab.errors import PrunelabError


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PrunelabError(f"--layers {text!r} is not a comma-separated list of integers") from None


def _run_config(args, cls, run, table: str) -> int:
    """Loads a YAML experiment of type `cls`, runs it, prints the written paths and the table `paths[table]`."""
    from prunelab.config import load_config

    config = load_config(args.config, args.overrides, cls=cls)
    paths = run(config, address=args.address, progress=not args.no_progress)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if table in paths:
        print(paths[table].read_text())
    return 0


def cmd_sweep(args) -> int:
    from prunelab.config import SweepConfig
    from prunelab.sweep.run import run_sweep

    return _run_config(args, SweepConfig, run_sweep, "markdown")


def cmd_compare(args) -> int:
    from prunelab.compare import CompareConfig, compare_strategies

    return _run_config(args, CompareConfig, compare_strategies, "strategies_markdown")


def cmd_eval(args) -> int:
    from prunelab.config import parse_config
    from prunelab.evaluate import EvalConfig, evaluate

    data = {
        "name": args.name or Path(args.out).name,
        "model": {"name": args.model, "dtype": args.dtype},
        "base_model": {"name": args.base, "dtype": args.dtype} if args.base else None,
        "tasks": [{"name": t, "limit": args.limit} for t in args.tasks.split(",") if t],
        "output_dir": args.out,
    }
    config = parse_config(data, args.overrides, source="(command line)", cls=EvalConfig)
    paths = evaluate(config, progress=not args.no_progress)
    if "markdown" in paths:
        print(paths["markdown"].read_text())
    return 0


def cmd_drop(args) -> int:
    from prunelab.models import load_model, resolve_model_path
    from prunelab.surgery import check_layers, drop_layers, num_layers, save_pruned

    model, tokenizer = load_model(args.model, dtype=args.dtype)
    layers = check_layers(_parse_layers(args.layers), num_layers(model))
    drop_layers(model, layers)
    manifest = {"base_model": args.model, "base_model_path": resolve_model_path(args.model),
                "removed_layers": layers, "strategy": "manual"}
    print(save_pruned(model, tokenizer, args.out, manifest))
    return 0


def cmd_prune(args) -> int:
    import json

    from prunelab.prune import prune

    device = "cuda" if args.device == "auto" and __import__("torch").cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    path, selection = prune(
        args.model, args.out, strategy=args.strategy, ratio=args.ratio,
        layers=_parse_layers(args.layers) if args.layers else None, calibration=args.calibration,
        calibration_samples=args.calibration_samples, max_length=args.max_length, keep_last=args.keep_last,
        sweep_dir=args.from_sweep, sweep_tasks=[t for t in (args.sweep_tasks or "").split(",") if t] or None,
        test_tasks=[t for t in (args.test_tasks or "").split(",") if t], selection_task=args.selection_task,
        selection_limit=args.selection_limit, selection_seed=args.selection_seed, dtype=args.dtype, device=device)
    print(json.dumps({"out": str(path), "strategy": selection.strategy, "removed_layers": selection.removed}))
    return 0


def cmd_models(args) -> int:
    from prunelab.models import BUILTIN_MODELS

    for m in BUILTIN_MODELS.values():
        print(f"{m.name:32s} {m.description}  [pip: {' '.join(m.packages)}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunelab", description="Depth pruning of LLMs, on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, help_text, example in [
        ("sweep", cmd_sweep, "single-layer ablation sweep with a retention report", "configs/default.yaml"),
        ("compare-strategies", cmd_compare, "retention by strategy x ratio, with intervals, table and plot",
         "configs/compare-strategies.yaml"),
    ]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", help=f"experiment YAML (e.g. {example})")
        p.add_argument("overrides", nargs="*", help="a.b=value overrides")
        p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="score a model (and its retention against a base model) on tasks")
    p.add_argument("--model", required=True, help="built-in name, HF directory (e.g. a pruned checkpoint) or hub id")
    p.add_argument("--base", help="base model for retention (e.g. the unpruned model)")
    p.add_argument("--tasks", required=True, help="comma-separated task names")
    p.add_argument("--limit", type=int, default=None, help="items per task (seeded sample); all if unset")
    p.add_argument("--out", required=True, help="output directory (results store and report)")
    p.add_argument("--name", default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("overrides", nargs="*", help="a.b=value overrides of the eval config (e.g. batch_tokens=4096)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("drop", help="remove given layers and export a Hugging Face checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="comma-separated layer indices, e.g. 20,21")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(func=cmd_drop)

    p = sub.add_parser("prune", help="choose layers with a strategy, remove them, export a checkpoint + manifest")
    p.add_argument("--model", required=True)
    p.add_argument("--strategy", help="block_influence, angular, reverse, sweep_score, iterative")
    p.add_argument("--ratio", type=float, help="fraction of layers to remove, e.g. 0.25")
    p.add_argument("--layers", help="remove exactly these layers instead (comma-separated)")
    p.add_argument("--out", required=True)
    p.add_argument("--calibration", default="sharegpt", help="packaged corpus (sharegpt) or hub dataset id with 'text'")
    p.add_argument("--calibration-samples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=512, help="tokens per calibration text")
    p.add_argument("--keep-last", action="store_true", help="reverse: keep the final layer")
    p.add_argument("--from-sweep", help="sweep_score: a finished sweep's output directory")
    p.add_argument("--sweep-tasks", help="sweep_score: tasks whose retention ranks layers (default: all)")
    p.add_argument("--test-tasks", help="tasks you will evaluate on: calibration data overlapping them is refused")
    p.add_argument("--selection-task", help="iterative: the task each greedy round is scored on (e.g. arithmetic)")
    p.add_argument("--selection-limit", type=int, default=32)
    p.add_argument("--selection-seed", type=int, default=7, help="iterative: seed of the selection split")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except PrunelabError as exc:
        print(f"prunelab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
