"""Stage configs: frozen pydantic models loaded from YAML, with `a.b=value` overrides from the command line.

Every stage (sweep, eval, prune, compare-strategies, sgr, recover) is `config -> artifact directory`. A config file says which
stage it is for (`kind:`), and may start from another file (`extends: ../base/paper-models.yaml`, a path relative to
it: mappings merge key by key, anything else is replaced). What to compute (model, tasks) is separate from how to
run it (batch size, Ray actors): only the former (`identity()`) decides whether an existing results directory
belongs to this experiment.

This module imports no torch, transformers, ray or task code: names are checked against lazy registries.
"""

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunelab.errors import ConfigError
from prunelab.generation import GENERATION_BACKENDS, IN_MEMORY
from prunelab.strategies.registry import STRATEGIES
from prunelab.tasks import GENERATIVE, TASKS, build_task


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(Frozen):
    name: str = Field(description="built-in name, local Hugging Face directory, or hub id")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    revision: str | None = None


GENERATION_FIELDS = ("chat", "max_new_tokens", "temperature", "top_p", "dataset")


class TaskSpec(Frozen):
    name: str
    limit: int | None = Field(default=None, ge=1, description="items to evaluate (seeded subsample); all if unset")
    seed: int = Field(default=1234, description="subsampling, few-shot choice and sampled decoding")
    num_fewshot: int = Field(default=0, ge=0)
    # generative tasks only
    chat: Literal["auto", "on", "off"] = Field(default="auto", description="chat template if the tokenizer has one")
    max_new_tokens: int | None = Field(default=None, ge=1, description="the task's default if unset")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy; the paper samples at 0.9")
    top_p: float = Field(default=1.0, gt=0, le=1)
    dataset: str | None = Field(default=None, description="hub id 'org/name[:config]' or a saved dataset directory "
                                                          "instead of the packaged copy")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS.names())}")
        return name

    @model_validator(mode="after")
    def _generation_fields(self):
        given = sorted(f for f in GENERATION_FIELDS if getattr(self, f) != type(self).model_fields[f].default)
        if given and self.name not in GENERATIVE:
            raise ValueError(f"{', '.join(given)} only apply to generative tasks ({', '.join(GENERATIVE)}); "
                             f"{self.name!r} is scored by log-likelihood")
        return self

    def identity(self) -> dict[str, Any]:
        """What results depend on (generation fields only for generative tasks, so classification results written
        before those fields existed still belong to the same experiment)."""
        return self.model_dump(exclude=None if self.name in GENERATIVE else set(GENERATION_FIELDS))

    def build(self, generation: "GenerationSpec | None" = None):
        """The task this spec describes."""
        options = {}
        if self.name in GENERATIVE:
            options = {f: getattr(self, f) for f in GENERATION_FIELDS}
            if self.name in ("humaneval", "mbpp") and generation is not None:
                options |= {"timeout_s": generation.sandbox_timeout_s, "memory_mb": generation.sandbox_memory_mb,
                            "workers": generation.sandbox_workers}
        return build_task(self.name, limit=self.limit, seed=self.seed, num_fewshot=self.num_fewshot, **options)


class GenerationSpec(Frozen):
    """How generative tasks run (not what they compute)."""

    backend: str = Field(default="hf", description="a generation backend (hf, vllm); vllm: exported checkpoints "
                                                   "only, not sweeps")
    batch_size: int = Field(default=8, ge=1)
    sandbox_workers: int | None = Field(default=None, ge=1, description="programs run at once; one per core if unset")
    sandbox_timeout_s: float = Field(default=10.0, gt=0)
    sandbox_memory_mb: int = Field(default=1024, ge=64)

    @field_validator("backend")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in GENERATION_BACKENDS:
            raise ValueError(f"unknown generation backend {name!r}; allowed: {', '.join(GENERATION_BACKENDS.names())}")
        return name


