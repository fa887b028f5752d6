"""`prunelab compare-strategies`: retention by strategy x ratio on a task set, with confidence intervals.

Each (strategy, ratio) chooses its layers on calibration data (`selections.json`, written once and reused on a
rerun), then every distinct removed-layer set is evaluated by the sweep machinery: Ray actors that load the model
once, resume from the first removed layer's recorded input, and write results as they land (a stopped run resumes).
Two strategies that choose the same layers share one evaluation.
"""

import json
import logging
from pathlib import Path

import pandas as pd
from pydantic import Field, field_validator, model_validator

from prunelab.atomic import write_json, write_text
from prunelab.config import Frozen, GenerationSpec, ModelSpec, RaySpec, SweepSpec, TaskSpec
from prunelab.data.corpora import load_corpus, texts_hash
from prunelab.data.overlap import check_disjoint
from prunelab.report import GROUPS, write_report
from prunelab.strategies import STRATEGIES, count_to_remove, select_layers
from prunelab.sweep.plan import plan_sweep
from prunelab.sweep.run import compute
from prunelab.sweep.store import ResultsStore, candidate_name

log = logging.getLogger(__name__)


class CalibrationSpec(Frozen):
    source: str = Field(default="sharegpt", description="packaged corpus (sharegpt) or a hub dataset id with 'text'")
    samples: int = Field(default=64, ge=1)
    seed: int = 0
    max_length: int = Field(default=512, ge=8)


class CompareConfig(Frozen):
    name: str
    model: ModelSpec
    tasks: list[TaskSpec] = Field(min_length=1)
    strategies: list[str] = Field(default=["block_influence", "angular", "reverse"], min_length=1)
    ratios: list[float] = Field(default=[0.10, 0.15, 0.25], min_length=1)
    keep_last: bool = Field(default=False, description="reverse: keep the final layer")
    sweep_dir: str | None = Field(default=None, description="sweep_score: a finished sweep's output directory")
    sweep_tasks: list[str] | None = None
    selection: TaskSpec | None = Field(default=None, description="iterative: the task (and seeded split) each "
                                                                 "greedy round is scored on; disjoint from the tests")
    calibration: CalibrationSpec = CalibrationSpec()
    sweep: SweepSpec = SweepSpec()
    generation: GenerationSpec = GenerationSpec()
    ray: RaySpec = RaySpec()
    output_dir: str

    @field_validator("strategies")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; allowed: {', '.join(STRATEGIES)}")
        return names

    @model_validator(mode="after")
    def _selection(self):
        if "iterative" in self.strategies and self.selection is None:
            raise ValueError("strategy iterative needs `selection` (a task spec, e.g. {name: arithmetic, limit: 32, "
                             "seed: 7})")
        return self

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, ratios: list[float]) -> list[float]:
        bad = [r for r in ratios if not 0 < r < 1]
        if bad:
            raise ValueError(f"ratios {bad} are outside (0, 1): each is the fraction of layers to remove")
        return ratios

    def identity(self) -> dict:
        # what selections.json and the results depend on; more strategies or ratios only add candidates
        return {"model": self.model.model_dump(), "tasks": [t.identity() for t in self.tasks],
                "calibration": self.calibration.model_dump(), "keep_last": self.keep_last,
                "sweep_dir": self.sweep_dir, "sweep_tasks": self.sweep_tasks,
                "selection": self.selection.identity() if self.selection else None}


def choose(config: CompareConfig, root: Path) -> dict:
    """Every (strategy, ratio)'s layers, computed once and kept in selections.json."""
    path = root / "selections.json"
    wanted = {f"{s}@{r:g}" for s in config.strategies for r in config.ratios}
    saved = json.loads(path.read_text()) if path.exists() else {"selections": {}}
    if wanted <= set(saved["selections"]):
        return saved
    import torch
    from transformers import AutoConfig

    from prunelab.models import load_model, load_tokenizer, resolve_model_path

    m = config.model
    total = AutoConfig.from_pretrained(resolve_model_path(m.name), revision=m.revision).num_hidden_layers
    counts = {r: count_to_remove(r, total) for r in config.ratios}  # a ratio that rounds to 0 or all: error now
    model, texts = None, None
    tokenizer = load_tokenizer(m.name, revision=m.revision)
    if {"block_influence", "angular"} & set(config.strategies):  # only these read hidden states here
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer = load_model(m.name, dtype=m.dtype, device=device, revision=m.revision)
        cal = config.calibration
        texts = load_corpus(cal.source, limit=cal.samples, seed=cal.seed)
        check_disjoint(texts, [t.name for t in config.tasks])
        saved["data"] = {"calibration": cal.source, "samples": len(texts), "seed": cal.seed,
                         "calibration_sha256": texts_hash(texts), "max_length": cal.max_length}
    if "iterative" in config.strategies:
        greedy = _greedy(config, root, max(counts.values()), tokenizer)
        for ratio in config.ratios:
            order = greedy.details["order"][: counts[ratio]]
            saved["selections"][f"iterative@{ratio:g}"] = {
                "strategy": "iterative", "ratio": ratio, "removed": sorted(order),
                "scores": {str(l): greedy.scores[str(l)] for l in order}, "details": {"order": order}}
        saved["greedy_rounds"] = greedy.details["rounds"]
        saved.setdefault("data", {})["selection_sha256"] = greedy.details["selection_sha256"]
    cache = {}
    for strategy in config.strategies:
        for ratio in config.ratios:
            key = f"{strategy}@{ratio:g}"
            if key in saved["selections"]:
                continue
            sel = select_layers(strategy, counts[ratio], total, model=model, tokenizer=tokenizer, texts=texts,
                                keep_last=config.keep_last, sweep_dir=config.sweep_dir, tasks=config.sweep_tasks,
                                max_length=config.calibration.max_length, cache=cache)
            saved["selections"][key] = {"strategy": strategy, "ratio": ratio, "removed": sel.removed,
                                        "scores": sel.scores, "details": sel.details}
            log.info("%s removes %s", key, sel.removed)
    saved["num_layers"] = total
    write_json(path, saved)
    return saved


