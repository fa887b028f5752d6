"""Every stage, once: its kind (the config's `kind:`), the module whose `run(config, runtime) -> Artifact` computes
it, the reader of what it writes (`prunelab.artifacts`), and its command line. The CLI's subcommands, `prunelab
submit`'s choices, the pipeline's stage runner and the Ray job entrypoints (`jobs/<stage>.py`) all come from here.

A new stage is a module with `run(config, runtime)` (and a config class in `prunelab.config.stages`) plus one line
below. Listing stages imports no stage module (they import torch): the CLI's help stays instant.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunelab.artifacts import (
    Artifact,
    CompareArtifact,
    CostArtifact,
    EvalArtifact,
    PipelineArtifact,
    PruneArtifact,
    RecoverArtifact,
    SGRArtifact,
    SweepArtifact,
)
from prunelab.errors import ConfigError
from prunelab.registry import load_target


def comma_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def comma_ints(text: str) -> list[int]:
    try:
        return [int(x) for x in comma_list(text)]
    except ValueError:
        raise ConfigError(f"{text!r} is not a comma-separated list of integers") from None


def named(text: str) -> list[dict]:
    """"a,b" -> [{name: a}, {name: b}]: a list of models or tasks named on the command line."""
    return [{"name": x} for x in comma_list(text)]


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Flag:
    """A command-line shortcut for config keys: `--out runs/x` sets output_dir. A key `a.*.b` sets b in every item
    of list a; with `where_present`, a key is set only where its section is (e.g. --dtype on base_model only
    when there is a base model)."""

    name: str
    keys: tuple[str, ...]
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag with no value that sets True
    where_present: bool = False


OUT = Flag("--out", ("output_dir",), "output_dir: where the artifact directory goes")
MODEL = Flag("--model", ("model.name",), "model.name: built-in name, HF directory (e.g. a pruned checkpoint) or hub id")
DTYPE = Flag("--dtype", ("model.dtype", "base_model.dtype"), "model.dtype (and base_model.dtype)", choices=DTYPES,
             where_present=True)


@dataclass(frozen=True)
class Input:
    """A config field a pipeline fills from an upstream stage's artifact. `read` ("module:function", called with the
    upstream's directory once it has run) where the value exists only then (cost's `removed`: compare's
    selections); None where it is the upstream's output path, set when the stage is planned (recover's corpus)."""

    field: str
    upstream: tuple[str, ...]  # the kinds of stage it comes from
    read: str | None = None

    def value(self, upstream_dir: Path) -> Any:
        return load_target(self.read)(upstream_dir)


@dataclass(frozen=True)
class ReportSection:
    """A part of the pipeline's report page that a stage's results make: `render` ("module:function") is called
    with (page, run: `prunelab.report.page.PipelineRun`) and returns the paper's findings it checks; `at` places it
    on the page (lower first). It is called whether or not the run has a stage of its kind (a finding it cannot
    check says so)."""

    at: int
    render: str

    def __call__(self, page, run) -> list:
        return load_target(self.render)(page, run)


@dataclass(frozen=True)
class StageEntry:
    kind: str
    module: str  # defines run(config, runtime) -> Artifact
    artifact: type[Artifact]
    help: str
    example: str  # a config under configs/, for the help text
    flags: tuple[Flag, ...] = ()
    name_from_out: bool = False  # a config without a name takes its output directory's
    # bumped when a change to the code this stage runs moves its numbers: the pipeline's key holds it, so stored
    # results of the older code are recomputed (prunelab.pipeline.code; a test holds it against the code)
    code_version: int = 1
    inputs: tuple[Input, ...] = ()  # fields a pipeline takes from upstream stages
    report: tuple[ReportSection, ...] = ()  # its parts of the pipeline's report page

    @property
    def config(self) -> type:
        from prunelab.config import STAGE_CONFIGS

        return STAGE_CONFIGS[self.kind]

    def run(self, config, runtime) -> Artifact:
        if not isinstance(config, self.config):
            raise ConfigError(f"stage {self.kind} runs a {self.config.__name__}, not a {type(config).__name__}")
        artifact = importlib.import_module(self.module).run(config, runtime)
        assert isinstance(artifact, self.artifact), f"{self.module}.run returned {artifact!r}"
        return artifact


class StageRegistry:
    def __init__(self, entries: list[StageEntry]):
        self.entries = {e.kind: e for e in entries}

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __iter__(self):
        return iter(self.entries.values())

    def __contains__(self, kind: object) -> bool:
        return kind in self.entries

    def get(self, kind: str) -> StageEntry:
        if kind not in self.entries:
            raise ConfigError(f"unknown stage {kind!r}; allowed: {', '.join(self.entries)}")
        return self.entries[kind]


STAGES = StageRegistry([
    StageEntry("sweep", "prunelab.stages.sweep", SweepArtifact,
               "single-layer ablation sweep with a retention report", "configs/sweep/default.yaml",
               report=(ReportSection(50, "prunelab.report.pruning_sections:sweep"),)),
    StageEntry("compare-strategies", "prunelab.stages.compare", CompareArtifact,
               "retention by strategy x ratio, with intervals, table and plot", "configs/compare/qwen-strategies.yaml",
               report=(ReportSection(10, "prunelab.report.pruning_sections:strategies"),
                       ReportSection(30, "prunelab.report.pruning_sections:pruned_outputs"))),
    StageEntry("eval", "prunelab.stages.evaluate", EvalArtifact,
               "score a model (and its retention against a base model) on tasks", "configs/eval/qwen-bi25.yaml",
               (MODEL, Flag("--base", ("base_model.name",), "base_model.name: the base model for retention (e.g. "
                                                           "the unpruned model)"),
                Flag("--tasks", ("tasks",), "tasks: comma-separated task names", named),
                Flag("--limit", ("tasks.*.limit",), "tasks.N.limit: items per task (a seeded sample)", int),
                OUT, Flag("--name", ("name",), "name (default: the output directory's name)"), DTYPE),
               name_from_out=True, inputs=(Input("model", ("prune", "recover")),),
               report=(ReportSection(40, "prunelab.report.recovery_sections:recovery"),)),
    StageEntry("prune", "prunelab.stages.prune", PruneArtifact,
               "choose layers with a strategy, remove them, export a checkpoint + manifest",
               "configs/prune/qwen-block-influence.yaml",
               (Flag("--model", ("model.name",), "model.name"),
                Flag("--strategy", ("strategy",), "strategy: block_influence, angular, reverse, sweep_score, "
                                                  "iterative"),
                Flag("--ratio", ("ratio",), "ratio: fraction of layers to remove, e.g. 0.25", float),
                Flag("--layers", ("layers",), "layers: remove exactly these layers instead (comma-separated)",
                     comma_ints),
                OUT,
                Flag("--calibration", ("calibration.source",), "calibration.source: packaged corpus (sharegpt) or "
                                                               "hub dataset id"),
                Flag("--calibration-samples", ("calibration.samples",), "calibration.samples", int),
                Flag("--max-length", ("calibration.max_length",), "calibration.max_length: tokens per calibration "
                                                                 "text", int),
                Flag("--keep-last", ("keep_last",), "keep_last: reverse keeps the final layer", switch=True),
                Flag("--from-sweep", ("sweep_dir",), "sweep_dir: a finished sweep's output directory (sweep_score)"),
                Flag("--sweep-tasks", ("sweep_tasks",), "sweep_tasks: tasks whose retention ranks layers (default: "
                                                        "all)", comma_list),
                Flag("--test-tasks", ("test_tasks",), "test_tasks: calibration/selection data overlapping them is "
                                                      "refused, selection items are drawn apart from them",
                     comma_list),
                Flag("--selection-task", ("selection",), "selection.name: the task each greedy round is scored on "
                                                         "(iterative); 32 items, seed 7 unless given",
                     lambda name: {"name": name, "limit": 32, "seed": 7}),
                Flag("--selection-limit", ("selection.limit",), "selection.limit", int, where_present=True),
                Flag("--selection-seed", ("selection.seed",), "selection.seed", int, where_present=True),
                DTYPE, Flag("--device", ("device",), "device: auto, cpu, cuda"),
                Flag("--output-dtype", ("output_dtype",), "output_dtype: what the checkpoint is saved in (source: "
                                                          "the dtype the model is stored in)",
                     choices=("source", "float32", "bfloat16", "float16")))),
    StageEntry("sgr", "prunelab.stages.sgr", SGRArtifact,
               "the base model answers a prompt corpus: Self-Generated Responses as parquet shards",
               "configs/sgr/qwen-sharegpt.yaml", (OUT,)),
    StageEntry("recover", "prunelab.stages.recover", RecoverArtifact,
               "fine-tune a pruned model on an SGR corpus with (Q)LoRA; adapter + merged model",
               "configs/recover/qwen-bi25-sgr.yaml", (OUT,),
               inputs=(Input("model", ("prune",)), Input("corpus", ("sgr",))),
               report=(ReportSection(60, "prunelab.report.recovery_sections:training"),)),
    StageEntry("pipeline", "prunelab.pipeline.run", PipelineArtifact,
               "one config from model to findings: base eval, sweep, strategies x ratios, SGR, recovery, evals, "
               "report; each stage reused when its inputs are unchanged", "configs/repro/qwen-coder.yaml", (OUT,)),
    StageEntry("cost", "prunelab.stages.cost", CostArtifact,
               "what a cut buys: parameters, memory, prefill/decode tokens/s and time to first token of the base "
               "model and pruned checkpoints, beside the architecture's bound", "configs/cost/qwen-bi25.yaml",
               (Flag("--base", ("base_model.name",), "base_model.name"),
                Flag("--models", ("models",), "models: comma-separated pruned checkpoints", named), OUT),
               name_from_out=True,
               inputs=(Input("removed", ("compare-strategies",), "prunelab.artifacts:selected_layers"),),
               report=(ReportSection(20, "prunelab.report.pruning_sections:cost"),)),
])

# commands that run as Ray jobs without being a stage (no config): `prunelab submit` takes them too
JOB_COMMANDS = ("report",)


def job_names() -> tuple[str, ...]:
    """What `prunelab submit` runs: each is jobs/<name with - as _>.py."""
    return (*STAGES.names(), *JOB_COMMANDS)


def job_file(name: str) -> Path:
    return Path("jobs") / f"{name.replace('-', '_')}.py"


__all__ = ["DTYPES", "Flag", "Input", "JOB_COMMANDS", "ReportSection", "STAGES", "StageEntry", "StageRegistry", "comma_ints", "comma_list",
           "job_file", "job_names", "named"]