class SweepSpec(Frozen):
    layers: list[int] | None = Field(default=None, description="layers to ablate one at a time; all if unset")
    batch_tokens: int = Field(default=4096, ge=16, description="tokens per scoring unit (bounds the memory of recorded layer inputs)")
    generation_unit: int = Field(default=16, ge=1, description="items of a generative task per unit of work")
    generation_engine: Literal["multi-candidate", "per-candidate"] = Field(
        default="multi-candidate", description="multi-candidate: every candidate of a unit in one decode batch, "
        "reusing the base output up to each candidate's first differing token; per-candidate: each candidate "
        "generates on its own (the reference path)")
    generation_tokens: int = Field(default=32768, ge=16, description="multi-candidate engine: KV-cache tokens of one "
                                   "decode batch (each row counts its prompt + max_new_tokens)")


class ActorSpec(Frozen):
    num_actors: int = Field(default=2, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0, description="fractions share one GPU between actors")
    accelerator_type: str | None = Field(default=None, description="e.g. A100, H100: only nodes with this GPU")


class RaySpec(Frozen):
    address: str | None = Field(default=None, description="cluster to attach to; a local Ray starts if unset")
    actors: ActorSpec = ActorSpec()
    max_restarts: int = Field(default=3, ge=0, description="times Ray restarts a dead actor before a fresh one "
                                                           "replaces it")
    max_attempts: int = Field(default=3, ge=1, description="a unit whose candidate kills its worker this many "
                                                           "times is given up (the rest still finishes)")
    placement_timeout_s: float = Field(default=1800.0, gt=0, description="fail when work waits this long with no "
                                       "actor ready to take it (all lost, or waiting for an autoscaler that never "
                                       "delivers); requests no node can ever satisfy fail at once")


class CalibrationSpec(Frozen):
    source: str = Field(default="sharegpt", description="packaged corpus (sharegpt) or a hub dataset id with 'text'")
    samples: int = Field(default=64, ge=1)
    seed: int = 0
    max_length: int = Field(default=512, ge=8)


def _check_sweepable(tasks: list[TaskSpec], generation: GenerationSpec, sweep: SweepSpec) -> None:
    if not any(t.name in GENERATIVE for t in tasks) or GENERATION_BACKENDS.entry(generation.backend).kind == IN_MEMORY:
        return
    if generation.backend == "vllm" and sweep.generation_engine == "multi-candidate":
        return  # one engine whose layers are switched between candidates (prunelab.generation.vllm_layers)
    raise ValueError(f"generation.backend {generation.backend!r} with sweep.generation_engine "
                     f"{sweep.generation_engine!r}: a sweep removes layers from a loaded model, which the "
                     f"{', '.join(GENERATION_BACKENDS.names_of_kind(IN_MEMORY))} backend does, and vllm does with "
                     f"generation_engine multi-candidate; use {generation.backend} per checkpoint with `prunelab eval`")


def _unique(tasks: list[TaskSpec]) -> None:
    names = [t.name for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"tasks repeated: {repeated}; list each task once")


class SweepConfig(Frozen):
    """`prunelab sweep`: the base model and each single layer removed, on every task."""

    kind: Literal["sweep"] = "sweep"
    name: str
    model: ModelSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    sweep: SweepSpec = SweepSpec()
    generation: GenerationSpec = GenerationSpec()
    ray: RaySpec = RaySpec()
    output_dir: str

    @model_validator(mode="after")
    def _tasks(self):
        _unique(self.tasks)
        _check_sweepable(self.tasks, self.generation, self.sweep)
        return self

    def identity(self) -> dict[str, Any]:
        """What the results depend on; a results directory made for another identity is refused."""
        return {"model": self.model.model_dump(), "tasks": [t.identity() for t in self.tasks]}


