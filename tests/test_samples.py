"""The outputs behind every generative score: each stored generation carries what was scored from it (the extracted
answer, the assembled program, the sandbox's outcome and message, the error class), consistent with its metrics,
kept without duplicates through a resumed run; `prunelab samples` shows them beside the base model's; a run made
before samples were kept is a clear error."""

import shutil

import pandas as pd
import pytest

from prunelab.cli import main
from prunelab.errors import ResultsError
from prunelab.report.samples import samples
from prunelab.results import BASE, ResultsStore
from prunelab.tasks import build_task


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    base = tiny_model_dir("qwen2")
    pruned = root / "pruned"
    assert main(["drop", "--model", str(base), "--layers", "1", "--out", str(pruned), "--dtype", "float32"]) == 0
    out = root / "eval"
    args = ["eval", "--local", "--model", str(pruned), "--base", str(base), "--tasks", "gsm8k,humaneval", "--limit", "3",
            "--out", str(out), "--dtype", "float32", "--no-progress", "tasks.0.max_new_tokens=6",
            "tasks.1.max_new_tokens=6", "generation.batch_size=3"]
    assert main(args) == 0
    return out, args


def test_every_generation_carries_what_was_scored_from_it(run_dir):
    out, args = run_dir
    gens = ResultsStore(out).generations().to_pandas()
    rows = ResultsStore(out).read().to_pandas()
    metric = rows.set_index(["task", "candidate", "item_id", "metric"])["value"]
    code = build_task("humaneval", limit=3)
    refs = {f"humaneval-{r['id']}": {**r, "chat": False} for r in code.rows()[0]}
    for g in gens.itertuples():
        if g.task == "humaneval":
            assert g.scored == code.check(refs[g.item_id], g.output)[0]  # the program as assembled from the output
            passed = metric[(g.task, g.candidate, g.item_id, "pass@1")] == 1.0
            assert g.outcome.startswith("passed") == passed and g.error_class in (
                "passed", "truncated", "bracket", "syntax", "undefined_name", "timeout", "assertion", "other")
            assert metric[(g.task, g.candidate, g.item_id, f"err_{g.error_class}")] == 1.0 or g.error_class == "passed"
        else:
            assert g.outcome == ("correct" if metric[(g.task, g.candidate, g.item_id, "exact_match")] else "wrong")
            assert g.gold and isinstance(g.scored, str)

    # a resumed run rewrites a lost chunk in place: still one sample per (task, candidate, item)
    victim = sorted((out / "results" / "humaneval" / "model").glob("*.parquet"))[0]
    victim.unlink()
    assert main(args) == 0
    again = ResultsStore(out).generations().to_pandas()
    assert len(again) == len(gens) == 2 * 2 * 3
    assert not again.duplicated(["task", "candidate", "item_id"]).any()
    assert again["outcome"].notna().all()


def test_samples_sit_beside_the_base_models(run_dir, capsys):
    out, _ = run_dir
    table = samples(out, task="humaneval")
    assert len(table) == 3 and set(table["candidate"]) == {"model"}
    assert table["base_output"].notna().all() and table["base_outcome"].notna().all()
    flipped = samples(out, flipped=True)
    assert (flipped["base_score"] > flipped["score"]).all()
    assert main(["samples", str(out), "--task", "humaneval", "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "== humaneval humaneval-HumanEval/" in printed and "-- base output:" in printed and "3 samples (first 2 shown)" in printed
    assert main(["samples", str(out), "--task", "mbpp"]) == 2
    assert "task 'mbpp' has no generations" in capsys.readouterr().err


def test_a_combined_tables_directory_shows_each_rows_samples_under_its_label(run_dir, tmp_path, capsys):
    out, _ = run_dir
    other = tmp_path / "other"
    shutil.copytree(out, other)  # a second evaluation of the same base model
    combined = tmp_path / "cmp"
    assert main(["report", str(out), str(other), "--out", str(combined), "--labels", "pruned,again"]) == 0
    capsys.readouterr()
    table = samples(combined, task="humaneval")
    alone = samples(out, task="humaneval")
    assert sorted(set(table["candidate"])) == ["again", "pruned"] and len(table) == 2 * len(alone)
    mine = table[table["candidate"] == "pruned"].reset_index(drop=True)
    assert mine["output"].tolist() == alone["output"].tolist() and mine["base_output"].tolist() == alone[
        "base_output"].tolist()
    assert main(["samples", str(combined), "--candidate", "again", "--task", "humaneval"]) == 0
    assert "humaneval-HumanEval/" in capsys.readouterr().out
    assert main(["samples", str(combined), "--candidate", "model"]) == 2
    assert "its rows: pruned, again" in capsys.readouterr().err


def test_a_run_made_before_samples_were_kept_is_a_clear_error(run_dir, tmp_path, capsys):
    out, _ = run_dir
    old = tmp_path / "old"
    shutil.copytree(out, old)
    shutil.rmtree(old / "generations")
    store = ResultsStore(old)
    records = [{"item_id": "gsm8k-1", "prompt": "p", "output": "o", "finish_reason": "stop", "prompt_tokens": 1,
                "output_tokens": 1, "latency_s": 0.1, "reused_tokens": 0}]
    store.write_generations("gsm8k", BASE, records)  # what a run wrote before samples were kept
    with pytest.raises(ResultsError, match="made before prunelab kept them"):
        samples(old)
    assert main(["samples", str(old)]) == 2 and "no scored samples" in capsys.readouterr().err
    assert isinstance(pd.read_csv(old / "retention.csv", index_col=0), pd.DataFrame)  # nothing else touched


def test_base_rows_seeded_into_another_evaluation_keep_their_samples(run_dir, tmp_path):
    from prunelab.config import EvalConfig, parse_config
    from prunelab.pipeline.plan import Stage
    from prunelab.pipeline.run import seed_base_rows

    out, _ = run_dir
    source = ResultsStore(out).generations().to_pandas()
    meta = pd.read_json(out / "meta.json", typ="series")
    config = parse_config({"kind": "eval", "name": "again", "model": {"name": "other"},
                           "base_model": meta["config"]["base_model"], "tasks": meta["config"]["tasks"],
                           "output_dir": str(tmp_path / "again")}, cls=EvalConfig)
    first = parse_config({**config.model_dump(), "output_dir": str(out)}, cls=EvalConfig)
    assert seed_base_rows(Stage("again", "eval", config, (), ""), Stage("first", "eval", first, (), "")) == 6
    seeded = ResultsStore(tmp_path / "again").generations().to_pandas()
    want = source[source.candidate == "base"].drop(columns=["model"]).sort_values(["task", "item_id"])
    got = seeded.drop(columns=["model"]).sort_values(["task", "item_id"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))  # None stays None


def test_text_columns_merge_with_files_that_hold_missing_text_as_nan(tmp_path):
    import math

    store = ResultsStore(tmp_path / "store", model="m")
    row = {"prompt": "p", "output": "o", "finish_reason": "stop", "prompt_tokens": 1, "output_tokens": 1}
    store.write_generations("humaneval", BASE, [{"item_id": "a", **row, "gold": math.nan}])  # as pandas wrote it
    store.write_generations("gsm8k", BASE, [{"item_id": "b", **row, "gold": "42"}])
    table = store.generations().to_pydict()
    assert dict(zip(table["item_id"], table["gold"])) == {"a": None, "b": "42"}
