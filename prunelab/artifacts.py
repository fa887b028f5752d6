"""What each stage leaves in its directory: the file names (this is the one place they are spelled) and typed readers.
Every module that reads another stage's output reads it here, so a renamed file or a changed layout is one edit,
and a file that is needed but missing is an `ArtifactMissing` naming it and the command that writes it.

    SweepArtifact("runs/qwen-sweep").retention()           # DataFrame: candidates x metrics, with intervals
    CompareArtifact("runs/cmp").selections()["block_influence@0.25"].removed
    PipelineArtifact("runs/qwen-coder-repro").find(COMPARE_STAGE).dir
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunelab.errors import ResultsError
from prunelab.metadata import META_FILE, read_meta

RETENTION = "retention.csv"
RETENTION_MD = "retention.md"
LAYER_PLOT = "layer_sensitivity.png"
SELECTIONS = "selections.json"
STRATEGIES = "strategies.csv"
STRATEGIES_MD = "strategies.md"
STRATEGIES_PLOT = "strategies.png"
COST = "cost.csv"
TRAINING_CURVE = "training_curve.csv"
MERGED = "merged"
PIPELINE_SUMMARY = "pipeline.json"
SOURCES = "sources.json"  # a combined table (`prunelab report A B --out C`): label -> the eval directory of its row

# a pipeline's stages, by name (`prunelab.pipeline.plan` makes them, the report finds them)
BASE_EVAL = "eval-base"
SWEEP_STAGE, COMPARE_STAGE, COST_STAGE, SGR_STAGE = "sweep", "compare", "cost", "sgr"


def prune_stage(target: str) -> str:
    """The stage that writes the checkpoint of `target` ("strategy@ratio")."""
    return f"prune-{target}"


def recover_stage(target: str, arm: str) -> str:
    """A recovery of target's pruned checkpoint: `arm` is sft's responses (sgr, reference) or another method."""
    return f"recover-{target}-{arm}"


def eval_stage(target: str, arm: str | None = None) -> str:
    """The evaluation of target's pruned checkpoint, or (with `arm`) of one of its recoveries."""
    return f"eval-{target}" + (f"-{arm}" if arm else "")


class ArtifactMissing(ResultsError):
    """A file a reader needs is not in the artifact directory."""


class Artifact:
    """A stage's output directory. `written` is what the run that made it reported writing (paths by role)."""

    stage = ""  # the stage (config kind) that writes it
    command = ""  # the command that writes it, for error messages
    table = None  # the written file (by role) the command line prints after the paths

    def __init__(self, root: str | Path, written: dict[str, Path] | None = None):
        self.root = Path(root)
        self.written = dict(written or {})

    def file(self, name: str) -> Path:
        """ROOT/name, which must exist."""
        path = self.root / name
        if not path.exists():
            raise ArtifactMissing(f"{str(path)!r} is missing: run `{self.command}` first, a finished run writes it "
                                  f"(is {str(self.root)!r} a {self.stage} directory, and did its run end?)")
        return path

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def meta(self) -> dict:
        self.file(META_FILE)
        return read_meta(self.root)

    def tasks(self) -> dict[str, dict]:
        """task -> its description (label, kind, primary metric, ...), in the config's order."""
        return self.meta()["tasks"]

    def summary(self) -> str:
        """What the command line prints when the stage finishes: what it wrote, then its table."""
        return written_summary(self.written, self.table)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"


def written_summary(written: dict[str, Path], table: str | None = None) -> str:
    """Each written file by role, then the text of the one called `table` (a report's markdown)."""
    text = "\n".join(f"{role}: {path}" for role, path in written.items())
    if table in written:
        text += "\n" + Path(written[table]).read_text()
    return text


class RetentionArtifact(Artifact):
    """A results store with its retention report (sweep, eval, compare-strategies)."""

    table = "markdown"

    def retention(self):
        import pandas as pd

        return pd.read_csv(self.file(RETENTION), index_col=0)


class SweepArtifact(RetentionArtifact):
    stage, command = "sweep", "prunelab sweep"

    def layer_plot(self) -> Path:
        return self.file(LAYER_PLOT)


class EvalArtifact(RetentionArtifact):
    stage, command = "eval", "prunelab eval"