class EvalConfig(Frozen):
    """`prunelab eval`: one model (pruned, recovered, any checkpoint) on tasks, with retention against a base."""

    kind: Literal["eval"] = "eval"
    name: str
    model: ModelSpec
    base_model: ModelSpec | None = Field(default=None, description="retention is model / base_model per task")
    tasks: list[TaskSpec] = Field(min_length=1)
    batch_tokens: int = Field(default=4096, ge=16)
    backend: Literal["prunelab", "lm-eval"] = Field(
        default="prunelab", description="classification scorer: prunelab's engine, or lm-eval's HF backend itself")
    generation: GenerationSpec = GenerationSpec()
    threads: int | None = Field(default=None, ge=1)
    output_dir: str

    @model_validator(mode="after")
    def _tasks(self):
        _unique(self.tasks)
        return self

    def identity(self):
        base = self.base_model.model_dump() if self.base_model else None
        return {"model": self.model.model_dump(), "base_model": base, "tasks": [t.identity() for t in self.tasks]}


def _check_ratios(ratios: list[float]) -> None:
    bad = [r for r in ratios if not 0 < r < 1]
    if bad:
        raise ValueError(f"ratio {bad if len(bad) > 1 else bad[0]} outside (0, 1): each is the fraction of layers "
                         "to remove")


class StrategyOptions(Frozen):
    """What the strategies read besides the model: the fields prune and compare-strategies share."""

    keep_last: bool = Field(default=False, description="reverse: keep the final layer")
    sweep_dir: str | None = Field(default=None, description="sweep_score: a finished sweep's output directory")
    sweep_tasks: list[str] | None = Field(default=None, description="sweep_score: tasks whose retention ranks "
                                                                    "layers (all if unset)")
    selection: TaskSpec | None = Field(default=None, description="iterative: the task (and seeded split) each "
                                                                 "greedy round is scored on; disjoint from the tests")
    calibration: CalibrationSpec = CalibrationSpec()


def _check_strategies(names: list[str] | str) -> None:
    """A list names its unknown entries; a single name (prune's `strategy`) is named alone."""
    unknown = [n for n in ([names] if isinstance(names, str) else names) if n not in STRATEGIES]
    if unknown:
        what = f"strategy {unknown[0]!r}" if isinstance(names, str) else f"strategies {unknown}"
        raise ValueError(f"unknown {what}; allowed: {', '.join(STRATEGIES.names())}")


def _checked_strategies(names: list[str]) -> list[str]:
    _check_strategies(names)
    return names


def _checked_ratios(ratios: list[float]) -> list[float]:
    _check_ratios(ratios)
    return ratios


StrategyNames = Annotated[list[str], AfterValidator(_checked_strategies)]
Ratios = Annotated[list[float], AfterValidator(_checked_ratios)]


def _check_strategy_needs(strategies: list[str], options: StrategyOptions) -> None:
    for name in strategies:
        needs = STRATEGIES.entry(name).kind
        if needs == "selection" and options.selection is None:
            raise ValueError(f"strategy {name} needs `selection` (a task spec, e.g. {{name: arithmetic, limit: 32, "
                             "seed: 7}): each greedy round is scored on it")
        if needs == "sweep" and not options.sweep_dir:
            raise ValueError(f"strategy {name} needs `sweep_dir`: a finished `prunelab sweep` output directory")


class PruneConfig(StrategyOptions):
    """`prunelab prune`: choose layers with a strategy (or take them as given), remove them, write a checkpoint."""

    kind: Literal["prune"] = "prune"
    name: str = ""
    model: ModelSpec
    strategy: str | None = Field(default=None, description=f"one of {', '.join(STRATEGIES.names())}")
    ratio: float | None = Field(default=None, description="fraction of layers to remove, e.g. 0.25")
    layers: list[int] | None = Field(default=None, description="remove exactly these layers instead")
    test_tasks: list[str] = Field(default=[], description="tasks you will evaluate on: calibration or selection "
                                                          "data overlapping them is refused")
    device: str = Field(default="auto", description="auto: cuda if available, else cpu")
    sweep: SweepSpec = SweepSpec()
    generation: GenerationSpec = GenerationSpec()
    ray: RaySpec = RaySpec()
    output_dir: str

    @field_validator("strategy")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None:
            _check_strategies(name)
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
            _check_ratios([self.ratio])
            _check_strategy_needs([self.strategy], self)
        return self

    def identity(self) -> dict[str, Any]:
        return self.model_dump(exclude={"kind", "name", "device", "sweep", "generation", "ray", "output_dir"})


