"""The engine's noise floor: the base model's items generated under a second batch layout, compared item by item.
The second layout's outputs are transformers' own greedy outputs for each item alone; the counts are those of the
stage's rows against them; a rerun computes nothing; the page and the tables say it."""

import json

import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunelab.config import EvalConfig, parse_config
from prunelab.execution.noise import NOISE_DIR, describe
from prunelab.generation import apply_stop
from prunelab.results import ResultsStore
from prunelab.stages.evaluate import evaluate
from prunelab.stages.sweep import run_sweep
from prunelab.tasks import build_task

TASKS = [{"name": "gsm8k", "limit": 8, "max_new_tokens": 16}]


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    # 256 wide in bf16: wide enough that batching moves greedy outputs on a CPU with native bf16
    return tiny.save(tmp_path_factory.mktemp("noise") / "wide", "llama", hidden=256)


def alone(model_dir, dtype) -> list[tuple[str, str]]:
    """transformers' greedy output for each item, generated alone (cut at the task's stop strings, as every backend
    cuts): the reference for a layout of one item at a time."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    task = build_task("gsm8k", limit=8, max_new_tokens=16)
    items = task.items(tokenizer)
    stop = task.sampling(items[0].reference["chat"]).stop
    out = []
    for item in items:
        ids = torch.tensor([item.request.prompt_ids])
        with torch.inference_mode():
            new = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=16,
                                 pad_token_id=tokenizer.eos_token_id)[0, ids.shape[1]:]
        out.append((item.id, apply_stop(tokenizer.decode(new, skip_special_tokens=True), stop)[0]))
    return out


def outputs(root, candidate="base") -> dict[str, str]:
    frame = ResultsStore(root).generations().to_pandas()
    frame = frame[frame.candidate == candidate]
    return dict(zip(frame.item_id, frame.output))


def test_a_sweep_measures_its_noise_floor_against_transformers_alone(wide, tmp_path):
    config = parse_config({"kind": "sweep", "name": "noise", "model": {"name": str(wide), "dtype": "bfloat16"},
                           "tasks": TASKS, "generation": {"batch_size": 8}, "sweep": {"layers": [1]},
                           "output_dir": str(tmp_path / "sweep")})
    run_sweep(config, progress=False)
    meta = json.loads((tmp_path / "sweep" / "meta.json").read_text())
    record = meta["noise_floor"]
    assert record["candidate"] == "base"
    assert record["layouts"][0].startswith("the multi-candidate engine")
    assert record["layouts"][1].startswith("each item alone")
    # the second layout is each item alone: transformers' own outputs, token for token
    reference = alone(wide, torch.bfloat16)
    want = dict(reference)
    assert outputs(tmp_path / "sweep" / NOISE_DIR) == want
    first = outputs(tmp_path / "sweep")
    floor = record["tasks"]["gsm8k"]
    assert floor["items"] == 8
    assert floor["outputs_differ"] == sum(first[i] != want[i] for i in want)
    rows = ResultsStore(tmp_path / "sweep").read().to_pandas()
    second_rows = ResultsStore(tmp_path / "sweep" / NOISE_DIR).read().to_pandas()
    values = [r[(r.candidate == "base") & (r.metric == meta["tasks"]["gsm8k"]["primary_metric"])].set_index("item_id")["value"]
              for r in (rows, second_rows)]
    assert floor["changed"] == int((values[0] != values[1].loc[values[0].index]).sum())
    assert floor["changed_items"] == sorted(values[0].index[values[0] != values[1].loc[values[0].index]])
    # shown beside the comparison
    text = (tmp_path / "sweep" / "retention.md").read_text()
    assert f"gsm8k {floor['changed']} of 8 items change outcome ({floor['outputs_differ']} outputs differ)" in text
    # a rerun computes nothing again
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / NOISE_DIR).rglob("*.parquet")}
    run_sweep(config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / NOISE_DIR).rglob("*.parquet")} == files


def test_an_exact_evaluation_measures_against_batches_and_can_be_turned_off(wide, tmp_path):
    def run(name, **generation):
        evaluate(parse_config({"kind": "eval", "name": name, "model": {"name": str(wide), "dtype": "bfloat16"},
                               "tasks": TASKS, "generation": generation, "output_dir": str(tmp_path / name)},
                              cls=EvalConfig), progress=False)
        return json.loads((tmp_path / name / "meta.json").read_text())

    meta = run("exact", exact=True)
    record = meta["noise_floor"]
    assert record["candidate"] == "model"
    assert record["layouts"] == ["each item alone (a batch of one, no padding)",
                                 "batches of up to 8 items, longest prompts together, left-padded"]
    # the run's layout is each item alone: its outputs are transformers' alone, the second layout's are batched
    reference = alone(wide, torch.bfloat16)
    first = outputs(tmp_path / "exact", "model")
    assert first == dict(reference)
    assert record["tasks"]["gsm8k"]["outputs_differ"] == sum(
        first[i] != o for i, o in outputs(tmp_path / "exact" / NOISE_DIR, "model").items())

    off = run("off", noise_floor=False)
    assert "noise_floor" not in off and not (tmp_path / "off" / NOISE_DIR).exists()


def test_the_noise_floor_in_words():
    record = {"candidate": "base", "layouts": ["A", "B"],
              "tasks": {"gsm8k": {"items": 128, "changed": 3, "outputs_differ": 9, "changed_items": []},
                        "humaneval": {"items": 164, "changed": 0, "outputs_differ": 0, "changed_items": []}}}
    text = describe(record, {"gsm8k": "GSM8K", "humaneval": "HumanEval"})
    assert "GSM8K 3 of 128 items change outcome (9 outputs differ); HumanEval 0 of 164 items" in text
    assert "(A; B)" in text
    assert "not measured" in describe(None)
