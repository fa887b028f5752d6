"""`prunelab pipeline`'s config: the stage sections of one experiment, from model to findings. Each section embeds
the same section classes its stage config does (`sections.py`)."""

from typing import Literal

from pydantic import model_validator

from prunelab.config.fields import Frozen, extent, key, setting
from prunelab.config.sections import (
    CostMeasure,
    GenerationSpec,
    ModelSpec,
    Ratios,
    RaySpec,
    RecoverSection,
    RecoveryMethod,
    SGRSection,
    StatsSpec,
    StrategyNames,
    StrategyOptions,
    SweepSpec,
    TaskSpec,
    check_method,
    check_strategy_needs,
    check_sweepable,
    check_unique,
)
from prunelab.recovery.registry import trained


class PipelineSweep(Frozen):
    """The pipeline's single-layer sweep (the paper's Figure 1 and the arithmetic probe per layer)."""

    tasks: list[TaskSpec] | None = key(None, description="default: the pipeline's tasks")
    sweep: SweepSpec = key(SweepSpec())


class PipelinePrune(StrategyOptions):
    """Strategies x ratios (compare-strategies, the paper's Table 1), and the checkpoints recovery starts from."""

    strategies: StrategyNames = extent(["block_influence"], min_length=1)
    ratios: Ratios = extent([0.25], min_length=1)
    sweep: SweepSpec = setting(SweepSpec())

    def strategies_used(self) -> list[str]:
        return list(self.strategies)


class PipelineSGR(SGRSection):
    """The SGR stage's section: the same fields and defaults as `prunelab sgr`'s config."""


class PipelineRecover(RecoverSection):
    """Which pruned models are recovered (`strategy@ratio` of the prune section), on which responses; how, as
    `prunelab recover`'s config says it."""

    targets: list[str] = extent(["block_influence@0.25"], min_length=1)
    methods: list[RecoveryMethod] = extent(["sft"], min_length=1, description="sft (one arm per responses), kd, "
                                                                              "partial (on SGR responses), linear")
    responses: list[Literal["sgr", "reference"]] = extent(["sgr", "reference"], min_length=1,
                                                          description="the sft arms' answers")
    others_on: Literal["sgr", "reference"] = key("sgr", description="the answers kd, partial and linear's then "
                                                                    "train on (each sft arm trains on its own)")
    paired: bool = key(True, description="when both arms are trained, both train on the same prompts (those with a "
                                         "kept SGR response and an original answer that fit), so they differ in "
                                         "their answers alone")
    seeds: list[int] | None = extent(None, min_length=1, description="training seeds: every trained arm is trained "
                                     "once per seed on the same examples, and the report averages over them with "
                                     "intervals over seeds and items; the first seed's arm keeps the arm's stage "
                                     "name. Unset: training.seed alone")

    @model_validator(mode="after")
    def _methods(self):
        check_unique_names(self.methods, "recover.methods")
        if self.seeds is not None:
            check_unique_names([str(s) for s in self.seeds], "recover.seeds")
        for method in self.methods:
            check_method(method, self)
        return self

    def methods_used(self) -> set[str]:
        return self._used(set(self.methods))


def check_unique_names(names: list[str], where: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where} repeats {repeated}; list each once")


def recovery_arms(recover: PipelineRecover) -> list[tuple[str, str, str]]:
    """(arm, method, responses) per recovered model of a target: sft once per responses (arm: the responses, the
    stage names recovery had before other methods), every other method on `others_on` (arm: the method)."""
    arms = []
    for method in recover.methods:
        if method == "sft":
            arms += [(responses, "sft", responses) for responses in recover.responses]
        else:
            arms.append((method, method, recover.others_on))
    return arms


def seeded_arms(recover: PipelineRecover) -> list[tuple[str, str, str, str, int]]:
    """(stage arm, arm, method, responses, seed) per recovered model: each arm of `recovery_arms` once per seed
    where it trains (linear alone fits a least-squares map: no seed), the first seed under the arm's own name."""
    seeds = recover.seeds or [recover.training.seed]
    out = []
    for arm, method, responses in recovery_arms(recover):
        trains = trained(method, recover) is not None
        for i, seed in enumerate(seeds if trains else seeds[:1]):
            out.append((arm if i == 0 else f"{arm}-seed{seed}", arm, method, responses, seed))
    return out


def target_key(strategy: str, ratio: float) -> str:
    return f"{strategy}@{ratio:g}"


class PipelineCost(CostMeasure):
    """The cost of every strategy x ratio's pruned model against the base (prunelab cost, layers removed in memory):
    the same fields and defaults as `prunelab cost`'s config."""


class PipelineConfig(Frozen):
    """`prunelab pipeline`: one config from model to findings. Every stage is an artifact directory keyed by a hash of
    its inputs, so a rerun computes only what changed (prunelab.pipeline)."""

    kind: Literal["pipeline"] = setting("pipeline")
    name: str = setting()
    model: ModelSpec = key()
    tasks: list[TaskSpec] = key(min_length=1, description="evaluated on the base, pruned and recovered models")
    generation: GenerationSpec = key(GenerationSpec())
    sweep: PipelineSweep | None = key(PipelineSweep())
    prune: PipelinePrune = key(PipelinePrune())
    sgr: PipelineSGR | None = key(PipelineSGR())
    recover: PipelineRecover | None = key(PipelineRecover())
    cost: PipelineCost | None = key(None)
    stats: StatsSpec = setting(StatsSpec(), description="how the report tests (adjustment, alpha, power, margin)")
    ray: RaySpec = setting(RaySpec())
    output_dir: str = setting()

    @model_validator(mode="after")
    def _inputs(self):
        check_unique(self.tasks)
        self.stats.check_primary([t.name for t in self.tasks])
        check_sweepable(self.tasks, self.generation, self.prune.sweep)
        check_strategy_needs(self.prune.strategies, self.prune)
        if self.sweep is not None:
            check_unique(self.sweep.tasks or self.tasks)
            check_sweepable(self.sweep.tasks or self.tasks, self.generation, self.sweep.sweep)
        if self.recover is not None:
            made = [target_key(s, r) for s in self.prune.strategies for r in self.prune.ratios]
            for target in self.recover.targets:
                if target not in made:
                    raise ValueError(f"recover.targets names {target!r}, which no prune stage produces; the prune "
                                     f"section makes {', '.join(made)} (prune.strategies x prune.ratios)")
            if self.sgr is None:
                raise ValueError("recover needs the sgr section: the SGR stage makes the corpus that both responses "
                                 "(sgr: the base model's answers; reference: the corpus's original answers) train on")
        return self


__all__ = ["PipelineConfig", "PipelineCost", "PipelinePrune", "PipelineRecover", "PipelineSGR", "PipelineSweep",
           "recovery_arms", "seeded_arms", "target_key"]
