"""Strategies: scores equal a one-text-at-a-time reference; choices follow the scores; `prunelab prune` writes a
checkpoint equal to the in-memory pruned model, with a manifest; bad ratios, names and data are refused."""

import json
import math

import pytest
import tiny
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from prunelab.cli import main
from prunelab.config import StrategyOptions
from prunelab.errors import ConfigError, DataError
from prunelab.models.view import view
from prunelab.strategies import STRATEGIES, Context, count_to_remove
from prunelab.strategies.similarity import angular_distances, block_influence, calibration_pass, last_token_states
from prunelab.surgery import drop_layers

TEXTS = ["Question: What is (4 * 4) * 1? Answer: 16", "The quick brown fox jumps over the lazy dog.",
         "def add(a, b):\n    return a + b\n", "7 + 5 = 12", "A cat sat on the mat. " * 6,
         "Which gas do plants take in? Answer: carbon dioxide"]


def reference_states(model, tok, text):
    """Every layer's input and the last layer's raw output, one text, no padding, through output_hidden_states with
    the final norm removed (so the last hidden state is the last layer's output)."""
    decoder = view(model).decoder
    saved = decoder.norm
    decoder.norm = nn.Identity()
    try:
        with torch.no_grad():
            out = model(torch.tensor([tok(text)["input_ids"]]), output_hidden_states=True)
    finally:
        decoder.norm = saved
    return [h[0].float() for h in out.hidden_states]


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_block_influence_and_angular_equal_a_one_text_reference(family, tok):
    model = tiny.model(family, num_layers=6)
    states = [reference_states(model, tok, t) for t in TEXTS]
    cos_sum = torch.zeros(6)
    tokens = 0
    for s in states:
        cos_sum += torch.stack([nn.functional.cosine_similarity(s[i], s[i + 1], dim=-1).sum() for i in range(6)])
        tokens += s[0].shape[0]
    want_bi = (1 - cos_sum / tokens).tolist()
    assert block_influence(model, tok, TEXTS, batch_size=4) == pytest.approx(want_bi, abs=1e-5)

    last = torch.stack([torch.stack([h[-1] for h in s]) for s in states])  # [texts, layers + 1, hidden]
    got = last_token_states(model, tok, TEXTS, batch_size=4)
    for n in (1, 2, 3):
        want = [float(torch.arccos(nn.functional.cosine_similarity(last[:, l], last[:, l + n], dim=-1).clamp(-1, 1))
                      .mean()) / math.pi for l in range(6 - n + 1)]
        assert angular_distances(got, n) == pytest.approx(want, abs=1e-5)


def select_layers(strategy, n, num_layers, model=None, tokenizer=None, texts=None, **options):
    """A strategy through the registry, as prune and compare-strategies call it."""
    ctx = Context(num_layers, calibration=lambda: calibration_pass(model, tokenizer, texts))
    return STRATEGIES.load(strategy)(n, ctx, StrategyOptions(**options).settings_for(strategy))


def test_choices_follow_the_scores(tok):
    model = tiny.model("qwen2", num_layers=6)
    bi = select_layers("block_influence", 2, 6, model=model, tokenizer=tok, texts=TEXTS)
    lowest = sorted(range(6), key=lambda l: bi.scores[str(l)])[:2]
    assert bi.removed == sorted(lowest)
    ang = select_layers("angular", 3, 6, model=model, tokenizer=tok, texts=TEXTS)
    best = min(ang.scores, key=ang.scores.get)
    assert ang.removed == list(range(int(best.split("-")[0]), int(best.split("-")[0]) + 3))
    assert len(ang.scores) == 4  # blocks starting at 0..3
    assert select_layers("reverse", 2, 6).removed == [4, 5]
    assert select_layers("reverse", 2, 6, keep_last=True).removed == [3, 4]


