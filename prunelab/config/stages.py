"""The stage configs: one class per stage (`kind:`), each built from the sections in `sections.py`. What to
compute is marked `key`/`extent` and how to run it `setting` (`fields.py`); only the former decides whether an
existing results directory belongs to this experiment and whether a pipeline stage is reused."""

from typing import Literal

from pydantic import field_validator, model_validator

from prunelab.config.fields import Frozen, extent, key, setting
from prunelab.config.sections import (
    CostMeasure,
    GenerationSpec,
    ModelSpec,
    Ratios,
    RayCluster,
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
    check_ratios,
    check_strategies,
    check_strategy_needs,
    check_sweepable,
    check_unique,
)
from prunelab.strategies.registry import STRATEGIES
from prunelab.tasks import TASKS


class SweepConfig(Frozen):
    """`prunelab sweep`: the base model and each single layer removed, on every task."""

    kind: Literal["sweep"] = setting("sweep")
    name: str = setting()
    model: ModelSpec = key()
    tasks: list[TaskSpec] = key(min_length=1)
    sweep: SweepSpec = key(SweepSpec())
    generation: GenerationSpec = key(GenerationSpec())
    stats: StatsSpec = setting(StatsSpec(), description="how the report tests (adjustment, alpha, power, margin)")
    ray: RaySpec = setting(RaySpec())
    output_dir: str = setting()

    @model_validator(mode="after")
    def _tasks(self):
        check_unique(self.tasks)
        check_sweepable(self.tasks, self.generation, self.sweep)
        return self


class EvalConfig(Frozen):
    """`prunelab eval`: one model (pruned, recovered, any checkpoint) on tasks, with retention against a base."""

    kind: Literal["eval"] = setting("eval")
    name: str = setting()
    model: ModelSpec = key()
    base_model: ModelSpec | None = key(None, description="retention is model / base_model per task")
    tasks: list[TaskSpec] = key(min_length=1)
    batch_tokens: int = setting(4096, ge=16)
    backend: Literal["prunelab", "lm-eval"] = key(
        "prunelab", description="classification scorer: prunelab's engine, or lm-eval's HF backend itself")
    generation: GenerationSpec = key(GenerationSpec())
    threads: int | None = setting(None, ge=1)
    stats: StatsSpec = setting(StatsSpec(), description="how the report tests (adjustment, alpha, power, margin)")
    ray: RaySpec = setting(RaySpec(), description="the actors that evaluate the model and the base model")
    output_dir: str = setting()

    @model_validator(mode="after")
    def _tasks(self):
        check_unique(self.tasks)
        return self


class PruneConfig(StrategyOptions):
    """`prunelab prune`: choose layers with a strategy (or take them as given), remove them, write a checkpoint."""

    kind: Literal["prune"] = setting("prune")
    name: str = setting("")
    model: ModelSpec = key()
    strategy: str | None = key(None, description=f"one of {', '.join(STRATEGIES.names())}")
    ratio: float | None = key(None, description="fraction of layers to remove, e.g. 0.25")
    layers: list[int] | None = key(None, description="remove exactly these layers instead")
    test_tasks: list[str] = key([], description="tasks you will evaluate on: calibration or selection data "
                                                "overlapping them is refused")
    device: str = setting("auto", description="auto: cuda if available, else cpu")
    output_dtype: Literal["source", "float32", "bfloat16", "float16"] = key(
        "source", description="what the pruned checkpoint is saved in: source, the dtype the model is stored in "
        "(pruning removes layers and nothing else), whatever the strategy computed in; or a dtype, converting on "
        "purpose (recorded in the manifest)")
    sweep: SweepSpec = setting(SweepSpec(), description="how the iterative strategy's rounds are scored")
    generation: GenerationSpec = key(GenerationSpec())
    ray: RaySpec = setting(RaySpec())
    output_dir: str = setting()

    def strategies_used(self) -> list[str]:
        return [self.strategy] if self.strategy else []

    def resolve_identity(self, identity):
        # "source" is what every checkpoint written before the setting existed was meant to be
        if identity.get("output_dtype") == "source":
            identity = {k: v for k, v in identity.items() if k != "output_dtype"}
        return identity

    @field_validator("strategy")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None:
            check_strategies(name)
        return name

    @field_validator("test_tasks")
    @classmethod
    def _tasks_known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in TASKS:
                raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS.names())}")
        return names

    @model_validator(mode="after")
    def _what(self):
        if (self.layers is None) == (self.ratio is None):
            raise ValueError("give either ratio (with strategy) or layers")
        if self.ratio is not None:
            if self.strategy is None:
                raise ValueError(f"ratio needs a strategy ({', '.join(STRATEGIES.names())})")
            check_ratios([self.ratio])
            check_strategy_needs([self.strategy], self)
        return self


