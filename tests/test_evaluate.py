"""`prunelab drop` then `prunelab eval`: the exported checkpoint scores as the in-memory pruned model, with retention."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import tiny
from transformers import AutoTokenizer

from prunelab.cli import main
from prunelab.report.page import write_pipeline_report
from prunelab.results import ResultsStore
from prunelab.scoring.engine import Scorer
from prunelab.tasks import build_task


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir("qwen2")


def test_drop_then_eval_against_base(tiny_dir, tmp_path, capsys):
    pruned = tmp_path / "pruned"
    assert main(["drop", "--model", str(tiny_dir), "--layers", "1,2", "--out", str(pruned), "--dtype", "float32"]) == 0
    out = tmp_path / "eval"
    args = ["eval", "--local", "--model", str(pruned), "--base", str(tiny_dir), "--tasks", "arithmetic", "--limit", "8",
            "--out", str(out), "--dtype", "float32", "--no-progress"]
    assert main(args) == 0
    assert "arithmetic retention" in capsys.readouterr().out

    df = ResultsStore(out).read().to_pandas()
    got = df[(df.candidate == "model") & (df.metric == "logprob")].set_index("item_id")["value"]
    task = build_task("arithmetic", limit=8)
    # the checkpoint's own tokenizer (AutoTokenizer may pick a family-specific class for a saved directory)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    assert [it.request for it in task.items(AutoTokenizer.from_pretrained(pruned))] == \
        [it.request for it in task.items(tok)]
    items = task.items(tok)
    base_model = tiny.model("qwen2", 4)
    scores = Scorer(base_model).score([it.request for it in items], removed=(1, 2))
    want = {it.id: task.score_item(it, [s])["logprob"] for it, s in zip(items, scores)}
    assert got.to_dict() == pytest.approx(want, abs=1e-4)

    retention = pd.read_csv(out / "retention.csv", index_col=0)
    assert set(retention.index) == {"base", "model"}
    assert {"arithmetic", "arithmetic:ci_low", "arithmetic:ci_high", "arithmetic:p_value"} <= set(retention.columns)

    # a rerun finds everything stored and computes nothing; another task set in the same directory is refused
    before = sorted(p.name for p in (out / "results").rglob("*.parquet"))
    assert main(args) == 0
    assert sorted(p.name for p in (out / "results").rglob("*.parquet")) == before
    assert main([*args[:6], "arithmetic,piqa", *args[7:]]) == 2


def test_the_command_line_as_a_new_user_types_it(tiny_dir, tmp_path, capsys, monkeypatch):
    """Flags anywhere among the overrides; eval says what it wrote; a checkpoint not made yet is named as such,
    with the command that makes it, not tried as a hub download."""
    out = tmp_path / "eval"
    assert main(["eval", "--local", "--model", str(tiny_dir), "--tasks", "arithmetic", "tasks.0.limit=2", "--out", str(out),
                 "--no-progress", "model.dtype=float32", "--dtype", "float32"]) == 0
    printed = capsys.readouterr().out
    assert f"markdown: {out / 'retention.md'}" in printed and "arithmetic" in printed
    assert json.loads((out / "meta.json").read_text())["config"]["model"]["dtype"] == "float32"
    with pytest.raises(SystemExit):  # an unknown flag is still refused
        main(["eval", "--model", str(tiny_dir), "--bogus", "--out", str(out)])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pruned").mkdir()
    assert main(["eval", "--local", "--model", "pruned/not-yet", "--tasks", "arithmetic", "--limit", "2", "--out", "e2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model directory 'pruned/not-yet' does not exist" in err and "prunelab prune" in err


def test_eval_of_generative_and_classification_tasks_resumes_and_reports_group_means(tiny_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["eval", "--model", str(tiny_dir), "--base", str(tiny_dir), "--tasks", "arithmetic,gsm8k,xsum",
            "--limit", "3", "--out", str(out), "--dtype", "float32", "--no-progress",
            "tasks.1.max_new_tokens=6", "tasks.2.max_new_tokens=4", "tasks.2.num_fewshot=0", "generation.batch_size=2"]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "generative mean retention" in report and "classification mean retention" in report
    store = ResultsStore(out)
    records = store.generations().to_pandas()
    assert len(records) == 2 * 2 * 3  # (model, base) x (gsm8k, xsum) x 3 items
    assert {"prompt", "output", "finish_reason", "prompt_tokens", "output_tokens", "latency_s"} <= set(records)
    assert set(records.finish_reason) <= {"stop", "length"}
    # the same model as its own base: identical generations, retention exactly 1
    gsm = records[records.task == "gsm8k"].pivot(index="item_id", columns="candidate", values="output")
    assert (gsm["model"] == gsm["base"]).all()
    retention = pd.read_csv(out / "retention.csv", index_col=0)
    for column in ("arithmetic", "gsm8k", "xsum", "classification_mean", "generative_mean"):
        assert retention.loc["model", f"{column}:p_value"] == 1.0  # (a random tiny model may score 0: no ratio)
    assert retention.loc["model", "xsum:rouge1"] == retention.loc["base", "xsum:rouge1"]

    # a stopped run resumes: remove one generative chunk, and only its items are computed again (on Ray's two
    # actors, in units split otherwise: the generations of the lost chunk are kept once, the newest)
    done, rows = store.done(), store.read().num_rows
    victim = sorted((out / "results" / "xsum" / "base").glob("*.parquet"))[0]
    lost = pq.read_table(victim).num_rows
    victim.unlink()
    assert len(ResultsStore(out).done()) < len(done)
    assert main(args) == 0
    assert ResultsStore(out).done() == done and ResultsStore(out).read().num_rows == rows > lost
    again = ResultsStore(out).generations().to_pandas()
    assert len(again) == 12 and not again.duplicated(["task", "candidate", "item_id"]).any()


def test_generation_options_are_rejected_on_classification_tasks(tiny_dir, tmp_path, capsys):
    args = ["eval", "--local", "--model", str(tiny_dir), "--tasks", "arithmetic", "--out", str(tmp_path / "x"),
            "tasks.0.temperature=0.9"]
    assert main(args) == 2
    assert "temperature only apply to generative tasks" in capsys.readouterr().err
    assert main([*args[:-1], "tasks.0.name=gsm8q"]) == 2
    assert "unknown task 'gsm8q'" in capsys.readouterr().err


def test_several_evals_combine_into_one_table_with_each_model_a_row(tiny_dir, tmp_path, capsys):
    outs = []
    for layers in ("1", "2"):
        pruned = tmp_path / f"pruned-{layers}"
        assert main(["drop", "--model", str(tiny_dir), "--layers", layers, "--out", str(pruned)]) == 0
        outs.append(tmp_path / f"eval-{layers}")
        assert main(["eval", "--local", "--model", str(pruned), "--base", str(tiny_dir), "--tasks", "arithmetic,piqa",
                     "--limit", "24", "--out", str(outs[-1]), "--dtype", "float32", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", *map(str, outs), "--out", str(tmp_path / "cmp"), "--labels", "minus1,minus2"]) == 0
    combined = pd.read_csv(tmp_path / "cmp" / "retention.csv", index_col=0)
    assert list(combined.index) == ["base", "minus1", "minus2"]
    for label, out in zip(("minus1", "minus2"), outs):  # each row is that eval's own retention, interval included
        alone = pd.read_csv(out / "retention.csv", index_col=0).loc["model"]
        for column in ("arithmetic", "arithmetic:ci_low", "arithmetic:ci_high", "arithmetic:logprob"):
            assert combined.loc[label, column] == pytest.approx(alone[column], nan_ok=True)
    assert combined.loc["minus1", "arithmetic:logprob"] != combined.loc["minus2", "arithmetic:logprob"]
    assert "minus2" in capsys.readouterr().out
    assert main(["report", *map(str, outs), "--out", str(tmp_path / "x"), "--labels", "only-one"]) == 2

    # the pipeline's report page compares the two recovery arms head to head on the same items
    target = "block_influence@0.25"
    names = [f"eval-{target}", f"eval-{target}-sgr", f"eval-{target}-reference"]
    roles = [{"target": target, "recovered": names[1:]}] + [
        {"target": target, "arm": arm, "run": arm, "seed": 0, "label": f"SFT {arm}"} for arm in ("sgr", "reference")]
    summary = {"config": {"name": "p", "model": {"name": str(tiny_dir)}},
               "stages": [{"name": n, "kind": "eval", "dir": str(d), "status": "computed", "key": "0" * 64, "role": r}
                          for n, d, r in zip(names, [outs[0], *outs], roles)]}
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "pipeline.json").write_text(json.dumps(summary))
    write_pipeline_report(tmp_path / "page")
    tables = tmp_path / "page" / "report" / "tables"
    versus = pd.read_csv(tables / "sgr_vs_reference_block_influence_0.25.csv", index_col=0)
    raw = pd.read_csv(tmp_path / "page" / "report" / "recovery-block_influence-at-0.25" / "head_to_head.csv",
                      index_col=0)
    assert combined.loc["minus1", "piqa"] != combined.loc["minus2", "piqa"]  # a difference to measure
    assert raw.loc["piqa", raw.columns[2]] == pytest.approx(combined.loc["minus1", "piqa"]
                                                            - combined.loc["minus2", "piqa"], abs=1e-3)
    assert "arithmetic" not in raw.index  # the base model solves none of it: no retention to compare
    assert versus.loc["piqa", "SGR - original answers"].startswith(f"{raw.loc['piqa'].iloc[2]:.3f} [")
    assert (tables / "gap_block_influence_0.25.csv").exists() is False  # classification tasks only: no gap
    assert "SGR against the original answers" in (tmp_path / "page" / "report" / "report.md").read_text()