def test_sweep_score_ranks_layers_by_retention(tmp_path):
    (tmp_path / "retention.csv").write_text(
        "candidate,arithmetic,arithmetic:ci_low,arc_easy,arc_easy:ci_low,classification_mean,classification_mean:ci_low\n"
        "base,1,1,1,1,1,1\n"
        "drop-0,0.1,0,0.5,0,0.3,0\ndrop-1,0.9,0,1.0,0,0.95,0\ndrop-2,0.95,0,0.2,0,0.6,0\ndrop-3,0.8,0,0.9,0,0.85,0\n")
    both = select_layers("sweep_score", 2, 4, sweep_dir=str(tmp_path))
    assert both.removed == [1, 3] and both.scores["1"] == pytest.approx(0.95)
    assert select_layers("sweep_score", 2, 4, sweep_dir=str(tmp_path), sweep_tasks=["arithmetic"]).removed == [1, 2]
    with pytest.raises(ConfigError, match="not in the sweep"):
        select_layers("sweep_score", 1, 4, sweep_dir=str(tmp_path), sweep_tasks=["piqa"])


def test_ratio_rules():
    assert count_to_remove(0.25, 24) == 6 and count_to_remove(0.1, 24) == 2
    for ratio, message in [(0.0, "outside"), (1.0, "outside"), (0.01, "rounds to 0"), (0.99, "rounds to all")]:
        with pytest.raises(ConfigError, match=message):
            count_to_remove(ratio, 24)


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir("llama")


def test_prune_writes_a_checkpoint_equal_to_the_in_memory_model(tiny_dir, tmp_path, tok, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--model", str(tiny_dir), "--strategy", "reverse", "--ratio", "0.5", "--keep-last",
                 "--out", str(out), "--dtype", "float32"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the line the command ends with
    assert summary == {"out": str(out), "strategy": "reverse", "removed_layers": [1, 2]}
    manifest = json.loads((out / "prunelab_manifest.json").read_text())
    assert manifest["removed_layers"] == [1, 2] and manifest["strategy"] == "reverse"
    assert manifest["base_num_hidden_layers"] == 4 and manifest["num_hidden_layers"] == 2
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    reference = drop_layers(AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval(), [1, 2])
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, reference(ids).logits, atol=1e-6)


def test_prune_with_packaged_calibration_records_the_data(tiny_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bi"
    monkeypatch.setenv("PRUNELAB_HEARTBEAT_S", "0")  # a line per update in a log
    assert main(["prune", "--model", str(tiny_dir), "--strategy", "block_influence", "--ratio", "0.25",
                 "--calibration-samples", "6", "--max-length", "48", "--out", str(out), "--dtype", "float32"]) == 0
    # the long steps show progress in a log as whole lines (no carriage-return bar): calibration texts, the export
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("calibration: 100%") and "6/6" in line for line in lines)
    assert any(line.startswith("export bi: 100%") for line in lines) and not any("\r" in line for line in lines)
    manifest = json.loads((out / "prunelab_manifest.json").read_text())
    assert manifest["data"]["calibration"] == "sharegpt" and len(manifest["data"]["calibration_sha256"]) == 64
    assert sorted(manifest["scores"]) == ["0", "1", "2", "3"] and len(manifest["removed_layers"]) == 1
    assert manifest["removed_layers"] == [int(min(manifest["scores"], key=manifest["scores"].get))]


def test_a_selection_split_overlapping_the_tests_is_drawn_from_the_items_they_do_not_hold(tok):
    from prunelab.config import TaskSpec
    from prunelab.tasks.held_out import selection_split

    tests = {it.id for it in TaskSpec(name="arithmetic").build().items(tok)}  # a task named alone: its whole split
    spec = TaskSpec(name="arithmetic", limit=32, seed=7)  # the README's iterative example
    own = [it.id for it in spec.build().items(tok)]
    assert set(own) & tests  # its own seeded sample overlaps the tests (it was refused before)
    task, items = selection_split(spec, tests, tok)
    ids = [it.id for it in items]
    assert len(set(ids)) == 32 and not set(ids) & tests
    assert ids == [it.id for it in task.items(tok)]  # deterministic
    assert task.primary_metric == spec.build().primary_metric
    # a sample that holds no test item is kept as it is: a selection accepted before keeps its items
    assert [it.id for it in selection_split(spec, tests - set(own), tok)[1]] == own


