"""`prunelab prune`: choose layers with a strategy (or take them as given), remove them, and write a checkpoint
that stock transformers and vLLM load, with a manifest that says what was removed, why, and from what, and
meta.json beside it.

The iterative strategy's rounds (evaluations on the caller's executor) are stored in `<output_dir>-greedy/`, so a
stopped run resumes inside the round it was in.
"""

import json
from pathlib import Path

from prunelab.artifacts import PruneArtifact
from prunelab.config import PruneConfig, TaskSpec
from prunelab.execution.run import Executor
from prunelab.hardware import device_name
from prunelab.metadata import META_FILE, build_meta
from prunelab.models import load_model, resolve_model_path
from prunelab.models.loading import dtype_record, export_dtype
from prunelab.stages.common import default_executor, worker_spec
from prunelab.strategies import Selection
from prunelab.surgery import check_layers, drop_layers, num_layers, save_pruned


def greedy_runner(config, root: Path, executor: Executor, progress: bool):
    """(n, held-out item ids) -> the Selection of n greedy rounds of `config` (prune or compare-strategies), stored
    under `root`, scored on the selection split without those items."""
    from prunelab.strategies.iterative import iterative_greedy

    worker = worker_spec(config.model, config.sweep.batch_tokens, config.generation, sweep=config.sweep)
    return lambda n, held_out=frozenset(): iterative_greedy(
        config.model, config.selection, n, root, executor, worker, config.sweep.batch_tokens,
        config.sweep.generation_unit, progress, held_out=held_out)


def check_checkpoint_dir(out: Path, config: PruneConfig) -> None:
    """Refuses to write over a directory that is not this config's checkpoint: another prune's (a 15% model over
    the 25% one that eval, cost and recover configs then read), or anything that is not a prune checkpoint."""
    from prunelab.errors import ResultsError
    from prunelab.results import differences

    if not out.exists():
        return
    meta = out / META_FILE
    existing = json.loads(meta.read_text()) if meta.exists() else {}
    if existing.get("stage") != "prune":
        raise ResultsError(f"output_dir {str(out)!r} exists and is not a checkpoint that prunelab prune wrote; "
                           "choose another output_dir (nothing was written)")
    changed = differences(existing.get("identity"), json.loads(json.dumps(config.identity())))
    if changed:
        raise ResultsError(f"checkpoint directory {str(out)!r} holds a model pruned with other settings (differs "
                           f"in: {', '.join(changed[:8])}); choose another output_dir or delete that directory "
                           "(nothing was written)")


def prune(config: PruneConfig, executor: Executor | None = None, progress: bool = True) -> tuple[Path, Selection]:

    from prunelab.strategies.select import LayerChooser

    device = device_name(config.device)
    out = Path(config.output_dir)
    check_checkpoint_dir(out, config)
    if config.layers is not None:
        from prunelab.models import inspect_model

        selection = Selection("manual", check_layers(config.layers, inspect_model(config.model).num_layers), {})
        data = {}
    else:  # every input is checked here, before anything is computed or written
        greedy = greedy_runner(config, Path(f"{out}-greedy"), default_executor(executor), progress)
        # a test task named without a spec stands for its whole test split
        tests = [TaskSpec(name=name) for name in config.test_tasks]
        chooser = LayerChooser(config.model, config, [config.strategy], [config.ratio], tests, device, greedy=greedy,
                               progress=progress)
        selection = chooser.choose(config.strategy, config.ratio)
        data = chooser.data
    m = config.model
    # the checkpoint is loaded again in the dtype it is saved in, not the one the strategy computed in
    dtype = export_dtype(m.name, config.output_dtype, m.revision)
    model, tokenizer = load_model(m.name, dtype=str(dtype).removeprefix("torch."), device=device,
                                  revision=m.revision, trust_remote_code=m.trust_remote_code)
    total = num_layers(model)
    drop_layers(model, selection.removed)
    manifest = {"base_model": m.name, "base_model_path": resolve_model_path(m.name), "base_num_hidden_layers": total,
                "strategy": selection.strategy, "ratio": config.ratio, "removed_layers": selection.removed,
                "scores": selection.scores, "details": selection.details, "data": data,
                "dtype": dtype_record(m.name, dtype, m.revision)}
    meta = build_meta("prune", config, removed_layers=selection.removed, base_num_hidden_layers=total)
    files = {META_FILE: json.dumps(meta, indent=2) + "\n"}
    return save_pruned(model, tokenizer, out, manifest, files), selection


def run(config: PruneConfig, runtime) -> PruneArtifact:
    """Only the iterative strategy evaluates candidates, on the runtime's actors; the others score in this process."""
    from contextlib import nullcontext

    from prunelab.execution.run import InProcessExecutor
    from prunelab.strategies import STRATEGIES

    needs_workers = config.strategy is not None and STRATEGIES.entry(config.strategy).needs == "selection"
    with runtime.executor(config.ray) if needs_workers else nullcontext(InProcessExecutor()) as executor:
        path, _ = prune(config, executor, progress=runtime.progress)
    return PruneArtifact(path)
