"""What a pipeline's output directory holds that its config no longer uses: stage directories of changed knobs
(their keys changed), directories set aside when a stage was recomputed, and their segment records.

    prunelab clean CONFIG [key=value ...]          # lists them with their sizes (a dry run)
    prunelab clean CONFIG [key=value ...] --yes    # removes them

Every stage the config plans (`plan.plan_pipeline`) is kept, whatever its state; nothing outside OUTPUT_DIR/stages
is touched.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from prunelab.paths import tree_bytes
from prunelab.pipeline.cache import segments_path
from prunelab.pipeline.plan import plan_pipeline


@dataclass(frozen=True)
class Unused:
    path: Path
    bytes: int


def unused(config) -> list[Unused]:
    """The entries of OUTPUT_DIR/stages that no planned stage of `config` (a PipelineConfig) is."""
    planned = {s.output_dir.resolve() for s in plan_pipeline(config)}
    kept = planned | {segments_path(d) for d in planned}
    root = Path(config.output_dir).resolve() / "stages"
    if not root.exists():
        return []
    return [Unused(p, tree_bytes(p)) for p in sorted(root.iterdir()) if p.resolve() not in kept]


def remove(entries: list[Unused]) -> None:
    for entry in entries:
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink()


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


__all__ = ["Unused", "human", "remove", "unused"]