def test_prune_refuses_bad_input(tiny_dir, tmp_path, capsys):
    import datasets

    from prunelab.tasks import benchmark_rows

    base = ["prune", "--model", str(tiny_dir), "--out", str(tmp_path / "x"), "--dtype", "float32"]
    cases = [
        (["--strategy", "reverse", "--ratio", "1.5"], "outside (0, 1)"),
        (["--strategy", "reverse", "--ratio", "0.1"], "rounds to 0 layers"),
        (["--strategy", "reverse", "--ratio", "0.9"], "rounds to all 4"),
        (["--strategy", "shortgpt", "--ratio", "0.25"], "allowed: block_influence, angular, reverse, sweep_score, iterative"),
        (["--strategy", "sweep_score", "--ratio", "0.25", "--from-sweep", str(tmp_path)], "run `prunelab sweep` first"),
        (["--strategy", "iterative", "--ratio", "0.25"], "strategy iterative needs `selection`"),
        (["--strategy", "iterative", "--ratio", "0.25", "--selection-task", "arithmetic", "--selection-limit", "64",
          "--selection-seed", "1234", "--test-tasks", "arithmetic"], "every item is in the test sample"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err
    question = benchmark_rows("gsm8k")[5]["question"]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(
        [{"text": "Some notes.\n" + question}, {"text": "Other text entirely."}])}).save_to_disk(tmp_path / "leaky")
    args = base + ["--strategy", "block_influence", "--ratio", "0.25", "--calibration", str(tmp_path / "leaky"),
                   "--test-tasks", "gsm8k,arc_easy"]
    assert main(args) == 2
    assert "overlaps the test split of gsm8k" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_compare_strategies_on_ray_evaluates_each_choice_and_resumes(tiny_dir, tmp_path):
    import pandas as pd
    import ray
    import yaml
    from transformers import AutoTokenizer

    from prunelab.config import CompareConfig, parse_config
    from prunelab.execution.plan import plan_units
    from prunelab.models import inspect_model
    from prunelab.results import BASE, Candidate, ResultsStore
    from prunelab.scoring.engine import Scorer
    from prunelab.tasks import build_task

    out = tmp_path / "cmp"
    data = {"kind": "compare-strategies", "name": "tiny-cmp", "model": {"name": str(tiny_dir), "dtype": "float32"},
            "tasks": [{"name": "arithmetic", "limit": 6}],
            "strategies": ["block_influence", "angular", "reverse", "iterative"],
            "selection": {"name": "arithmetic", "limit": 5, "seed": 99},
            "ratios": [0.25, 0.5], "calibration": {"samples": 6, "max_length": 48},
            "ray": {"actors": {"num_actors": 2, "num_cpus": 1}}, "output_dir": str(out)}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        assert main(["compare-strategies", str(path), "--no-progress"]) == 0
        table = pd.read_csv(out / "strategies.csv")
        assert len(table) == 8 and set(table.strategy) == {"block_influence", "angular", "reverse", "iterative"}
        assert (out / "strategies.md").exists() and (out / "strategies.png").exists()
        reverse = table[(table.strategy == "reverse") & (table.ratio == 0.5)].iloc[0]
        assert reverse["removed"] == "2 3"

        # the stored scores of "layers 2 and 3 removed" equal plain scoring with them removed
        task = build_task("arithmetic", limit=6)
        items = task.items(AutoTokenizer.from_pretrained(tiny_dir))
        model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
        scores = Scorer(model).score([it.request for it in items], removed=(2, 3))
        want = {it.id: task.score_item(it, [s])["logprob"] for it, s in zip(items, scores)}
        df = ResultsStore(out).read().to_pandas()
        got = df[(df.candidate == "drop-2+3") & (df.metric == "logprob")].set_index("item_id")["value"]
        assert got.to_dict() == pytest.approx(want, abs=1e-4)

        # greedy round 1 removed the layer whose removal kept the most probe accuracy on the selection split
        selection_task = build_task("arithmetic", limit=5, seed=99)
        sel_items = selection_task.items(AutoTokenizer.from_pretrained(tiny_dir))
        acc = {}
        for layer in range(4):
            s = Scorer(model).score([it.request for it in sel_items], removed=(layer,))
            acc[layer] = sum(selection_task.score_item(it, [x])["acc"] for it, x in zip(sel_items, s)) / 5
        rounds = json.loads((out / "selections.json").read_text())["greedy_rounds"]
        assert rounds[0]["scores"] == pytest.approx({str(k): v for k, v in acc.items()})
        assert rounds[0]["chosen"] == max(acc, key=lambda l: (acc[l], l))
        iterative = table[(table.strategy == "iterative") & (table.ratio == 0.25)].iloc[0]
        assert iterative["removed"] == str(rounds[0]["chosen"])

        # a rerun reuses the selections and has nothing left to compute
        config = parse_config(data, cls=CompareConfig)
        selections = json.loads((out / "selections.json").read_text())["selections"]
        sets = sorted({tuple(s["removed"]) for s in selections.values()})
        tasks = {t.name: t.build() for t in config.tasks}
        plan = plan_units(tasks, inspect_model(config.model).tokenizer, [BASE, *map(Candidate, sets)],
                          ResultsStore(out).done(), batch_tokens=4096, generation_unit=16)
        assert plan.units == []
        assert main(["compare-strategies", str(path), "ratios=[0.25, 0.99]", "--no-progress"]) == 2  # all 4 layers
    finally:
        ray.shutdown()


