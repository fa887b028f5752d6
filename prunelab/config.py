"""Experiment configs: frozen pydantic models loaded from YAML, with `a.b=value` overrides from the command line.

What to compute (model, tasks) is separate from how to run it (batch size, Ray actors): only the former decides
whether an existing results directory belongs to this experiment.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunelab.errors import ConfigError
from prunelab.tasks import GENERATIVE, TASK_NAMES, build_task


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
        if name not in TASK_NAMES:
            raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASK_NAMES)}")
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

    backend: Literal["hf", "vllm"] = Field(default="hf", description="vllm: exported checkpoints only, not sweeps")
    batch_size: int = Field(default=8, ge=1)
    sandbox_workers: int | None = Field(default=None, ge=1, description="programs run at once; one per core if unset")
    sandbox_timeout_s: float = Field(default=10.0, gt=0)
    sandbox_memory_mb: int = Field(default=1024, ge=64)


class SweepSpec(Frozen):
    layers: list[int] | None = Field(default=None, description="layers to ablate one at a time; all if unset")
    batch_tokens: int = Field(default=4096, ge=16, description="tokens per scoring unit (bounds the memory of recorded layer inputs)")
    generation_unit: int = Field(default=16, ge=1, description="items of a generative task per unit of work")


class ActorSpec(Frozen):
    num_actors: int = Field(default=2, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0, description="fractions share one GPU between actors")


class RaySpec(Frozen):
    address: str | None = Field(default=None, description="cluster to attach to; a local Ray starts if unset")
    actors: ActorSpec = ActorSpec()


class SweepConfig(Frozen):
    name: str
    model: ModelSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    sweep: SweepSpec = SweepSpec()
    generation: GenerationSpec = GenerationSpec()
    ray: RaySpec = RaySpec()
    output_dir: str

    @model_validator(mode="after")
    def _unique_tasks(self):
        names = [t.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"tasks repeated: {repeated}; list each task once")
        if self.generation.backend != "hf" and any(t.name in GENERATIVE for t in self.tasks):
            raise ValueError("generation.backend: a sweep generates with layers removed in memory, which only the hf "
                             "backend can do; use vllm with `prunelab eval` on exported checkpoints")
        return self

    def identity(self) -> dict[str, Any]:
        """What the results depend on; a results directory made for another identity is refused."""
        return {"model": self.model.model_dump(), "tasks": [t.identity() for t in self.tasks]}


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


def load_config(path: str | Path, overrides: list[str] = (), cls=SweepConfig):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    return parse_config(data, overrides, source=repr(str(path)), cls=cls)
