"""The `prunelab` command line (also `python -m prunelab`). Every stage is `config -> artifact directory`: a YAML
config (its `kind` names the stage), `a.b=value` overrides, and flags as shortcuts for config keys.

    prunelab sweep configs/sweep/default.yaml                      # local Ray on this machine
    prunelab sweep configs/sweep/default.yaml tasks.0.limit=16     # overrides, validated like the YAML
    prunelab sweep configs/sweep/llama-3.1-8b-instruct.yaml --address auto   # attach to a running cluster
    prunelab sweep configs/sweep/default.yaml --local              # no Ray: one worker in this process
    prunelab eval --model pruned/g-minus2 --base gemma3-270m --tasks arithmetic,piqa --limit 200 --out runs/e1
    prunelab eval configs/eval/qwen-bi25.yaml model.name=pruned/q-bi25
    prunelab prune --model qwen2.5-coder-0.5b-instruct --strategy block_influence --ratio 0.25 --out pruned/q-bi25
    prunelab prune configs/prune/qwen-block-influence.yaml ratio=0.15
    prunelab compare-strategies configs/compare/qwen-strategies.yaml
    prunelab drop --model gemma3-270m --layers 15,16 --out pruned/gemma3-270m-minus2
    prunelab sgr configs/sgr/qwen-sharegpt.yaml                    # base model answers prompts (Ray Data)
    prunelab recover configs/recover/qwen-bi25-sgr.yaml            # (Q)LoRA on the answers (Ray Train)
    prunelab pipeline configs/repro/qwen-coder.yaml            # every stage, reused where inputs are unchanged
    prunelab report runs/qwen2.5-coder-0.5b-sweep                 # re-render a finished artifact directory
    prunelab report runs/e-pruned runs/e-sgr --out runs/cmp --labels pruned,sgr   # one table of several evals
    prunelab submit --address http://HEAD:8265 sweep configs/sweep/llama-3.1-8b-instruct.yaml   # as a Ray job
    prunelab models                                                # the built-in models

Bad input (a config, a model, a layer list, a results directory) prints what was wrong and exits with code 2,
before anything is written.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from prunelab.errors import ConfigError, PrunelabError


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--layers {text!r} is not a comma-separated list of integers") from None


def _config(args, cls, shortcuts: dict):
    """The stage config from an optional file, flag shortcuts (config keys) and `a.b=value` overrides, in that
    order of precedence from weakest to strongest."""
    from prunelab.config import load_config, parse_config, read_config_file

    positional = list(args.positional)
    path = positional.pop(0) if positional and "=" not in positional[0] else None
    data = read_config_file(path) if path else {}
    for key, value in shortcuts.items():
        if value is not None:
            data[key] = value
    if path:
        return load_config(path, positional, cls=cls, data=data)
    return parse_config({"kind": cls.model_fields["kind"].default, **data}, positional, source="(command line)",
                        cls=cls)


def _executor(args, ray_spec):
    """The executor of a stage that evaluates many candidates: Ray actors, or this process with --local."""
    if getattr(args, "local", False):
        from prunelab.execution.run import InProcessExecutor

        return InProcessExecutor()
    from prunelab.distributed import connect, ray_executor

    connect(args.address or ray_spec.address)
    return ray_executor(ray_spec)


def _print_paths(paths: dict, table: str) -> None:
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if table in paths:
        print(paths[table].read_text())


def cmd_sweep(args) -> int:
    from prunelab.config import SweepConfig
    from prunelab.stages.sweep import run_sweep

    config = _config(args, SweepConfig, {})
    with _executor(args, config.ray) as executor:
        _print_paths(run_sweep(config, executor, progress=not args.no_progress), "markdown")
    return 0


def cmd_compare(args) -> int:
    from prunelab.config import CompareConfig
    from prunelab.stages.compare import compare_strategies

    config = _config(args, CompareConfig, {})
    with _executor(args, config.ray) as executor:
        _print_paths(compare_strategies(config, executor, progress=not args.no_progress), "strategies_markdown")
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from prunelab.config import EvalConfig
    from prunelab.stages.evaluate import evaluate

    tasks = [{"name": t, "limit": args.limit} for t in args.tasks.split(",") if t] if args.tasks else None
    shortcuts = {
        "model": {"name": args.model, "dtype": args.dtype} if args.model else None,
        "base_model": {"name": args.base, "dtype": args.dtype} if args.base else None,
        "tasks": tasks,
        "output_dir": args.out,
        "name": args.name or (Path(args.out).name if args.out else None),
    }
    config = _config(args, EvalConfig, shortcuts)
    _print_paths(evaluate(config, progress=not args.no_progress), "markdown")  # what it wrote, then the table
    return 0


def cmd_prune(args) -> int:
    import json

    from prunelab.config import PruneConfig
    from prunelab.execution.run import InProcessExecutor
    from prunelab.stages.prune import prune

    calibration = {k: v for k, v in {"source": args.calibration, "samples": args.calibration_samples,
                                     "max_length": args.max_length}.items() if v is not None}
    selection = ({"name": args.selection_task, "limit": args.selection_limit, "seed": args.selection_seed}
                 if args.selection_task else None)
    shortcuts = {
        "model": {"name": args.model, "dtype": args.dtype} if args.model else None,
        "strategy": args.strategy, "ratio": args.ratio,
        "layers": _parse_layers(args.layers) if args.layers else None,
        "output_dir": args.out, "keep_last": True if args.keep_last else None,
        "calibration": calibration or None, "sweep_dir": args.from_sweep,
        "sweep_tasks": [t for t in args.sweep_tasks.split(",") if t] if args.sweep_tasks else None,
        "test_tasks": [t for t in args.test_tasks.split(",") if t] if args.test_tasks else None,
        "selection": selection, "device": args.device,
    }
    config = _config(args, PruneConfig, shortcuts)
    from prunelab.strategies import STRATEGIES

    needs_workers = config.strategy is not None and STRATEGIES.entry(config.strategy).kind == "selection"
    with (_executor(args, config.ray) if needs_workers else InProcessExecutor()) as executor:
        path, selection = prune(config, executor, progress=not args.no_progress)
    print(json.dumps({"out": str(path), "strategy": selection.strategy, "removed_layers": selection.removed}))
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


def cmd_sgr(args) -> int:
    from prunelab.config import SGRConfig
    from prunelab.metadata import read_meta
    from prunelab.stages.sgr import generate_corpus

    config = _config(args, SGRConfig, {"output_dir": args.out})
    runner = None
    if args.local:
        if config.engine.backend != "hf":
            raise ConfigError("engine.backend vllm runs on Ray Data (vLLM engines as Ray actors); drop --local, or "
                              "use engine.backend=hf to generate in this process")
    else:
        from prunelab.distributed import connect
        from prunelab.distributed.sgr import ray_responses

        connect(args.address or config.ray_address)
        runner = ray_responses
    root = generate_corpus(config, runner, progress=not args.no_progress)
    print(json.dumps(read_meta(root)["counts"]))
    print(f"corpus: {root}")
    return 0


def cmd_recover(args) -> int:
    from prunelab.config import RecoverConfig
    from prunelab.metadata import read_meta
    from prunelab.stages.recover import recover

    config = _config(args, RecoverConfig, {"output_dir": args.out})
    trainer = None
    if not args.local and config.workers.num_workers > 0:
        from prunelab.distributed import connect
        from prunelab.distributed.train import train_on_ray

        connect(args.address or config.ray_address)

        def trainer(job, out):
            return train_on_ray(job, config.workers, out)
    root = recover(config, trainer, progress=not args.no_progress)
    meta = read_meta(root)
    print(json.dumps({"out": str(root), "merged": str(root / "merged"), **meta["training"]}))
    return 0


def cmd_pipeline(args) -> int:
    from prunelab.config import PipelineConfig
    from prunelab.pipeline.run import Runners, run_pipeline

    config = _config(args, PipelineConfig, {"output_dir": args.out})
    if args.local:
        from prunelab.execution.run import InProcessExecutor

        if config.sgr is not None and config.sgr.engine.backend != "hf":
            raise ConfigError("sgr.engine.backend vllm runs on Ray Data; drop --local, or use sgr.engine.backend=hf")
        runners = Runners(executor=lambda ray_spec: InProcessExecutor())
    else:
        from prunelab.distributed import connect, ray_executor
        from prunelab.distributed.sgr import ray_responses
        from prunelab.distributed.train import train_on_ray

        connect(args.address or config.ray.address)
        runners = Runners(executor=lambda ray_spec: ray_executor(ray_spec or config.ray), sgr=ray_responses,
                          trainer=lambda workers: (lambda job, out: train_on_ray(job, workers, out)))
    run_pipeline(config, runners, progress=not args.no_progress)
    return 0


def cmd_cost(args) -> int:
    from prunelab.config import CostConfig
    from prunelab.stages.cost import measure_costs

    models = [{"name": m} for m in args.models.split(",")] if args.models else None
    config = _config(args, CostConfig, {"output_dir": args.out, "base_model": {"name": args.base} if args.base else None,
                                        "models": models, "name": Path(args.out).name if args.out else None})
    _print_paths(measure_costs(config, progress=not args.no_progress), "markdown")
    return 0


def cmd_samples(args) -> int:
    from prunelab.report.samples import format_samples, samples

    table = samples(args.dir, task=args.task, candidate=args.candidate, flipped=args.flipped)
    print(format_samples(table.head(args.limit) if args.limit else table, width=args.width))
    print(f"\n{len(table)} samples" + (f" (first {args.limit} shown)" if args.limit and len(table) > args.limit else ""))
    return 0


def cmd_report(args) -> int:
    from prunelab.report import combine, write_report

    if len(args.dirs) > 1 or args.out:
        if not args.out:
            raise ConfigError("several directories make one combined table: give --out DIR for it")
        labels = [x for x in args.labels.split(",")] if args.labels else None
        paths = combine(args.dirs, args.out, labels, title=args.title)
        _print_paths(paths, "markdown")
        return 0
    if (Path(args.dirs[0]) / "pipeline.json").exists():
        from prunelab.report.page import write_pipeline_report

        paths = write_pipeline_report(args.dirs[0])
        _print_paths(paths, "markdown")
        return 0
    paths = write_report(args.dirs[0])
    _print_paths(paths, "strategies_markdown" if "strategies_markdown" in paths else "markdown")
    return 0


def cmd_submit(args) -> int:
    from prunelab.distributed.submit import submit

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("submit needs the cluster's job API: --address http://HEAD:8265 or $RAY_ADDRESS")
    missing = [name for name in args.env if name not in os.environ]
    if missing:
        raise ConfigError(f"--env {', '.join(missing)}: not set in this environment (export it first)")
    _, status = submit(args.stage, args.job_args, address, working_dir=args.working_dir,
                       env_vars={name: os.environ[name] for name in args.env},
                       runtime_env=args.runtime_env or None, entrypoint_num_gpus=args.entrypoint_num_gpus,
                       submission_id=args.submission_id, wait=not args.no_wait)
    return 0 if status in (None, "SUCCEEDED") else 1


def cmd_models(args) -> int:
    from prunelab.models import BUILTIN_MODELS

    for m in BUILTIN_MODELS.values():
        print(f"{m.name:32s} {m.description}  [pip: {' '.join(m.packages)}]")
    return 0


def _stage_arguments(p, example: str, ray: bool = True) -> None:
    p.add_argument("positional", nargs="*", metavar="[CONFIG] [a.b=value ...]",
                   help=f"stage config YAML (e.g. {example}), then overrides")
    if ray:
        p.add_argument("--address", help="Ray cluster address (default: ray.address, $RAY_ADDRESS, else a local Ray)")
        p.add_argument("--local", action="store_true", help="no Ray: one worker in this process")
    p.add_argument("--no-progress", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prunelab", description="Depth pruning of LLMs, on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sweep", help="single-layer ablation sweep with a retention report")
    _stage_arguments(p, "configs/sweep/default.yaml")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("compare-strategies", help="retention by strategy x ratio, with intervals, table and plot")
    _stage_arguments(p, "configs/compare/qwen-strategies.yaml")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("eval", help="score a model (and its retention against a base model) on tasks")
    _stage_arguments(p, "configs/eval/qwen-bi25.yaml", ray=False)
    p.add_argument("--model", help="model.name: built-in name, HF directory (e.g. a pruned checkpoint) or hub id")
    p.add_argument("--base", help="base_model.name: base model for retention (e.g. the unpruned model)")
    p.add_argument("--tasks", help="tasks: comma-separated task names")
    p.add_argument("--limit", type=int, default=None, help="tasks.N.limit: items per task (seeded sample)")
    p.add_argument("--out", help="output_dir: results store and report")
    p.add_argument("--name", default=None, help="name (default: the output directory's name)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("prune", help="choose layers with a strategy, remove them, export a checkpoint + manifest")
    _stage_arguments(p, "configs/prune/qwen-block-influence.yaml")
    p.add_argument("--model", help="model.name")
    p.add_argument("--strategy", help="strategy: block_influence, angular, reverse, sweep_score, iterative")
    p.add_argument("--ratio", type=float, help="ratio: fraction of layers to remove, e.g. 0.25")
    p.add_argument("--layers", help="layers: remove exactly these layers instead (comma-separated)")
    p.add_argument("--out", help="output_dir")
    p.add_argument("--calibration", help="calibration.source: packaged corpus (sharegpt) or hub dataset id")
    p.add_argument("--calibration-samples", type=int, help="calibration.samples")
    p.add_argument("--max-length", type=int, help="calibration.max_length: tokens per calibration text")
    p.add_argument("--keep-last", action="store_true", help="keep_last: reverse keeps the final layer")
    p.add_argument("--from-sweep", help="sweep_dir: a finished sweep's output directory (sweep_score)")
    p.add_argument("--sweep-tasks", help="sweep_tasks: tasks whose retention ranks layers (default: all)")
    p.add_argument("--test-tasks", help="test_tasks: calibration/selection data overlapping them is refused")
    p.add_argument("--selection-task", help="selection.name: the task each greedy round is scored on (iterative)")
    p.add_argument("--selection-limit", type=int, default=32, help="selection.limit")
    p.add_argument("--selection-seed", type=int, default=7, help="selection.seed")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default=None, help="device: auto, cpu, cuda")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("drop", help="remove given layers and export a Hugging Face checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="comma-separated layer indices, e.g. 20,21")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(func=cmd_drop)

    p = sub.add_parser("sgr", help="the base model answers a prompt corpus: Self-Generated Responses as parquet shards")
    _stage_arguments(p, "configs/sgr/qwen-sharegpt.yaml")
    p.add_argument("--out", help="output_dir")
    p.set_defaults(func=cmd_sgr)

    p = sub.add_parser("recover", help="fine-tune a pruned model on an SGR corpus with (Q)LoRA; adapter + merged model")
    _stage_arguments(p, "configs/recover/qwen-bi25-sgr.yaml")
    p.add_argument("--out", help="output_dir")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("pipeline", help="one config from model to findings: base eval, sweep, strategies x ratios, "
                                        "SGR, recovery, evals, report; each stage reused when its inputs are unchanged")
    _stage_arguments(p, "configs/repro/qwen-coder.yaml")
    p.add_argument("--out", help="output_dir")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("cost", help="what a cut buys: parameters, memory, prefill/decode tokens/s and time to first "
                                    "token of the base model and pruned checkpoints, beside the architecture's bound")
    _stage_arguments(p, "configs/cost/qwen-bi25.yaml", ray=False)
    p.add_argument("--base", help="base_model.name")
    p.add_argument("--models", help="models: comma-separated pruned checkpoints")
    p.add_argument("--out", help="output_dir")
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("samples", help="the outputs behind the scores: each candidate's generations and what was "
                                       "scored from them, beside the base model's")
    p.add_argument("dir", metavar="RUN_DIR", help="a sweep, eval or compare-strategies output directory")
    p.add_argument("--task", help="only this task")
    p.add_argument("--candidate", help="only this candidate (e.g. drop-5, model)")
    p.add_argument("--flipped", action="store_true", help="only items the base model solved and the candidate lost")
    p.add_argument("--limit", type=int, default=20, help="print at most this many (0: all)")
    p.add_argument("--width", type=int, default=600, help="characters of each text shown")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("report", help="re-render the report of an artifact directory from its results and meta.json; "
                                      "with several eval (or recover) directories and --out, one table of all their "
                                      "models (or one plot of their training curves)")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", help="where the combined table of several eval directories goes")
    p.add_argument("--labels", help="comma-separated row labels, one per directory (default: their config names)")
    p.add_argument("--title", default="Retention against the base model")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("submit", help="run a stage as a Ray job on a cluster (jobs/STAGE.py), after checking the "
                                      "address, the token, the upload size and the config")
    p.add_argument("--address", help="the cluster's job API, http://HEAD:8265 (default: $RAY_ADDRESS)")
    p.add_argument("--working-dir", default=".", help="uploaded to the cluster (default: this repository)")
    p.add_argument("--runtime-env", default="cluster/runtime_env.yaml", help="YAML runtime env ('' for none)")
    p.add_argument("--entrypoint-num-gpus", type=float, default=0,
                   help="GPUs for the driver (eval and prune run in it)")
    p.add_argument("--submission-id", default=None)
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this variable of your environment to the job (e.g. HF_TOKEN); repeatable")
    p.add_argument("--no-wait", action="store_true", help="return once submitted; otherwise follow the logs")
    p.add_argument("stage", choices=["sweep", "eval", "prune", "compare-strategies", "sgr", "recover", "report",
                                     "pipeline", "cost"])
    p.add_argument("job_args", nargs=argparse.REMAINDER, metavar="...", help="the stage's arguments")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    # flags may come anywhere: `prunelab sweep CONFIG --local a.b=1` (argparse leaves positionals after a flag over)
    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [a for a in extra if a.startswith("-")]
        if unknown or not hasattr(args, "positional"):
            parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
        args.positional = [*args.positional, *extra]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except PrunelabError as exc:
        print(f"prunelab: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