class CompareConfig(StrategyOptions):
    """`prunelab compare-strategies`: retention by strategy x ratio, with intervals."""

    kind: Literal["compare-strategies"] = "compare-strategies"
    name: str
    model: ModelSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    strategies: StrategyNames = Field(default=["block_influence", "angular", "reverse"], min_length=1)
    ratios: Ratios = Field(default=[0.10, 0.15, 0.25], min_length=1)
    sweep: SweepSpec = SweepSpec()
    generation: GenerationSpec = GenerationSpec()
    ray: RaySpec = RaySpec()
    output_dir: str

    @model_validator(mode="after")
    def _needs(self):
        _unique(self.tasks)
        _check_sweepable(self.tasks, self.generation, self.sweep)
        _check_strategy_needs(self.strategies, self)
        return self

    def identity(self) -> dict:
        # what selections.json and the results depend on; more strategies or ratios only add candidates
        return {"model": self.model.model_dump(), "tasks": [t.identity() for t in self.tasks],
                "calibration": self.calibration.model_dump(), "keep_last": self.keep_last,
                "sweep_dir": self.sweep_dir, "sweep_tasks": self.sweep_tasks,
                "selection": self.selection.identity() if self.selection else None}


class PromptsSpec(Frozen):
    """Which prompts the base model answers (SGR) and how they are chosen."""

    source: str = Field(default="sharegpt", description="packaged corpus (sharegpt, mtbench, ifbench), a hub id "
                                                        "'org/name[:config]', a saved dataset directory or a "
                                                        ".jsonl/.parquet file")
    limit: int | None = Field(default=256, ge=1, description="prompts to keep (a seeded sample); all if unset")
    seed: int = 0
    max_prompt_tokens: int = Field(default=1024, ge=8, description="longer prompts (under the chat template) are "
                                                                   "left out")
    exclude_tasks: list[str] = Field(default=list(TASKS.names()), description="prompts containing a test item of "
                                                                              "these tasks are left out")

    @field_validator("exclude_tasks")
    @classmethod
    def _tasks_known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; allowed: {', '.join(TASKS.names())}")
        return names


class ResponseSampling(Frozen):
    max_new_tokens: int = Field(default=1024, ge=1, description="responses that reach it are truncated, and dropped")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy")
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = Field(default=0, description="sampled decoding: each row's seed derives from it and the row's id")


class SGREngineSpec(Frozen):
    """How responses are generated (not what they are)."""

    backend: Literal["hf", "vllm"] = Field(default="hf", description="hf: transformers generate (CPU or GPU); "
                                                                     "vllm: Ray Data LLM with vLLM engines (GPU)")
    replicas: int = Field(default=1, ge=1, description="generator actors (hf) or engine replicas (vllm): a fixed "
                                                       "pool")
    batch_size: int = Field(default=8, ge=1, description="prompts per generate call (hf) / per Ray Data batch")
    num_cpus: float = Field(default=1.0, gt=0, description="per hf actor")
    num_gpus: float = Field(default=0.0, ge=0, description="per hf actor (vllm engines take one GPU each)")
    accelerator_type: str | None = Field(default=None, description="e.g. A100, H100: where vLLM engines run")
    engine_kwargs: dict[str, Any] = Field(default={}, description="vllm: extra vllm.AsyncEngineArgs "
                                                                  "(gpu_memory_utilization, max_model_len, ...)")
    shard_size: int = Field(default=64, ge=1, description="responses per parquet shard (the unit of resumption)")


