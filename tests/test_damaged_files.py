"""Files damaged on disk, tried as a user meets them: a results, generations or SGR shard file truncated (as a full
disk or a bad copy leaves it). The rerun says which file is unreadable, moves it aside (kept, never deleted),
computes again exactly what it held and ends with the numbers of an undamaged run. And a pruned checkpoint is never
overwritten by a prune with other settings."""

import json
import logging

import pandas as pd
import pytest

from prunelab.cli import main

pytestmark = pytest.mark.slow


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _aside(path) -> list:
    return list(path.parent.glob(f"{path.name}.unreadable-*"))


def test_damaged_results_and_generations_are_set_aside_and_computed_again(tiny_model_dir, tmp_path, caplog):
    model = str(tiny_model_dir("qwen2"))
    out = tmp_path / "eval"
    args = ["eval", "--local", "--model", model, "--base", model, "--tasks", "arithmetic,gsm8k", "--limit", "3", "--out",
            str(out), "--dtype", "float32", "--no-progress", "tasks.1.max_new_tokens=4", "generation.batch_size=2"]
    assert main(args) == 0
    undamaged = pd.read_csv(out / "retention.csv", index_col=0)
    samples = json.dumps(sorted(map(str, pd.concat(pd.read_parquet(p) for p in (out / "generations").rglob(
        "*.parquet"))[["candidate", "item_id", "output"]].itertuples(index=False))))
    metrics = sorted((out / "results" / "arithmetic").rglob("*.parquet"))[0]
    generations = sorted((out / "generations" / "gsm8k").rglob("*.parquet"))[0]
    _truncate(metrics)
    _truncate(generations)
    with caplog.at_level(logging.WARNING, logger="prunelab"):
        assert main(args) == 0
    assert f"{metrics} is unreadable" in caplog.text and f"{generations} is unreadable" in caplog.text
    assert _aside(metrics) and _aside(generations)  # kept beside, under another name
    assert metrics.exists() and generations.exists()  # and computed again in their place
    pd.testing.assert_frame_equal(pd.read_csv(out / "retention.csv", index_col=0), undamaged)
    again = json.dumps(sorted(map(str, pd.concat(pd.read_parquet(p) for p in (out / "generations").rglob(
        "*.parquet"))[["candidate", "item_id", "output"]].itertuples(index=False))))
    assert again == samples


def test_a_damaged_sgr_shard_is_generated_again(tiny_model_dir, tmp_path, caplog):
    from prunelab.config import SGRConfig, parse_config
    from prunelab.sgr.shards import CorpusShards
    from prunelab.stages.sgr import generate_corpus

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"instruction": f"Say {i}.", "output": f"{i}."}) + "\n" for i in range(6)))
    config = parse_config({"name": "c", "model": {"name": str(tiny_model_dir("llama")), "dtype": "float32"},
                           "chat_template": "plain", "output_dir": str(tmp_path / "corpus"),
                           "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": [], "max_prompt_tokens": 128},
                           "sampling": {"max_new_tokens": 3}, "engine": {"shard_size": 2, "batch_size": 2}},
                          cls=SGRConfig)
    generate_corpus(config, progress=False)
    shards = CorpusShards(tmp_path / "corpus")
    undamaged = shards.read().to_pylist()
    damaged = shards.path(1)
    _truncate(damaged)
    with caplog.at_level(logging.WARNING, logger="prunelab"):
        generate_corpus(config, progress=False)
    assert f"{damaged} is unreadable" in caplog.text and _aside(damaged)
    assert shards.read().to_pylist() == undamaged


def test_a_checkpoint_is_not_overwritten_by_a_prune_with_other_settings(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("llama"))
    out = tmp_path / "pruned"
    base = ["prune", "model.name=" + model, "model.dtype=float32", f"output_dir={out}", "--local", "--no-progress"]
    assert main([*base, "layers=[1]"]) == 0
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main([*base, "layers=[2]"]) == 2
    assert "holds a model pruned with other settings (differs in: layers" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == written
    assert main([*base, "layers=[1]"]) == 0  # the same settings again: rewritten, as before
    other = tmp_path / "not-a-checkpoint"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["prune", "model.name=" + model, "layers=[1]", f"output_dir={other}", "--local", "--no-progress"]) == 2
    assert "is not a checkpoint that prunelab prune wrote" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
