"""`prunelab drop` then `prunelab eval`: the exported checkpoint scores as the in-memory pruned model, with retention."""

import pandas as pd
import pytest

import tiny
from transformers import AutoTokenizer
from prunelab.cli import main
from prunelab.scoring.engine import Scorer
from prunelab.sweep.store import ResultsStore
from prunelab.tasks import build_task


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny.save(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


def test_drop_then_eval_against_base(tiny_dir, tmp_path, capsys):
    pruned = tmp_path / "pruned"
    assert main(["drop", "--model", str(tiny_dir), "--layers", "1,2", "--out", str(pruned), "--dtype", "float32"]) == 0
    out = tmp_path / "eval"
    args = ["eval", "--model", str(pruned), "--base", str(tiny_dir), "--tasks", "arithmetic", "--limit", "8",
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
