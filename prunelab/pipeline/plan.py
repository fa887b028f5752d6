"""The pipeline's stages, from one PipelineConfig: each a stage config of its own (the same ones `prunelab sweep`,
`compare-strategies`, `prune`, `sgr`, `recover` and `eval` take), the stages it reads, and a key.

    plan_pipeline(config) -> [Stage, ...]        # in an order where every stage comes after what it reads

A stage's key is the SHA-256 of its kind, its config's identity (what its results depend on, upstream artifact
paths included), its upstream stages' keys and its code version (`prunelab.pipeline.code`, where past 1); its
directory is `OUTPUT_DIR/stages/<name>-<key[:12]>`. So a knob, or a change to the code a stage runs that moves its
numbers, changes the key of its stage and of every stage downstream of it, and nothing else.

The wiring is derived: a pipeline section becomes its stage config's fields whole (`section_fields`), a recovery arm
gets its own method's sections (`method_settings`) and a checkpoint its own strategy's settings; fields that come
from an upstream artifact are the stage entry's `inputs` (`prunelab.stages.registry.Input`); what is left at its
default is `AT_DEFAULT`, with the reason (tests/test_pipeline_wiring.py holds all three against the configs).
"""

import hashlib
import json
from dataclasses import dataclass, field
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
from prunelab.config.sections import METHOD_SECTIONS, CostMeasure, RecoverSection, SGRSection, StrategyOptions
from prunelab.recovery.registry import arm_label
from prunelab.recovery.registry import trained as trained_by
from prunelab.strategies.registry import STRATEGIES


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. sweep, compare, prune-block_influence@0.25, recover-block_influence@0.25-sgr
    kind: str  # the stage config's kind
    config: object  # the stage config, output_dir set
    needs: tuple[str, ...]
    key: str
    pruned_from: str | None = None  # an evaluation of this strategy@ratio's checkpoint: compare evaluated it already
    fields: frozenset[str] = frozenset()  # the config fields the planner set (the rest: inputs or AT_DEFAULT)
    # what the stage is in the run, for the report (pipeline.json records it): a target's evaluation names its
    # recoveries' evaluations; an arm's recovery and its evaluation name the target, arm, seed and label
    role: dict = field(default_factory=dict)

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


# Stage config fields the pipeline leaves at their defaults, on purpose. Every other field is set by the planner from
# the pipeline's config or taken from upstream (`StageEntry.inputs`): tests/test_pipeline_wiring.py fails on a field in
# none of these, so a field added to a stage config is never silently run at its default.
AT_DEFAULT = {
    "eval": {"backend": "classification is scored by prunelab's engine (lm-eval's backend is eval's own option)",
             "batch_tokens": "the engine's default batch", "threads": "torch's own thread count",
             "base_model": "eval-base evaluates the base model alone"},
    "prune": {"device": "auto", "layers": "a strategy chooses them", "output_dtype": "the checkpoint keeps its dtype",
              "generation": "read only by the iterative strategy's rounds, which take the pipeline's generation"},
    "cost": {"models": "the layers of every strategy x ratio are removed in memory (`removed`)"},
}


def section_fields(section, stage_section: type) -> dict:
    """A pipeline section's fields that the stage config shares with it (its section class), whole: a field added to
    the section reaches the stage without a line here."""
    return section.model_dump(include=set(stage_section.model_fields))


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

    def add(self, stage: str, cls, needs: tuple[str, ...], pruned_from: str | None = None, role: dict | None = None,
            **fields) -> Stage:
        """A stage of `cls` named `stage`: its key from the fields (output_dir aside) and its upstream keys."""
        name = stage
        upstream = [self.stages[n].key for n in needs]
        draft = cls.model_validate({**fields, "output_dir": "-"})
        key = stage_key(cls.model_fields["kind"].default, draft.stage_identity(), upstream)
        config = draft.model_copy(update={"output_dir": str(self.root / f"{_dir_name(name)}-{key[:12]}")})
        self.stages[name] = Stage(name, config.kind, config, needs, key, pruned_from, frozenset(fields), role or {})
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
    # compare and every evaluation after eval-base start from its base rows (`run.seed_base_rows`)
    p.add(COMPARE_STAGE, CompareConfig, (BASE_EVAL,), name=f"{name}-strategies", model=model, tasks=tasks,
          strategies=config.prune.strategies, ratios=config.prune.ratios, sweep=config.prune.sweep.model_dump(),
          generation=generation, stats=stats, ray=ray, **section_fields(config.prune, StrategyOptions))
    if config.cost is not None:  # every strategy x ratio's layers, removed in memory, against the base
        p.add(COST_STAGE, CostConfig, (COMPARE_STAGE,), name=f"{name}-cost", base_model=model, ray=ray,
              **section_fields(config.cost, CostMeasure))
    if config.recover is None:
        return list(p.stages.values())
    corpus = p.add(SGR_STAGE, SGRConfig, (), name=f"{name}-sgr", model=model, ray=cluster,
                   **section_fields(config.sgr, SGRSection))
    r = config.recover
    trained = section_fields(r, RecoverSection)
    for section in METHOD_SECTIONS:  # each arm gets its own methods' sections alone (`method_settings`)
        trained.pop(section)
    for target in r.targets:
        strategy, ratio = target.rsplit("@", 1)
        reads = config.prune.settings_for(strategy).model_dump()
        if STRATEGIES.entry(strategy).needs == "selection":
            reads["generation"] = generation
        pruned = p.add(prune_stage(target), PruneConfig, (), name=f"{name}-{target}", model=model, strategy=strategy,
                       ratio=float(ratio), test_tasks=[t.name for t in config.tasks], sweep=config.prune.sweep.model_dump(),
                       ray=ray, **reads)
        arms = recovery_arms(r)
        # the arms train on the same prompts when their answers differ (sgr against reference)
        paired = r.paired and len({responses for _, _, responses in arms}) > 1
        recovered = []
        for run, arm, method, responses, seed in seeded_arms(r):
            role = {"target": target, "arm": arm, "run": run, "seed": seed, "label": arm_label(arm, r.model_dump())}
            rec = p.add(recover_stage(target, run), RecoverConfig, (pruned.name, corpus.name),
                        role={**role, "trains": trained_by(method, r) is not None}, name=f"{name}-{target}-{run}",
                        model={**model, "name": str(pruned.output_dir)}, corpus=str(corpus.output_dir),
                        method=method, responses=responses, paired=paired,
                        **{**trained, "training": {**trained["training"], "seed": seed}}, ray=cluster,
                        **method_settings(r, method))
            recovered.append((eval_stage(target, run), rec.output_dir / MERGED, (rec.name,), None, role))
        evaluated = [(eval_stage(target), pruned.output_dir, (pruned.name, COMPARE_STAGE), target,
                      {"target": target, "recovered": [e[0] for e in recovered]}), *recovered]
        for stage_name, path, needs, pruned_from, role in evaluated:
            p.add(stage_name, EvalConfig, (*needs, BASE_EVAL), pruned_from, role, name=stage_name.removeprefix("eval-"),
                  model={**model, "name": str(path)}, base_model=model, tasks=tasks, generation=generation, ray=ray,
                  stats=stats)
    return list(p.stages.values())


__all__ = ["AT_DEFAULT", "BASE_EVAL", "Stage", "section_fields", "plan_pipeline", "stage_key", "target_key"]