class CompareConfig(StrategyOptions):
    """`prunelab compare-strategies`: retention by strategy x ratio, with intervals."""

    kind: Literal["compare-strategies"] = setting("compare-strategies")
    name: str = setting()
    model: ModelSpec = key()
    tasks: list[TaskSpec] = key(min_length=1)
    # more strategies or ratios only add candidates to a results directory
    strategies: StrategyNames = extent(["block_influence", "angular", "reverse"], min_length=1)
    ratios: Ratios = extent([0.10, 0.15, 0.25], min_length=1)
    sweep: SweepSpec = setting(SweepSpec(), description="how candidates are scored and generated")
    generation: GenerationSpec = key(GenerationSpec())
    stats: StatsSpec = setting(StatsSpec(), description="how the report tests (adjustment, alpha, power, margin)")
    ray: RaySpec = setting(RaySpec())
    output_dir: str = setting()

    def strategies_used(self) -> list[str]:
        return list(self.strategies)

    @model_validator(mode="after")
    def _needs(self):
        check_unique(self.tasks)
        check_sweepable(self.tasks, self.generation, self.sweep)
        check_strategy_needs(self.strategies, self)
        return self


class SGRConfig(SGRSection):
    """`prunelab sgr`: the base model answers a prompt corpus (Self-Generated Responses)."""

    kind: Literal["sgr"] = setting("sgr")
    name: str = setting()
    model: ModelSpec = key()
    ray: RayCluster = setting(RayCluster())
    output_dir: str = setting()


class RecoverConfig(RecoverSection):
    """`prunelab recover`: heal a pruned model. sft: (Q)LoRA on an SGR corpus (or its original answers); kd: (Q)LoRA
    distilling the base model's logits; partial: the last layers, final norm and head trained fully; linear: each run
    of removed layers replaced by a least-squares linear map folded into the weights (no training)."""

    kind: Literal["recover"] = setting("recover")
    name: str = setting()
    method: RecoveryMethod = key("sft", description="a registered recovery method (prunelab.recovery.registry): "
                                                     "sft, kd, linear, partial")
    model: ModelSpec = key(description="the pruned checkpoint (from prunelab prune)")
    corpus: str = key(description="a `prunelab sgr` output directory")
    responses: Literal["sgr", "reference"] = key("sgr", description="sgr: the base model's answers; reference: the "
                                                                    "corpus's original answers (external data)")
    paired: bool = key(False, description="train only on prompts with both a kept SGR response and an original "
                                          "answer within max_length, so that the sgr and reference arms differ in "
                                          "their answers alone")
    ray: RayCluster = setting(RayCluster())
    output_dir: str = setting()

    @model_validator(mode="after")
    def _method(self):
        check_method(self.method, self)
        return self

    def methods_used(self) -> set[str]:
        return self._used({self.method})

    def resolve_identity(self, identity):
        identity = super().resolve_identity(identity)
        if identity.get("method") == "sft":
            del identity["method"]  # an sft run keeps the identity it had before there were other methods
        return identity


class CostConfig(CostMeasure):
    """`prunelab cost`: what a cut buys. The base model and pruned checkpoints measured on the same prompts and the
    same number of generated tokens: parameters, weight and KV-cache bytes, peak memory, prefill and decode
    throughput, time to first token; beside each, the speed-up the architecture allows."""

    kind: Literal["cost"] = setting("cost")
    name: str = setting()
    base_model: ModelSpec = key()
    models: list[ModelSpec] = extent([], description="pruned checkpoints (or any causal LMs sharing the base model's "
                                                     "tokenizer)")
    removed: dict[str, list[int]] = extent({}, description="label -> layers removed from the base model in memory "
                                                           "(no checkpoint written)")
    ray: RaySpec = setting(RaySpec(), description="the measurements run one at a time in a Ray task sized like one "
                                                  "of ray.actors (num_cpus, num_gpus, accelerator_type)")
    output_dir: str = setting()


__all__ = ["CompareConfig", "CostConfig", "EvalConfig", "PruneConfig", "RecoverConfig", "SGRConfig",
           "SweepConfig"]