def fake_sweep(root, test_ids: list[str], other_ids: list[str]):
    """A finished sweep of 4 layers on the arithmetic probe, written through the results store: layer 1 is harmless
    on `test_ids` and harmful on `other_ids`, layer 2 the reverse, so ranking on all items calls them even."""
    from prunelab.atomic import write_json
    from prunelab.report import write_report
    from prunelab.results import Candidate, ResultsStore

    store = ResultsStore(root, model="m")
    outcomes = {(): (1, 1), (0,): (1, 1), (1,): (1, 0), (2,): (0, 1), (3,): (1, 1)}  # (on test_ids, on other_ids)
    for removed, (on_test, on_other) in outcomes.items():
        store.write("arithmetic", Candidate(removed), [(i, {"acc": float(on_test)}) for i in test_ids]
                    + [(i, {"acc": float(on_other)}) for i in other_ids])
    write_json(root / "meta.json", {
        "stage": "sweep", "config": {"name": "s", "model": {"name": "m"},
                                     "tasks": [{"name": "arithmetic", "limit": 16, "seed": 1234}]},
        "tasks": {"arithmetic": {"kind": "classification", "label": "arithmetic", "primary_metric": "acc"}}})
    write_report(root)
    return root


def test_sweep_score_ranks_on_the_sweeps_items_outside_the_test_sample(tmp_path):
    tested, others = [f"t{i}" for i in range(8)], [f"h{i}" for i in range(8)]
    sweep = fake_sweep(tmp_path, tested, others)
    everything = select_layers("sweep_score", 1, 4, sweep_dir=str(sweep))
    assert everything.scores["1"] == everything.scores["2"] == pytest.approx(0.5)
    settings = StrategyOptions(sweep_dir=str(sweep)).settings_for("sweep_score")
    held_out = STRATEGIES.load("sweep_score")(1, Context(4, test_items={"arithmetic": set(tested)}), settings)
    assert held_out.scores["1"] == 0.0 and held_out.scores["2"] == 1.0 and held_out.removed == [0]
    assert held_out.details["held_out"] == {"arithmetic": {"items": 8, "left_out": 8}}
    with pytest.raises(DataError, match="every arithmetic item of the sweep .* is in the test sample of arithmetic"):
        STRATEGIES.load("sweep_score")(1, Context(4, test_items={"arithmetic": set(tested + others)}), settings)


def test_prune_refuses_to_rank_layers_on_its_test_items(tiny_dir, tmp_path, tok, capsys):
    from prunelab.tasks import build_task

    ids = [it.id for it in build_task("arithmetic", limit=16, seed=1234, num_fewshot=3).items(tok)]
    sweep = fake_sweep(tmp_path / "sweep", ids[:8], ids[8:])
    out = tmp_path / "pruned"
    args = ["prune", "--model", str(tiny_dir), "--strategy", "sweep_score", "--ratio", "0.25", "--from-sweep",
            str(sweep), "--out", str(out), "--dtype", "float32"]
    assert main(args + ["--test-tasks", "arithmetic"]) == 2  # named alone: its whole split, every sweep item in it
    assert "is in the test sample of arithmetic" in capsys.readouterr().err and not out.exists()
    assert main(args) == 0  # no test sample given: nothing to hold out
