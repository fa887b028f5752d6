"""The pipeline's stages, from one PipelineConfig: each a stage config of its own (the same ones `prunelab sweep`,
`compare-strategies`, `prune`, `sgr`, `recover` and `eval` take), the stages it reads, and a key.

    plan_pipeline(config) -> [Stage, ...]        # in an order where every stage comes after what it reads

A stage's key is the SHA-256 of its kind, its config's identity (what its results depend on, upstream artifact
paths included), its upstream stages' keys and its code version (`prunelab.pipeline.code`, where past 1); its
directory is `OUTPUT_DIR/stages/<name>-<key[:12]>`. So a knob, or a change to the code a stage runs that moves its
numbers, changes the key of its stage and of every stage downstream of it, and nothing else.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from prunelab.artifacts import (
    BASE_EVAL,
    COMPARE_STAGE,
    COST_STAGE,
    MERGED,
    SGR_STAGE,
    SWEEP_STAGE,
    eval_stage,
    prune_stage,
    recover_stage,
)
from prunelab.config import (
    CompareConfig,
    CostConfig,
    EvalConfig,
    PipelineConfig,
    PruneConfig,
    RecoverConfig,
    SGRConfig,
    SweepConfig,
    recovery_arms,
    seeded_arms,
    target_key,
)


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. sweep, compare, prune-block_influence@0.25, recover-block_influence@0.25-sgr
    kind: str  # the stage config's kind
    config: object  # the stage config, output_dir set
    needs: tuple[str, ...]
    key: str
    pruned_from: str | None = None  # an evaluation of this strategy@ratio's checkpoint: compare evaluated it already

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)


def stage_key(kind: str, identity: dict, upstream: list[str], code_version: int | None = None) -> str:
    """`code_version`: the stage's (`StageEntry.code_version`, the registry's where None)."""
    from prunelab.pipeline.code import key_part
    from prunelab.stages.registry import STAGES

    version = STAGES.get(kind).code_version if code_version is None else code_version
    text = json.dumps({"kind": kind, "identity": identity, "upstream": upstream, **key_part(version)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def method_settings(recover, method: str) -> dict:
    """The settings sections of the methods a recover stage of `method` runs (its own, and linear's `then`'s), from
    the pipeline's recover section: a stage gets no other method's settings (it would refuse them)."""
    from prunelab.recovery.registry import METHODS, runs

    sections = {METHODS[m].section for m in runs({method}, recover)} - {None}
    return {s: getattr(recover, s).model_dump() for s in sorted(sections)}


def _dir_name(name: str) -> str:
    return name.replace("@", "-at-").replace("/", "_")


class _Planner:
    def __init__(self, config: PipelineConfig):
        self.config, self.stages = config, {}
        self.root = Path(config.output_dir).resolve() / "stages"

    def add(self, stage: str, cls, needs: tuple[str, ...], pruned_from: str | None = None, **fields) -> Stage:
        """A stage of `cls` named `stage`: its key from the fields (output_dir aside) and its upstream keys."""
        name = stage
        upstream = [self.stages[n].key for n in needs]
        draft = cls.model_validate({**fields, "output_dir": "-"})
        key = stage_key(cls.model_fields["kind"].default, draft.stage_identity(), upstream)
        config = draft.model_copy(update={"output_dir": str(self.root / f"{_dir_name(name)}-{key[:12]}")})
        self.stages[name] = Stage(name, config.kind, config, needs, key, pruned_from)
        return self.stages[name]


def plan_pipeline(config: PipelineConfig) -> list[Stage]:
    p = _Planner(config)
    model = config.model.model_dump()
    tasks = [t.model_dump() for t in config.tasks]
    generation = config.generation.model_dump()
    name = config.name
    ray = config.ray.model_dump()
    stats = config.stats.model_dump()
    cluster = {"address": config.ray.address}  # the stages whose resources are their own sections'
    p.add(BASE_EVAL, EvalConfig, (), name=f"{name}-base", model=model, tasks=tasks, generation=generation, ray=ray,
          stats=stats)
    if config.sweep is not None:
        p.add(SWEEP_STAGE, SweepConfig, (), name=f"{name}-sweep", model=model,
              tasks=[t.model_dump() for t in config.sweep.tasks] if config.sweep.tasks else tasks,
              sweep=config.sweep.sweep.model_dump(), generation=generation, stats=stats,
              ray=ray)
    options = config.prune.model_dump(exclude={"strategies", "ratios", "sweep"})
    # compare and every evaluation after eval-base start from its base rows (`run.seed_base_rows`)
    p.add(COMPARE_STAGE, CompareConfig, (BASE_EVAL,), name=f"{name}-strategies", model=model, tasks=tasks,
          strategies=config.prune.strategies, ratios=config.prune.ratios, sweep=config.prune.sweep.model_dump(),
          generation=generation, stats=stats, ray=ray, **options)
    if config.cost is not None:  # every strategy x ratio's layers, removed in memory, against the base
        p.add(COST_STAGE, CostConfig, (COMPARE_STAGE,), name=f"{name}-cost", base_model=model, ray=ray,
              **config.cost.model_dump())
    if config.recover is None:
        return list(p.stages.values())
    s = config.sgr
    corpus = p.add(SGR_STAGE, SGRConfig, (), name=f"{name}-sgr", model=model, chat_template=s.chat_template,
                   prompts=s.prompts.model_dump(), sampling=s.sampling.model_dump(), engine=s.engine.model_dump(),
                   ray=cluster)
    r = config.recover
    for target in r.targets:
        strategy, ratio = target.rsplit("@", 1)
        pruned = p.add(prune_stage(target), PruneConfig, (), name=f"{name}-{target}", model=model, strategy=strategy,
                       ratio=float(ratio), test_tasks=[t.name for t in config.tasks], sweep=config.prune.sweep.model_dump(),
                       ray=ray, **options)
        evaluated = [(eval_stage(target), pruned.output_dir, (pruned.name, COMPARE_STAGE), target)]
        arms = recovery_arms(r)
        # the arms train on the same prompts when their answers differ (sgr against reference)
        paired = r.paired and len({responses for _, _, responses in arms}) > 1
        for arm, _, method, responses, seed in seeded_arms(r):
            rec = p.add(recover_stage(target, arm), RecoverConfig, (pruned.name, corpus.name),
                        name=f"{name}-{target}-{arm}", model={**model, "name": str(pruned.output_dir)},
                        corpus=str(corpus.output_dir), method=method, responses=responses, paired=paired,
                        quantization=r.quantization, lora=r.lora.model_dump(),
                        training={**r.training.model_dump(), "seed": seed},
                        workers=r.workers.model_dump(), ray=cluster, **method_settings(r, method))
            evaluated.append((eval_stage(target, arm), rec.output_dir / MERGED, (rec.name,), None))
        for stage_name, path, needs, pruned_from in evaluated:
            p.add(stage_name, EvalConfig, (*needs, BASE_EVAL), pruned_from, name=stage_name.removeprefix("eval-"),
                  model={**model, "name": str(path)}, base_model=model, tasks=tasks, generation=generation, ray=ray,
                  stats=stats)
    return list(p.stages.values())


__all__ = ["BASE_EVAL", "Stage", "plan_pipeline", "stage_key", "target_key"]
