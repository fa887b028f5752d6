"""`prunelab compare-strategies`: retention by strategy x ratio on a task set, with confidence intervals.

Each (strategy, ratio) chooses its layers (`prunelab.strategies.select`, the path `prunelab prune` takes), kept in
`selections.json`, written once and reused on a rerun; then every distinct removed-layer set is evaluated through
`run_plan`, as a sweep's candidates are: workers that load the model once, resume from the first removed layer's
recorded input, and write results as they land (a stopped run resumes). Two strategies that choose the same layers
share one evaluation. The iterative strategy's rounds are stored in `greedy/`.
"""

from pathlib import Path

from prunelab.artifacts import SELECTIONS, CompareArtifact
from prunelab.atomic import write_json
from prunelab.config import CompareConfig
from prunelab.execution.noise import measure_noise_floor
from prunelab.execution.plan import plan_units
from prunelab.execution.run import Executor, run_plan
from prunelab.metadata import write_meta
from prunelab.report import write_report
from prunelab.results import BASE, Candidate, ResultsStore
from prunelab.stages.common import build_tasks, check_reasoning, default_executor, record_workers, worker_spec
from prunelab.stages.prune import greedy_runner
from prunelab.tasks import describe


def compare_strategies(config: CompareConfig, executor: Executor | None = None,
                       progress: bool = True) -> dict[str, Path]:
    from prunelab.strategies.select import LayerChooser

    root = Path(config.output_dir)
    executor = default_executor(executor)
    store = ResultsStore(root, model=config.model.name)
    store.check_claim(config.identity())
    tasks = build_tasks(config.tasks, config.generation)
    path = root / SELECTIONS
    saved = CompareArtifact(root).saved_selections()
    keys = {f"{s}@{r:g}": (s, r) for s in config.strategies for r in config.ratios}
    missing = [k for k in keys if k not in saved["selections"]]
    # every input of what is left to choose (ratios, calibration and selection data) is checked before the
    # directory is claimed; a rerun with every selection saved reads no calibration data
    chooser = LayerChooser(config.model, config, sorted({keys[k][0] for k in missing}),
                           sorted({keys[k][1] for k in missing}), config.tasks,
                           greedy=greedy_runner(config, root / "greedy", executor, progress), progress=progress)
    check_reasoning(chooser.facts, tasks)
    store.claim(config.identity())
    for key in missing:
        sel = chooser.choose(*keys[key])  # the greedy rounds cover the largest missing ratio
        saved["selections"][key] = {"strategy": sel.strategy, "ratio": keys[key][1], "removed": sel.removed,
                                    "scores": sel.scores, "details": sel.details}
    if missing:
        saved["num_layers"] = chooser.facts.num_layers
        saved["data"] = {**saved.get("data", {}), **chooser.data}
        if chooser.greedy_rounds is not None:
            saved["greedy_rounds"] = chooser.greedy_rounds
        write_json(path, saved)
    sets = sorted({tuple(saved["selections"][k]["removed"]) for k in keys})
    worker = worker_spec(config.model, config.sweep.batch_tokens, config.generation, sweep=config.sweep)
    plan = plan_units(tasks, chooser.facts.tokenizer, [BASE, *(Candidate(s) for s in sets)], store.done(),
                      batch_tokens=config.sweep.batch_tokens, generation_unit=config.sweep.generation_unit,
                      window=chooser.facts.window, generation_tokens=worker.generation_budget)
    write_meta(root, "compare-strategies", config, {n: describe(t, plan.floors.get(n)) for n, t in tasks.items()},
               num_layers=chooser.facts.num_layers)
    run_plan(plan, store, executor, worker, progress, desc=config.name)
    if config.generation.noise_floor:
        measure_noise_floor(root, tasks, chooser.facts.tokenizer, BASE, worker, config.sweep.generation_unit,
                            executor, config.identity(), progress, desc=config.name)
    record_workers(root, executor)
    return write_report(root)


def run(config: CompareConfig, runtime) -> CompareArtifact:
    with runtime.executor(config.ray) as executor:
        return CompareArtifact(config.output_dir, compare_strategies(config, executor, progress=runtime.progress))