def _greedy(config: CompareConfig, root: Path, n: int, tokenizer):
    """The iterative strategy's path for the largest ratio (smaller ratios are its first rounds)."""
    from prunelab.config import SweepConfig, parse_config
    from prunelab.strategies.greedy import check_selection_disjoint, iterative_greedy

    spec = config.selection
    test_ids = {t.name: {it.id for it in t.build(config.generation).items(tokenizer)}
                for t in config.tasks if t.name == spec.name}
    check_selection_disjoint(spec.build(config.generation).items(tokenizer), test_ids, spec.name)
    greedy_config = parse_config({
        "name": f"{config.name}-greedy", "model": config.model.model_dump(), "tasks": [spec.model_dump()],
        "sweep": config.sweep.model_dump(), "generation": config.generation.model_dump(),
        "ray": config.ray.model_dump(), "output_dir": str(root / "greedy")}, cls=SweepConfig)
    return iterative_greedy(greedy_config, n, root / "greedy")


def compare_strategies(config: CompareConfig, address: str | None = None, progress: bool = True) -> dict[str, Path]:
    root = Path(config.output_dir)
    store = ResultsStore(root, model=config.model.name)
    store.claim(config.identity(), config.model_dump())
    selections = choose(config, root)["selections"]
    keys = [f"{s}@{r:g}" for s in config.strategies for r in config.ratios]
    sets = sorted({tuple(selections[k]["removed"]) for k in keys})
    plan = plan_sweep(config, store.done(), candidates=[(), *sets])
    compute(config, store, plan, address, progress)
    paths = write_report(root, plan.tasks, title=f"Strategies: {config.name} ({config.model.name})")
    if "csv" in paths:
        paths.update(_strategy_table(root, plan.tasks, {k: selections[k] for k in keys}, config.name))
    return paths


def _strategy_table(root: Path, tasks: dict, selections: dict, title: str) -> dict[str, Path]:
    retention = pd.read_csv(root / "retention.csv", index_col=0)
    columns = [t for t in tasks if t in retention] + [f"{g}_mean" for g in GROUPS if f"{g}_mean" in retention]
    rows = []
    for key, sel in selections.items():
        cand = candidate_name(tuple(sel["removed"]))
        row = {"strategy": sel["strategy"], "ratio": sel["ratio"], "removed": " ".join(map(str, sel["removed"]))}
        for c in columns:
            for suffix in ("", ":ci_low", ":ci_high", ":p_value"):
                row[c + suffix] = retention.loc[cand, c + suffix] if cand in retention.index else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["strategy", "ratio"])
    paths = {"strategies_csv": root / "strategies.csv", "strategies_markdown": root / "strategies.md"}
    write_text(paths["strategies_csv"], table.to_csv(index=False, float_format="%.4f"))
    md = table[["strategy", "ratio", "removed"]].copy()
    for c in columns:
        md[f"{c} retention"] = [f"{r:.3f} [{lo:.2f}, {hi:.2f}]" + (" *" if p < 0.05 else "")
                                for r, lo, hi, p in zip(table[c], table[f"{c}:ci_low"], table[f"{c}:ci_high"],
                                                        table[f"{c}:p_value"])]
    write_text(paths["strategies_markdown"],
                 f"# Retention by strategy and ratio: {title}\n\nRetention = pruned / base, 95% paired bootstrap "
                 "interval over items; * = differs from the base model (paired sign-flip test, p < 0.05).\n\n"
                 + md.to_markdown(index=False) + "\n")
    paths["strategies_plot"] = root / "strategies.png"
    _plot(table, columns, paths["strategies_plot"], title)
    return paths


def _plot(table: pd.DataFrame, columns: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.6), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for strategy, group in table.groupby("strategy"):
            low = group[column] - group[f"{column}:ci_low"]
            high = group[f"{column}:ci_high"] - group[column]
            ax.errorbar(group["ratio"], group[column], yerr=[low, high], marker="o", ms=4, capsize=3, label=strategy)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("fraction of layers removed")
    axes[0][0].set_ylabel("retention (pruned / base)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
