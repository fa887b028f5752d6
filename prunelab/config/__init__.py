"""Stage configs: frozen pydantic models loaded from YAML, with `a.b=value` overrides from the command line.

Every stage (sweep, eval, prune, compare-strategies, sgr, recover, cost, and the pipeline of them) is
`config -> artifact directory`. A config file says which stage it is for (`kind:`), and may start from another file
(`extends: ../base/paper-sweep.yaml`, a path relative to it). The package's rooms:

    fields.py    the `key` / `extent` / `setting` markers every field carries, and the identity built from them
    sections.py  the sections stage configs are made of (model, tasks, generation, Ray, SGR, training, cost...)
    stages.py    one config class per stage
    pipeline.py  the pipeline's config, whose sections are the stage configs' own section classes
    loading.py   YAML, `extends:`, overrides (`a.b=value`, `a.0.b`, `a.*.b` for every item) and error messages

Nothing here imports torch, transformers, ray or task code: names are checked against lazy registries.
"""

from prunelab.config.fields import EXTENT, KEY, SETTING, Frozen, extent, key, role_of, setting
from prunelab.config.loading import config_kind, format_errors, load_config, parse_config, read_config_file, set_key
from prunelab.config.pipeline import (
    PipelineConfig,
    PipelineCost,
    PipelinePrune,
    PipelineRecover,
    PipelineSGR,
    PipelineSweep,
    recovery_arms,
    seeded_arms,
    target_key,
)
from prunelab.config.sections import (
    GENERATION_FIELDS,
    LORA_TARGETS,
    ActorSpec,
    CalibrationSpec,
    CostMeasure,
    GenerationSpec,
    LoraSpec,
    ModelSpec,
    PromptsSpec,
    RayCluster,
    RaySpec,
    RecoverSection,
    ResponseSampling,
    SGREngineSpec,
    SGRSection,
    StatsSpec,
    StrategyOptions,
    SweepSpec,
    TaskSpec,
    TrainingSpec,
    TrainWorkersSpec,
)
from prunelab.config.stages import (
    CompareConfig,
    CostConfig,
    EvalConfig,
    PruneConfig,
    RecoverConfig,
    SGRConfig,
    SweepConfig,
)

STAGE_CONFIGS = {c.model_fields["kind"].default: c
                 for c in (SweepConfig, EvalConfig, PruneConfig, CompareConfig, SGRConfig, RecoverConfig,
                           PipelineConfig, CostConfig)}

__all__ = ["EXTENT", "GENERATION_FIELDS", "KEY", "LORA_TARGETS", "SETTING", "STAGE_CONFIGS", "ActorSpec",
           "CalibrationSpec", "CompareConfig", "CostConfig", "CostMeasure", "EvalConfig", "Frozen", "GenerationSpec",
           "LoraSpec", "ModelSpec", "PipelineConfig", "PipelineCost", "PipelinePrune", "PipelineRecover",
           "PipelineSGR", "PipelineSweep", "PromptsSpec", "PruneConfig", "RayCluster", "RaySpec", "RecoverConfig",
           "RecoverSection", "ResponseSampling", "SGRConfig", "SGREngineSpec", "SGRSection", "StatsSpec",
           "StrategyOptions", "SweepConfig", "SweepSpec", "TaskSpec", "TrainWorkersSpec", "TrainingSpec", "config_kind", "extent",
           "format_errors", "key", "load_config", "parse_config", "read_config_file", "role_of", "set_key", "setting",
           "recovery_arms", "seeded_arms", "target_key"]
