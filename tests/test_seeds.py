"""Recovery trained with several seeds: the pipeline plans one run per seed (the first keeping today's stage), and
the report averages a method over its runs item by item, with the spread between runs and an interval over seeds
and items."""

import numpy as np
import pandas as pd
import pytest

from prunelab.atomic import write_json
from prunelab.config import load_config
from prunelab.pipeline.plan import plan_pipeline
from prunelab.report import combine_evals
from prunelab.results import Candidate, ResultsStore
from prunelab.stats import retention_ci

TASKS = {"gsm8k": {"kind": "generative", "label": "gsm8k", "primary_metric": "exact_match"},
         "arc_easy": {"kind": "classification", "label": "ARC-Easy", "primary_metric": "acc", "floor": 0.25}}


def eval_dir(root, values: dict[str, np.ndarray], base: dict[str, np.ndarray] | None = None):
    """A finished `prunelab eval` directory: the model's (and the base model's) per-item 0/1 values."""
    store = ResultsStore(root, model=f"checkpoint of {root.name}")  # each run its own model, as in a pipeline
    for candidate, per_task in [(Candidate((), "model"), values), *([(Candidate(()), base)] if base else [])]:
        for task, v in per_task.items():
            store.write(task, candidate, [(f"{task}-{i}", {TASKS[task]["primary_metric"]: float(x)})
                                          for i, x in enumerate(v)])
    write_json(root / "meta.json", {"stage": "eval", "tasks": TASKS, "config": {
        "name": root.name, "model": {"name": str(root)}, "base_model": {"name": "base"}}})
    return root


def test_a_seeded_method_is_its_runs_mean_with_their_spread(tmp_path):
    rng = np.random.default_rng(0)
    base = {t: (rng.random(48) < 0.7).astype(float) for t in TASKS}
    pruned = {t: v * (rng.random(48) > 0.6) for t, v in base.items()}
    runs = [{t: np.maximum(p, base[t] * (rng.random(48) < share)) for t, p in pruned.items()}
            for share in (0.2, 0.5, 0.8)]  # three seeds that win back different shares
    dirs = [eval_dir(tmp_path / "pruned", pruned, base)] + [eval_dir(tmp_path / f"sft{i}", r) for i, r in
                                                             enumerate(runs)]
    labels = ["pruned", "+ SFT", "+ SFT [seed 1]", "+ SFT [seed 2]"]
    seeds = {"+ SFT": [("+ SFT", 0), ("+ SFT [seed 1]", 1), ("+ SFT [seed 2]", 2)]}
    paths = combine_evals(dirs, tmp_path / "out", labels, references=["pruned"], seeds=seeds)
    table = pd.read_csv(paths["csv"], index_col=0)
    assert list(table.index) == ["base", "pruned", "+ SFT", "+ SFT seed 0", "+ SFT seed 1", "+ SFT seed 2"]
    mean_run = np.mean([r["gsm8k"] for r in runs], axis=0)
    assert table.loc["+ SFT", "gsm8k"] == pytest.approx(retention_ci(base["gsm8k"], mean_run)[0], abs=1e-4)
    for i, r in enumerate(runs):
        assert table.loc[f"+ SFT seed {i}", "gsm8k"] == pytest.approx(r["gsm8k"].mean() / base["gsm8k"].mean(), abs=1e-4)
    spread = pd.read_csv(paths["seeds"]).iloc[0]
    each = [table.loc[f"+ SFT seed {i}", "generative_mean"] for i in range(3)]
    assert spread["generative_min"] == pytest.approx(min(each), abs=1e-4) and spread["generative_max"] == pytest.approx(max(each), abs=1e-4)
    # the runs differ, so an interval over seeds and items is wider than the items-only one of the mean
    width = spread["generative_mean:ci_high"] - spread["generative_mean:ci_low"]
    assert width > table.loc["+ SFT", "generative_mean:ci_high"] - table.loc["+ SFT", "generative_mean:ci_low"]
    against = pd.read_csv(paths["against"])
    assert set(against["model"]) == {"+ SFT"}  # the method against the pruned model, not each run


def test_seeds_add_runs_and_keep_every_existing_stage():
    one = {s.name: s.key for s in plan_pipeline(load_config("configs/repro/qwen-coder-recovery.yaml"))}
    three = {s.name: s.key for s in plan_pipeline(load_config("configs/repro/qwen-coder-recovery.yaml",
                                                              ["recover.seeds=[0, 1, 2]"]))}
    assert set(one.items()) <= set(three.items())  # seed 0 is training.seed: every stage as it was
    added = sorted(set(three) - set(one))
    assert all("-seed1" in n or "-seed2" in n for n in added)
    assert not any("linear-seed" in n for n in added)  # linear alone fits a least-squares map: no seed
    assert {n for n in added if n.startswith("recover-")} == {
        f"recover-block_influence@{r}-{arm}-seed{s}" for r in ("0.08", "0.25") for arm in ("sgr", "kd", "partial")
        for s in (1, 2)}