@dataclass(frozen=True)
class Chosen:
    """The layers one strategy chose at one ratio, with its per-layer scores and details."""

    strategy: str
    ratio: float
    removed: list[int]
    scores: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class CompareArtifact(RetentionArtifact):
    stage, command = "compare-strategies", "prunelab compare-strategies"
    table = "strategies_markdown"

    def saved_selections(self) -> dict:
        """selections.json as stored (empty before the first selection), for the stage that extends it."""
        path = self.root / SELECTIONS
        return json.loads(path.read_text()) if path.exists() else {"selections": {}}

    def selections(self) -> dict[str, Chosen]:
        """"strategy@ratio" -> what it chose."""
        raw = json.loads(self.file(SELECTIONS).read_text())["selections"]
        return {key: Chosen(s["strategy"], s["ratio"], list(s["removed"]), s.get("scores") or {},
                            s.get("details") or {}) for key, s in raw.items()}

    def selected_layers(self) -> dict[str, list[int]]:
        """"strategy@ratio" -> the layers it removes (what the pipeline's cost stage measures)."""
        return {key: chosen.removed for key, chosen in self.selections().items()}

    def strategies(self):
        import pandas as pd

        return pd.read_csv(self.file(STRATEGIES))

    def strategies_plot(self) -> Path:
        return self.file(STRATEGIES_PLOT)


class PruneArtifact(Artifact):
    stage, command = "prune", "prunelab prune"

    def removed_layers(self) -> list[int]:
        return list(self.meta()["removed_layers"])

    def summary(self) -> str:
        meta = self.meta()
        return json.dumps({"out": str(self.root), "strategy": meta["config"].get("strategy"),
                           "removed_layers": meta["removed_layers"]})


class CostArtifact(Artifact):
    stage, command = "cost", "prunelab cost"
    table = "markdown"

    def cost(self):
        import pandas as pd

        return pd.read_csv(self.file(COST))


class SGRArtifact(Artifact):
    stage, command = "sgr", "prunelab sgr"

    def counts(self) -> dict:
        return self.meta()["counts"]

    def summary(self) -> str:
        return f"{json.dumps(self.counts())}\ncorpus: {self.root}"


class RecoverArtifact(Artifact):
    stage, command = "recover", "prunelab recover"

    def training_curve(self):
        import pandas as pd

        return pd.read_csv(self.file(TRAINING_CURVE))

    def summary(self) -> str:
        return json.dumps({"out": str(self.root), "merged": str(self.root / MERGED), **self.meta()["training"]})


@dataclass(frozen=True)
class StageRecord:
    """One stage of a pipeline run, as pipeline.json records it."""

    name: str
    kind: str
    dir: Path
    status: str
    key: str
    seconds: float | str = ""
    role: dict | None = None  # what the stage is in the run (a target's evaluation, an arm's recovery: the planner's
    # `Stage.role`); None in a pipeline.json written before stages recorded it


class PipelineArtifact(Artifact):
    stage, command = "pipeline", "prunelab pipeline"

    def summary_data(self) -> dict:
        path = self.root / PIPELINE_SUMMARY
        if not path.exists():
            raise ArtifactMissing(f"{str(self.root)!r} has no {PIPELINE_SUMMARY}: not a `prunelab pipeline` output "
                                  "directory")
        return json.loads(path.read_text())

    def stages(self) -> list[StageRecord]:
        return [StageRecord(s["name"], s["kind"], Path(s["dir"]), s["status"], s["key"], s.get("seconds", ""),
                            s.get("role")) for s in self.summary_data()["stages"]]

    def find(self, name: str) -> StageRecord | None:
        """The stage called `name`, or None where this run has none (left out by its config, or not reached)."""
        return next((s for s in self.stages() if s.name == name), None)

    def summary(self) -> str:
        return written_summary(self.summary_data().get("report") or {})


def selected_layers(directory: str | Path) -> dict[str, list[int]]:
    """A compare-strategies directory's layers by "strategy@ratio" (a stage input: `stages.registry.Input`)."""
    return CompareArtifact(directory).selected_layers()


__all__ = ["BASE_EVAL", "COMPARE_STAGE", "COST_STAGE", "SGR_STAGE", "SWEEP_STAGE", "eval_stage", "selected_layers",
           "prune_stage", "recover_stage", "Artifact", "ArtifactMissing", "Chosen", "CompareArtifact", "CostArtifact", "EvalArtifact",
           "PipelineArtifact", "PruneArtifact", "RecoverArtifact", "RetentionArtifact", "SGRArtifact", "StageRecord",
           "SweepArtifact", "written_summary", "COST", "LAYER_PLOT", "MERGED", "PIPELINE_SUMMARY", "RETENTION",
           "RETENTION_MD", "SELECTIONS", "SOURCES", "STRATEGIES", "STRATEGIES_MD", "STRATEGIES_PLOT", "TRAINING_CURVE"]