class SGRConfig(Frozen):
    """`prunelab sgr`: the base model answers a prompt corpus (Self-Generated Responses)."""

    kind: Literal["sgr"] = "sgr"
    name: str
    model: ModelSpec
    chat_template: str = Field(default="auto", description="auto: the tokenizer's; plain: prunelab's '### User: / "
                                                           "### Assistant:' template (for base models without one); "
                                                           "or a path to a Jinja template file")
    prompts: PromptsSpec = PromptsSpec()
    sampling: ResponseSampling = ResponseSampling()
    engine: SGREngineSpec = SGREngineSpec()
    ray_address: str | None = Field(default=None, description="cluster to attach to; a local Ray starts if unset")
    output_dir: str

    def identity(self) -> dict[str, Any]:
        # the shard size decides which prompts share a file, so a resumed run must keep it
        return {"model": self.model.model_dump(), "chat_template": self.chat_template,
                "prompts": self.prompts.model_dump(), "sampling": self.sampling.model_dump(),
                "shard_size": self.engine.shard_size}


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSpec(Frozen):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default=LORA_TARGETS, min_length=1)


class TrainingSpec(Frozen):
    """The paper's defaults: lr 2e-4, effective batch 8, max length 8192, one epoch, warmup then constant."""

    learning_rate: float = Field(default=2e-4, gt=0)
    batch_size: int = Field(default=8, ge=1, description="effective batch: per-device batch x workers x "
                                                         "gradient accumulation")
    per_device_batch_size: int = Field(default=2, ge=1)
    max_length: int = Field(default=8192, ge=16, description="longer examples are left out, never truncated")
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many optimizer steps")
    warmup_steps: float = Field(default=0.03, ge=0, description="below 1: a fraction of the steps")
    save_steps: int = Field(default=50, ge=1, description="checkpoint every this many steps (resumption)")
    gradient_checkpointing: bool = True
    seed: int = 0


class TrainWorkersSpec(Frozen):
    num_workers: int = Field(default=1, ge=0, description="Ray Train workers (data parallel); 0 = in the driver")
    use_gpu: bool | None = Field(default=None, description="one GPU per worker; auto: if the cluster has GPUs")
    cpus_per_worker: float = Field(default=1.0, gt=0)
    accelerator_type: str | None = None
    max_failures: int = Field(default=2, ge=0, description="worker-group restarts from the last checkpoint")
    storage_path: str | None = Field(default=None, description="where Ray Train keeps checkpoints (shared storage "
                                                               "on a multi-node cluster); <output_dir>/train if unset")


class RecoverConfig(Frozen):
    """`prunelab recover`: fine-tune a pruned model on an SGR corpus (or its original answers) with (Q)LoRA."""

    kind: Literal["recover"] = "recover"
    name: str
    model: ModelSpec = Field(description="the pruned checkpoint (from prunelab prune)")
    corpus: str = Field(description="a `prunelab sgr` output directory")
    responses: Literal["sgr", "reference"] = Field(default="sgr", description="sgr: the base model's answers; "
                                                   "reference: the corpus's original answers (external data)")
    paired: bool = Field(default=False, description="train only on prompts with both a kept SGR response and an "
                                                    "original answer within max_length, so that the sgr and "
                                                    "reference arms differ in their answers alone")
    quantization: Literal["auto", "nf4", "none"] = Field(default="auto", description="auto: QLoRA (nf4) on GPU, "
                                                                                     "LoRA on CPU")
    lora: LoraSpec = LoraSpec()
    training: TrainingSpec = TrainingSpec()
    workers: TrainWorkersSpec = TrainWorkersSpec()
    ray_address: str | None = None
    output_dir: str

    def identity(self) -> dict[str, Any]:
        return {"model": self.model.model_dump(), "corpus": self.corpus, "responses": self.responses,
                "paired": self.paired, "quantization": self.quantization, "lora": self.lora.model_dump(),
                "training": self.training.model_dump()}


class PipelineSweep(Frozen):
    """The pipeline's single-layer sweep (the paper's Figure 1 and the arithmetic probe per layer)."""

    tasks: list[TaskSpec] | None = Field(default=None, description="default: the pipeline's tasks")
    sweep: SweepSpec = SweepSpec()


