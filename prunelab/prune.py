"""`prunelab prune`: choose layers with a strategy (or take them as given), remove them, and write a checkpoint
that stock transformers and vLLM load, with a manifest that says what was removed, why, and from what."""

from pathlib import Path

from prunelab.data.corpora import load_corpus, texts_hash
from prunelab.data.overlap import check_disjoint
from prunelab.models import load_model, resolve_model_path
from prunelab.strategies import STRATEGIES, Selection, count_to_remove, select_layers
from prunelab.surgery import check_layers, drop_layers, num_layers, save_pruned


def prune(model_name: str, out: str | Path, strategy: str | None = None, ratio: float | None = None,
          layers: list[int] | None = None, calibration: str = "sharegpt", calibration_samples: int = 64,
          calibration_seed: int = 0, max_length: int = 512, batch_size: int = 8, keep_last: bool = False,
          sweep_dir: str | None = None, sweep_tasks: list[str] | None = None, test_tasks: list[str] = (),
          selection_task: str | None = None, selection_limit: int | None = 32, selection_seed: int = 7,
          dtype: str = "auto", device: str = "cpu") -> tuple[Path, Selection]:
    from prunelab.errors import ConfigError

    if (layers is None) == (ratio is None):
        raise ConfigError("give either --ratio (with --strategy) or --layers")
    if ratio is not None and strategy is None:
        raise ConfigError(f"--ratio needs --strategy ({', '.join(STRATEGIES)})")
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
    model, tokenizer = load_model(model_name, dtype=dtype, device=device)
    total = num_layers(model)
    data = {}
    if layers is not None:
        selection = Selection("manual", check_layers(layers, total), {})
    else:
        n = count_to_remove(ratio, total)
        texts = None
        if strategy in ("block_influence", "angular"):
            texts = load_corpus(calibration, limit=calibration_samples, seed=calibration_seed)
            check_disjoint(texts, list(test_tasks))
            data = {"calibration": calibration, "calibration_samples": len(texts), "calibration_seed": calibration_seed,
                    "calibration_sha256": texts_hash(texts), "max_length": max_length}
        if strategy == "iterative":
            selection = _iterative(model_name, dtype, out, n, tokenizer, selection_task, selection_limit,
                                   selection_seed, list(test_tasks))
        else:
            selection = select_layers(strategy, n, total, model=model, tokenizer=tokenizer, texts=texts,
                                      keep_last=keep_last, sweep_dir=sweep_dir, tasks=sweep_tasks,
                                      max_length=max_length, batch_size=batch_size)
    if "selection_sha256" in selection.details:
        data = {"selection_task": selection.details["selection_task"],
                "selection_sha256": selection.details["selection_sha256"]}
    drop_layers(model, selection.removed)
    manifest = {"base_model": model_name, "base_model_path": resolve_model_path(model_name),
                "base_num_hidden_layers": total, "strategy": selection.strategy, "ratio": ratio,
                "removed_layers": selection.removed, "scores": selection.scores, "details": selection.details,
                "data": data}
    return save_pruned(model, tokenizer, out, manifest), selection


def _iterative(model_name, dtype, out, n, tokenizer, task, limit, seed, test_tasks) -> Selection:
    """Greedy rounds on Ray actors; their results (and so the resume point) live in `<out>-greedy/`."""
    from prunelab.config import SweepConfig, TaskSpec, parse_config
    from prunelab.errors import ConfigError
    from prunelab.strategies.greedy import check_selection_disjoint, iterative_greedy

    if not task:
        raise ConfigError("--strategy iterative needs --selection-task (e.g. arithmetic), scored every round")
    spec = TaskSpec(name=task, limit=limit, seed=seed)
    if task in test_tasks:
        test_ids = {task: {it.id for it in TaskSpec(name=task).build().items(tokenizer)}}
        check_selection_disjoint(spec.build().items(tokenizer), test_ids, task)
    root = Path(f"{out}-greedy")
    config = parse_config({"name": f"{Path(out).name}-greedy", "model": {"name": model_name, "dtype": dtype},
                           "tasks": [spec.model_dump()], "output_dir": str(root)}, cls=SweepConfig)
    return iterative_greedy(config, n, root)
