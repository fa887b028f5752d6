"""The `prunelab` command line (also `python -m prunelab`). Every stage is `config -> artifact directory`: a YAML
config (its `kind` names the stage), `a.b=value` overrides, and flags as shortcuts for config keys. The stage
commands, their flags and `prunelab submit`'s choices come from `prunelab.stages.registry`; `--check` validates a
stage's config and prints it without running anything.

    prunelab sweep configs/sweep/default.yaml                      # local Ray on this machine
    prunelab sweep configs/sweep/default.yaml tasks.0.limit=16     # overrides, validated like the YAML
    prunelab sweep configs/sweep/llama-3.1-8b-instruct.yaml --address auto   # attach to a running cluster
    prunelab sweep configs/sweep/default.yaml --local              # no Ray: one worker in this process
    prunelab sweep configs/sweep/default.yaml --check              # the config it would run; nothing runs
    prunelab eval --model pruned/g-minus2 --base gemma3-270m --tasks arithmetic,piqa --limit 200 --out runs/e1
    prunelab eval configs/eval/qwen-bi25.yaml model.name=pruned/q-bi25
    prunelab prune --model qwen2.5-coder-0.5b-instruct --strategy block_influence --ratio 0.25 --out pruned/q-bi25
    prunelab prune configs/prune/qwen-block-influence.yaml ratio=0.15 output_dir=pruned/q-bi15
    prunelab compare-strategies configs/compare/qwen-strategies.yaml
    prunelab drop --model gemma3-270m --layers 15,16 --out pruned/gemma3-270m-minus2
    prunelab sgr configs/sgr/qwen-sharegpt.yaml                    # base model answers prompts (Ray Data)
    prunelab recover configs/recover/qwen-bi25-sgr.yaml            # (Q)LoRA on the answers (Ray Train)
    prunelab pipeline configs/repro/qwen-coder.yaml            # every stage, reused where inputs are unchanged
    prunelab report runs/qwen2.5-coder-0.5b-sweep                 # re-render a finished artifact directory
    prunelab report runs/e-pruned runs/e-sgr --out runs/cmp --labels pruned,sgr   # one table of several evals
    prunelab submit --address http://HEAD:8265 sweep configs/sweep/llama-3.1-8b-instruct.yaml   # as a Ray job
    prunelab runtime-env --env HF_TOKEN                            # for ray job submit --runtime-env-json
    prunelab models                                                # the built-in models

Bad input (a config, a model, a layer list, a results directory) prints what was wrong and exits with code 2,
before anything is written.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from prunelab.errors import ConfigError, PrunelabError


def _stage_config(entry, args):
    """The stage config from an optional file, flags (shortcuts for config keys) and `a.b=value` overrides, in that
    order of precedence from weakest to strongest."""
    from prunelab.config import load_config, parse_config, read_config_file, set_key

    positional = list(args.positional)
    path = positional.pop(0) if positional and "=" not in positional[0] else None
    data = read_config_file(path) if path else {}
    for flag in entry.flags:
        raw = getattr(args, _dest(flag))
        if raw is None or raw is False:
            continue
        try:
            value = True if flag.switch else flag.parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"{flag.name}: {exc}") from None
        except ValueError:
            raise ConfigError(f"{flag.name} {raw!r}: expected {flag.parse.__name__} ({flag.help})") from None
        for key in flag.keys:
            set_key(data, key, value, flag.name, where_present=flag.where_present)
    out = getattr(args, "flag_out", None)
    if entry.name_from_out and out and "name" not in data:
        data["name"] = Path(out).name
    if path:
        return load_config(path, positional, cls=entry.config, data=data)
    return parse_config({"kind": entry.kind, **data}, positional, source="(command line)", cls=entry.config)


def _runtime(args, config):
    """Where the stage computes: Ray (attached to --address, ray.address or $RAY_ADDRESS, else a local Ray, started
    only when the stage first needs it), or this process with --local."""
    from prunelab.stages.runtime import Runtime

    progress = not args.no_progress
    if getattr(args, "local", False) or "ray" not in type(config).model_fields:
        return Runtime.in_process(progress)
    from prunelab.distributed import ray_runtime

    return ray_runtime(args.address or config.ray.address, progress)


def _dest(flag) -> str:
    return "flag_" + flag.name.lstrip("-").replace("-", "_")


def stage_command(entry):
    def command(args) -> int:
        config = _stage_config(entry, args)
        if args.check:  # validated; the config the stage would run, and nothing run
            import yaml

            from prunelab.report.power import check_lines

            print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
            power = check_lines(config)
            if power:  # YAML comments, so the output stays a config that loads
                print("# what these sizes can detect (exact paired test, Holm over each task's candidates):")
                print("\n".join(f"#   {line}" for line in power))
            return 0
        print(entry.run(config, _runtime(args, config)).summary())
        return 0

    return command


def cmd_drop(args) -> int:
    from prunelab.models import load_model, resolve_model_path
    from prunelab.models.loading import dtype_record, export_dtype
    from prunelab.stages.registry import comma_ints
    from prunelab.surgery import check_layers, drop_layers, num_layers, save_pruned

    # nothing is computed: loaded in what it is saved in
    dtype = export_dtype(args.model, "source" if args.dtype == "auto" else args.dtype)
    model, tokenizer = load_model(args.model, dtype=str(dtype).removeprefix("torch."))
    layers = check_layers(comma_ints(args.layers), num_layers(model), "--layers")
    drop_layers(model, layers)
    manifest = {"base_model": args.model, "base_model_path": resolve_model_path(args.model),
                "removed_layers": layers, "strategy": "manual", "dtype": dtype_record(args.model, dtype)}
    print(save_pruned(model, tokenizer, args.out, manifest))
    return 0


def cmd_samples(args) -> int:
    from prunelab.report.samples import format_samples, samples

    table = samples(args.dir, task=args.task, candidate=args.candidate, flipped=args.flipped)
    print(format_samples(table.head(args.limit) if args.limit else table, width=args.width))
    print(f"\n{len(table)} samples" + (f" (first {args.limit} shown)" if args.limit and len(table) > args.limit else ""))
    return 0


def cmd_report(args) -> int:
    from prunelab.artifacts import PIPELINE_SUMMARY, written_summary
    from prunelab.report import combine, write_report

    if len(args.dirs) > 1 or args.out:
        if not args.out:
            raise ConfigError("several directories make one combined table: give --out DIR for it")
        labels = [x for x in args.labels.split(",")] if args.labels else None
        paths = combine(args.dirs, args.out, labels, title=args.title)
        print(written_summary(paths, "markdown"))
        return 0
    if (Path(args.dirs[0]) / PIPELINE_SUMMARY).exists():
        from prunelab.report.page import write_pipeline_report

        paths = write_pipeline_report(args.dirs[0])
        print(written_summary(paths, "markdown"))
        return 0
    paths = write_report(args.dirs[0])
    print(written_summary(paths, "strategies_markdown" if "strategies_markdown" in paths else "markdown"))
    return 0


def cmd_submit(args) -> int:
    from prunelab.distributed.submit import submit

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("submit needs the cluster's job API: --address http://HEAD:8265 or $RAY_ADDRESS")
    _, status = submit(args.stage, args.job_args, address, working_dir=args.working_dir,
                       env_vars=_env_vars(args.env),
                       runtime_env=args.runtime_env or None, entrypoint_num_gpus=args.entrypoint_num_gpus,
                       submission_id=args.submission_id, wait=not args.no_wait)
    return 0 if status in (None, "SUCCEEDED") else 1


def cmd_runtime_env(args) -> int:
    import json

    from prunelab.distributed.submit import runtime_env_of

    print(json.dumps(runtime_env_of(args.runtime_env or None, _env_vars(args.env))))
    return 0


def _env_vars(names: list[str]) -> dict[str, str]:
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise ConfigError(f"--env {', '.join(missing)}: not set in this environment (export it first)")
    return {name: os.environ[name] for name in names}


def cmd_clean(args) -> int:
    from prunelab.config import PipelineConfig, load_config
    from prunelab.pipeline.clean import human, remove, unused

    config = load_config(args.config, args.overrides, cls=PipelineConfig)
    entries = unused(config)
    for entry in entries:
        print(f"{human(entry.bytes):>10}  {entry.path}")
    total = human(sum(e.bytes for e in entries))
    if not entries:
        print(f"nothing to clean: every entry of {config.output_dir}/stages is a stage this config uses")
    elif args.yes:
        remove(entries)
        print(f"removed {len(entries)} entries ({total}) that this config no longer uses")
    else:
        print(f"{len(entries)} entries ({total}) that this config no longer uses; nothing removed (a dry run): "
              "rerun with --yes to remove them")
    return 0


def cmd_models(args) -> int:
    from prunelab.models import BUILTIN_MODELS

    for m in BUILTIN_MODELS.values():
        print(f"{m.name:32s} {m.description}  [pip: {' '.join(m.packages)}]")
    return 0


def _stage_parser(sub, entry) -> None:
    p = sub.add_parser(entry.kind, help=entry.help)
    p.add_argument("positional", nargs="*", metavar="[CONFIG] [a.b=value ...]",
                   help=f"stage config YAML (e.g. {entry.example}), then overrides")
    if "ray" in entry.config.model_fields:
        p.add_argument("--address", help="Ray cluster address (default: ray.address, $RAY_ADDRESS, else a local Ray)")
        p.add_argument("--local", action="store_true", help="no Ray: everything in this process")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--check", action="store_true", help="validate the config and print it as the stage would run it; "
                                                        "run nothing")
    for flag in entry.flags:
        if flag.switch:
            p.add_argument(flag.name, dest=_dest(flag), action="store_true", help=flag.help)
        else:
            p.add_argument(flag.name, dest=_dest(flag), choices=flag.choices, help=flag.help)
    p.set_defaults(func=stage_command(entry))


def build_parser() -> argparse.ArgumentParser:
    from prunelab.stages.registry import STAGES, job_names

    parser = argparse.ArgumentParser(prog="prunelab", description="Depth pruning of LLMs, on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for entry in STAGES:
        _stage_parser(sub, entry)

    p = sub.add_parser("drop", help="remove given layers and export a Hugging Face checkpoint")
    p.add_argument("--model", required=True)
    p.add_argument("--layers", required=True, help="comma-separated layer indices, e.g. 20,21")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="source", choices=["source", "auto", "float32", "bfloat16", "float16"],
                   help="what the checkpoint is saved in: source (auto means the same here: nothing is computed) is "
                        "the dtype the model is stored in, so only the layers change; a dtype converts on purpose, "
                        "recorded in the manifest")
    p.set_defaults(func=cmd_drop)

    p = sub.add_parser("samples", help="the outputs behind the scores: each candidate's generations and what was "
                                       "scored from them, beside the base model's")
    p.add_argument("dir", metavar="RUN_DIR", help="a sweep, eval or compare-strategies output directory, or a "
                                                  "combined table's (`prunelab report A B --out DIR`)")
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
                   help="GPUs for the driver (scoring strategies of prune run in it)")
    p.add_argument("--submission-id", default=None)
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this variable of your environment to the job (e.g. HF_TOKEN); repeatable")
    p.add_argument("--no-wait", action="store_true", help="return once submitted; otherwise follow the logs")
    p.add_argument("stage", choices=job_names())
    p.add_argument("job_args", nargs=argparse.REMAINDER, metavar="...", help="the stage's arguments")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("runtime-env", help="print the jobs' runtime env as JSON, with variables of your environment "
                                           "added: for plain `ray job submit --runtime-env-json`")
    p.add_argument("--runtime-env", default="cluster/runtime_env.yaml", help="YAML runtime env ('' for none)")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="add this variable of your environment (e.g. HF_TOKEN); repeatable")
    p.set_defaults(func=cmd_runtime_env)

    p = sub.add_parser("clean", help="list (and with --yes remove) what a pipeline's output directory holds that its "
                                     "config no longer uses: stages of changed knobs, set-aside directories")
    p.add_argument("config", metavar="CONFIG", help="the pipeline's config (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="the overrides the pipeline ran with")
    p.add_argument("--yes", action="store_true", help="remove them (default: only list them, with their sizes)")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("models", help="list the built-in models")
    p.set_defaults(func=cmd_models)

    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as `main` reads it (argparse exits with code 2 on a malformed one)."""
    parser = build_parser()
    # flags may come anywhere: `prunelab sweep CONFIG --local a.b=1` (argparse leaves positionals after a flag over)
    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [a for a in extra if a.startswith("-")]
        if unknown or not hasattr(args, "positional"):
            parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
        args.positional = [*args.positional, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from prunelab.progress import quiet_library_bars

    quiet_library_bars()
    try:
        return args.func(args)
    except PrunelabError as exc:
        print(f"prunelab: error: {exc}", file=sys.stderr)
        return 2


def job_main(path: str, argv: list[str]) -> int:
    """A Ray job entrypoint's body: jobs/<stage>.py runs `prunelab <stage> ARGS`."""
    from prunelab.stages.registry import job_file, job_names

    stem = Path(path).stem
    name = next((n for n in job_names() if job_file(n).stem == stem), None)
    if name is None:
        raise SystemExit(f"{path}: no stage or job command is called {stem!r}; allowed: {', '.join(job_names())}")
    return main([name, *argv])


if __name__ == "__main__":
    sys.exit(main())