class PipelinePrune(StrategyOptions):
    """Strategies x ratios (compare-strategies, the paper's Table 1), and the checkpoints recovery starts from."""

    strategies: StrategyNames = Field(default=["block_influence"], min_length=1)
    ratios: Ratios = Field(default=[0.25], min_length=1)
    sweep: SweepSpec = SweepSpec()


class PipelineSGR(Frozen):
    chat_template: str = "auto"
    prompts: PromptsSpec = PromptsSpec()
    sampling: ResponseSampling = ResponseSampling()
    engine: SGREngineSpec = SGREngineSpec()


class PipelineRecover(Frozen):
    """Which pruned models are recovered (`strategy@ratio` of the prune section), on which responses."""

    targets: list[str] = Field(default=["block_influence@0.25"], min_length=1)
    responses: list[Literal["sgr", "reference"]] = Field(default=["sgr", "reference"], min_length=1)
    paired: bool = Field(default=True, description="when both arms are trained, both train on the same prompts "
                                                   "(those with a kept SGR response and an original answer that "
                                                   "fit), so they differ in their answers alone")
    quantization: Literal["auto", "nf4", "none"] = "auto"
    lora: LoraSpec = LoraSpec()
    training: TrainingSpec = TrainingSpec()
    workers: TrainWorkersSpec = TrainWorkersSpec()


def target_key(strategy: str, ratio: float) -> str:
    return f"{strategy}@{ratio:g}"


CostBackend = Literal["transformers", "vllm"]


class PipelineCost(Frozen):
    """The cost of every strategy x ratio's pruned model against the base (prunelab cost, layers removed in memory)."""

    prompt_tokens: int = Field(default=128, ge=2)
    new_tokens: int = Field(default=32, ge=2)
    batch_size: int = Field(default=8, ge=1)
    warmup: int = Field(default=1, ge=0)
    runs: int = Field(default=3, ge=1)
    prompts: str = "sharegpt"
    threads: int | None = Field(default=None, ge=1)
    backend: CostBackend = "transformers"
    engine_kwargs: dict[str, Any] = {}


class PipelineConfig(Frozen):
    """`prunelab pipeline`: one config from model to findings. Every stage is an artifact directory keyed by a hash of
    its inputs, so a rerun computes only what changed (prunelab.pipeline)."""

    kind: Literal["pipeline"] = "pipeline"
    name: str
    model: ModelSpec
    tasks: list[TaskSpec] = Field(min_length=1, description="evaluated on the base, pruned and recovered models")
    generation: GenerationSpec = GenerationSpec()
    sweep: PipelineSweep | None = PipelineSweep()
    prune: PipelinePrune = PipelinePrune()
    sgr: PipelineSGR | None = PipelineSGR()
    recover: PipelineRecover | None = PipelineRecover()
    cost: PipelineCost | None = None
    ray: RaySpec = RaySpec()
    output_dir: str

    @model_validator(mode="after")
    def _inputs(self):
        _unique(self.tasks)
        _check_sweepable(self.tasks, self.generation, self.prune.sweep)
        _check_strategy_needs(self.prune.strategies, self.prune)
        if self.sweep is not None:
            _unique(self.sweep.tasks or self.tasks)
            _check_sweepable(self.sweep.tasks or self.tasks, self.generation, self.sweep.sweep)
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

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"kind", "name", "ray", "output_dir"})


class CostConfig(Frozen):
    """`prunelab cost`: what a cut buys. The base model and pruned checkpoints measured on the same prompts and the
    same number of generated tokens: parameters, weight and KV-cache bytes, peak memory, prefill and decode
    throughput, time to first token; beside each, the speed-up the architecture allows."""

    kind: Literal["cost"] = "cost"
    name: str
    base_model: ModelSpec
    models: list[ModelSpec] = Field(default=[], description="pruned checkpoints (or any causal LMs sharing the base "
                                                            "model's tokenizer)")
    removed: dict[str, list[int]] = Field(default={}, description="label -> layers removed from the base model in "
                                                                  "memory (no checkpoint written)")
    prompt_tokens: int = Field(default=256, ge=2)
    new_tokens: int = Field(default=64, ge=2, description="generated by every model, exactly (no early stop)")
    batch_size: int = Field(default=8, ge=1, description="the batched setting (batch 1 is always measured)")
    warmup: int = Field(default=1, ge=0)
    runs: int = Field(default=3, ge=1)
    prompts: str = Field(default="sharegpt", description="where the prompt texts come from: a packaged corpus")
    device: str = Field(default="auto", description="auto: cuda if available, else cpu")
    threads: int | None = Field(default=None, ge=1)
    backend: CostBackend = Field(default="transformers", description="transformers: generate in PyTorch (CPU or "
                                 "GPU); vllm: one vLLM engine per checkpoint, offline batch (removed: variants are "
                                 "exported as checkpoints first)")
    engine_kwargs: dict[str, Any] = Field(default={}, description="vllm: extra vllm.LLM arguments (e.g. "
                                          "gpu_memory_utilization, enforce_eager, kv_cache_memory_bytes)")
    output_dir: str

    @model_validator(mode="after")
    def _engine_kwargs(self):
        if self.engine_kwargs and self.backend != "vllm":
            raise ValueError(f"engine_kwargs are vLLM's; backend is {self.backend!r}")
        taken = {"model", "dtype", "max_model_len", "seed", "enable_prefix_caching", "disable_log_stats"} \
            & set(self.engine_kwargs)
        if taken:
            raise ValueError(f"engine_kwargs {sorted(taken)} are set by prunelab cost (the checkpoint, its dtype, "
                             "the workload's length, seed 0, no prefix cache so that every run prefills, per-request "
                             "timestamps on)")
        return self

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"kind", "name", "models", "removed", "output_dir"})


STAGE_CONFIGS = {c.model_fields["kind"].default: c
                 for c in (SweepConfig, EvalConfig, PruneConfig, CompareConfig, SGRConfig, RecoverConfig,
                           PipelineConfig, CostConfig)}


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form a.b=value")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from exc
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {override!r}: {'.'.join(parts[:i + 1])} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:i])} is a value, not a section")


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed)"
        elif err["type"] == "literal_error":
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  {where}: {msg}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def parse_config(data: Any, overrides: list[str] = (), source: str = "<dict>", cls=SweepConfig):
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(data).__name__}")
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for override in overrides:
        _apply_override(data, override)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str | Path, _seen: tuple = ()) -> dict:
    """A config file's mapping, with what it `extends` merged in."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.resolve() in _seen:
        raise ConfigError(f"config file {str(path)!r} extends itself (through {', '.join(map(str, _seen))})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {str(path)!r}: the top level must be a mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"invalid config {str(path)!r}: extends must be a path to another config file")
    return _merge(read_config_file(path.parent / parent, (*_seen, path.resolve())), data)


def config_kind(data: dict, source: str) -> str:
    kind = data.get("kind")
    if kind not in STAGE_CONFIGS:
        raise ConfigError(f"invalid config {source}: kind is {kind!r}; allowed: {', '.join(STAGE_CONFIGS)} (the "
                          "stage the file is for)")
    return kind


def load_config(path: str | Path, overrides: list[str] = (), cls=None, data: dict | None = None):
    """A stage config from a YAML file (its `kind` picks the class; `cls`, if given, must match it)."""
    data = read_config_file(path) if data is None else data
    source = repr(str(path))
    if cls is not None and "kind" not in data:
        data = {**data, "kind": cls.model_fields["kind"].default}
    kind = config_kind(data, source)
    if cls is not None and STAGE_CONFIGS[kind] is not cls:
        wanted = cls.model_fields["kind"].default
        raise ConfigError(f"config {source} is a {kind} config (kind: {kind}); this command needs kind: {wanted}")
    return parse_config(data, overrides, source=source, cls=STAGE_CONFIGS[kind])
