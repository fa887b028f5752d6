"""Recovery: LoRA (and QLoRA NF4, on the CPU) on a corpus, with the loss on the completion and its end-of-turn token;
a merged checkpoint equal to the model with its adapter; runs that resume from their last checkpoint after the
worker or the driver dies (in this process and on Ray Train); bad lineage refused before anything is written."""

import copy
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from fresh_ray import start_ray
from transformers import TrainerCallback

from prunelab.cli import main
from prunelab.config import RecoverConfig, SGRConfig, parse_config
from prunelab.errors import ConfigError, DataError, ModelError
from prunelab.models.templates import PLAIN_TEMPLATE, apply_template
from prunelab.recovery.run import train_in_process
from prunelab.stages.recover import recover
from prunelab.stages.sgr import generate_corpus
from prunelab.surgery import drop_layers, save_pruned

TESTS = str(Path(__file__).parent)



class RecordStarts(TrainerCallback):
    """Appends the step each training attempt starts from to a file; on the first attempt, kills its process
    (`os._exit`, as an out-of-memory kill would) at step `die_at`, or raises at step `raise_at`."""

    def __init__(self, path, die_at=None, raise_at=None, grace_s=0.0):
        self.path, self.die_at, self.raise_at, self.grace_s = str(path), die_at, raise_at, grace_s

    def on_train_begin(self, args, state, control, **kw):
        with open(self.path, "a") as f:
            f.write(f"{state.global_step}\n")

    def on_step_end(self, args, state, control, **kw):
        first_attempt = Path(self.path).read_text().split() == ["0"]
        if first_attempt and state.global_step in (self.die_at, self.raise_at):
            time.sleep(self.grace_s)  # Ray Train collects a worker's reports by polling: let it see step 2's
        if first_attempt and state.global_step == self.die_at:
            os._exit(1)
        if first_attempt and state.global_step == self.raise_at:
            raise RuntimeError("stopped on purpose")


def starts(path) -> list[int]:
    return [int(x) for x in Path(path).read_text().split()]


def make_lineage(root: Path, base, removed=(1,), prompts: int = 24) -> tuple:
    """(base model, pruned model, corpus): `base`, the base with `removed` layers dropped, and a corpus of its answers
    to `prompts` prompts with original answers."""
    root.mkdir(parents=True, exist_ok=True)
    source = root / "prompts.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"What is {i} + {i}?", "output": f"It is {2 * i}."}) + "\n"
                              for i in range(prompts)))
    corpus = generate_corpus(parse_config({
        "kind": "sgr", "name": "c", "model": {"name": str(base), "dtype": "float32"}, "chat_template": "plain",
        "prompts": {"source": str(source), "limit": None, "exclude_tasks": [], "max_prompt_tokens": 128},
        "sampling": {"max_new_tokens": 4}, "output_dir": str(root / "corpus")}, cls=SGRConfig), progress=False)
    from prunelab.models import load_model

    model, tok = load_model(str(base), dtype="float32")
    drop_layers(model, list(removed))
    pruned = save_pruned(model, tok, root / "pruned", {"base_model": str(base), "base_model_path": str(base),
                                                       "removed_layers": list(removed)})
    return base, pruned, corpus


@pytest.fixture(scope="module")
def lineage(tiny_model_dir, tmp_path_factory):
    return make_lineage(tmp_path_factory.mktemp("lineage"), tiny_model_dir("llama"))


def recover_config(pruned, corpus, out, **extra):
    data = {"kind": "recover", "name": "r", "model": {"name": str(pruned), "dtype": "float32"},
            "corpus": str(corpus), "responses": "reference", "output_dir": str(out),
            "training": {"max_steps": 4, "save_steps": 2, "batch_size": 4, "per_device_batch_size": 2,
                         "max_length": 128, "warmup_steps": 0}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data, cls=RecoverConfig)


def test_completion_loss_covers_the_answer_and_its_end_of_turn_token(lineage, tok):
    from datasets import Dataset

    from prunelab.models import load_model
    from prunelab.recovery.train import sft_trainer

    _, pruned, corpus = lineage
    model, _ = load_model(str(pruned), dtype="float32")
    tokenizer = apply_template(copy.deepcopy(tok), PLAIN_TEMPLATE)
    example = {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
               "completion": [{"role": "assistant", "content": "It is 4."}]}
    config = recover_config(pruned, corpus, "unused")
    trainer = sft_trainer(model, tokenizer, Dataset.from_list([example]), config, "/tmp/unused", 1)
    row = trainer.train_dataset[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    # the answer and its end-of-turn token (then the template's blank line), nothing of the prompt
    assert tokenizer.decode(trained).strip() == "It is 4.<eos>"
    assert tokenizer.eos_token_id in trained


def test_lora_recovery_merges_into_a_checkpoint_equal_to_the_adapted_model(lineage, tmp_path, capsys, monkeypatch):
    from peft import PeftModel

    from prunelab.models import load_model

    _, pruned, corpus = lineage
    monkeypatch.setenv("PRUNELAB_HEARTBEAT_S", "0")  # a line per update in a log
    out = recover(recover_config(pruned, corpus, tmp_path / "r"), progress=False)
    # training shows its steps with the last loss and the time left, and the merged checkpoint its export
    shown = capsys.readouterr()
    lines = shown.err.splitlines() + shown.out.splitlines()
    assert any(line.startswith("train: 100%") and "4/4" in line and "loss=" in line for line in lines)
    assert any(line.startswith("export merged: 100%") for line in lines)
    assert not any(line.startswith("{'loss'") for line in lines)  # the Trainer's dict per log: the line above says it
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["training"]["steps"] == 4
    assert meta["lineage"]["pruning_manifest"]["removed_layers"] == [1]
    assert meta["lineage"]["corpus_sha256"] == json.loads((Path(corpus) / "meta.json").read_text())["corpus_sha256"]
    curve = (out / "training_curve.csv").read_text().splitlines()
    assert curve[0] == "step,loss,perplexity,learning_rate,epoch" and len(curve) == 5
    assert (out / "training_curve.png").stat().st_size > 0

    merged, tokenizer = load_model(str(out / "merged"), dtype="float32")
    adapted = PeftModel.from_pretrained(load_model(str(pruned), dtype="float32")[0], str(out / "adapter")).eval()
    plain, _ = load_model(str(pruned), dtype="float32")
    ids = torch.tensor([tokenizer("What is 3 + 3? It is 6.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, plain(ids).logits, atol=1e-3)  # training changed the model
    assert tokenizer.chat_template == PLAIN_TEMPLATE  # the recovered model is asked the way it was trained
    manifest = json.loads((out / "merged" / "prunelab_manifest.json").read_text())
    assert manifest["removed_layers"] == [1] and manifest["recovery"]["responses"] == "reference"

    # with dtype auto the merge keeps the checkpoint's own dtype: a bf16 model is never merged into an fp32 copy
    from safetensors import safe_open

    from prunelab.recovery.train import merge_adapter

    bf16 = tmp_path / "pruned-bf16"
    plain.to(torch.bfloat16).save_pretrained(bf16)
    tokenizer.save_pretrained(bf16)
    again = merge_adapter(str(bf16), out / "adapter", tokenizer, tmp_path / "merged-bf16", "auto", {})
    with safe_open(str(next(Path(again).glob("*.safetensors"))), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}


def test_a_stopped_run_resumes_from_its_last_checkpoint(lineage, tmp_path):
    _, pruned, corpus = lineage
    config = recover_config(pruned, corpus, tmp_path / "r")
    log = tmp_path / "starts"
    with pytest.raises(RuntimeError, match="stopped on purpose"):
        recover(config, lambda job, out: train_in_process(job, out, [RecordStarts(log, raise_at=3)]), progress=False)
    out = recover(config, lambda job, out: train_in_process(job, out, [RecordStarts(log)]), progress=False)
    assert starts(log) == [0, 2]  # the second run began at the checkpoint of step 2, not from scratch
    state = json.loads((out / "meta.json").read_text())["training"]
    assert state["steps"] == 4
    # once finished, the resume checkpoints (weights and optimizer state each) are gone; the result stays
    assert not (out / "checkpoints").exists() and (out / "adapter" / "adapter_model.safetensors").exists()
    # its curve beside another run's, as SGR and external data are compared; that one keeps its checkpoints
    other = recover(recover_config(pruned, corpus, tmp_path / "lr", training={"learning_rate": 1e-3,
                                                                                "keep_checkpoints": True}),
                    progress=False)
    assert sorted(p.name for p in (other / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert main(["report", str(out), str(other), "--out", str(tmp_path / "cmp"), "--labels", "a,b"]) == 0
    curves = pd.read_csv(tmp_path / "cmp" / "training_curves.csv")
    assert sorted(curves.groupby("run").step.max().items()) == [("a", 4), ("b", 4)]
    assert (tmp_path / "cmp" / "training_curves.png").exists()


def test_qlora_nf4_trains_and_merges_on_the_cpu(lineage, tmp_path):
    pytest.importorskip("bitsandbytes")
    _, pruned, corpus = lineage
    out = recover(recover_config(pruned, corpus, tmp_path / "q", quantization="nf4",
                                 training={"max_steps": 2}), progress=False)
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"])
    config = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 3


def test_bad_lineage_and_settings_are_refused_before_anything_is_written(lineage, tiny_model_dir, tmp_path):
    base, pruned, corpus = lineage
    other = tiny_model_dir("qwen2")
    with pytest.raises(DataError, match="was made by .* SGR trains a pruned model on its own base model's answers"):
        recover(recover_config(other, corpus, tmp_path / "a"), progress=False)
    with pytest.raises(ConfigError, match=r"lora.target_modules \['c_attn'\] are not linear layers"):
        recover(recover_config(pruned, corpus, tmp_path / "b", lora={"target_modules": ["c_attn"]}), progress=False)
    with pytest.raises(ConfigError, match=r"batch_size \(6\) is not a multiple of training.per_device_batch_size \(4\)"):
        recover(recover_config(pruned, corpus, tmp_path / "c", training={"batch_size": 6, "per_device_batch_size": 4}),
                progress=False)
    with pytest.raises(DataError, match="has no kept responses"):  # the tiny base model's answers were all truncated
        recover(recover_config(pruned, corpus, tmp_path / "d", responses="sgr"), progress=False)
    assert not any((tmp_path / d).exists() for d in "abcd")
    # an output directory holding an adapter of another model
    (tmp_path / "e" / "adapter").mkdir(parents=True)
    (tmp_path / "e" / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    with pytest.raises(ModelError, match="holds an adapter trained on"):
        recover(recover_config(pruned, corpus, tmp_path / "e"), progress=False)


def test_paired_arms_train_on_the_same_prompts(lineage, tok, tmp_path):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelab.recovery.data import select_examples

    _, pruned, corpus = lineage
    doctored = tmp_path / "corpus"  # every 2nd SGR answer kept, every 3rd original answer missing
    shutil.copytree(corpus, doctored)
    shard = sorted((doctored / "shards").glob("*.parquet"))[0]
    rows = pq.read_table(shard).to_pylist()
    for i, r in enumerate(rows):
        if i % 2 == 0:
            r |= {"response": f"It is {i}.", "finish_reason": "stop", "dropped": None}
        if i % 3 == 0:
            r["reference"] = ""
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    both = {r["id"] for i, r in enumerate(rows) if i % 2 == 0 and i % 3 != 0}
    tokenizer = apply_template(copy.deepcopy(tok), PLAIN_TEMPLATE)
    for responses in ("sgr", "reference"):
        examples, counts = select_examples(str(doctored), responses, tokenizer, 128, paired=True)
        assert {e["id"] for e in examples} == both and counts["examples"] == len(both) > 0
        unpaired, _ = select_examples(str(doctored), responses, tokenizer, 128)
        assert {e["id"] for e in unpaired} > both  # each arm alone would use prompts the other cannot
        assert counts["not_shared"] == len(unpaired) - len(both)
    out = recover(recover_config(pruned, doctored, tmp_path / "r", responses="sgr", paired=True,
                                 training={"max_steps": 1}), progress=False)
    assert set(json.loads((out / "meta.json").read_text())["lineage"]["example_ids"]) == both
    # no prompt with both answers: a clear error, nothing written
    for i, r in enumerate(rows):
        r["reference"] = "" if i % 2 == 0 else f"It is {2 * i}."
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    with pytest.raises(DataError, match="no prompt has both a kept SGR response and an original answer"):
        recover(recover_config(pruned, doctored, tmp_path / "none", responses="reference", paired=True),
                progress=False)
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [
    ("sft", {}), ("kd", {}), ("partial", {}),
    ("linear", {"linear": {"calibration": {"samples": 8, "max_length": 64}, "then": "sft"}})])
def test_ray_train_resumes_after_a_killed_worker(lineage, tmp_path, method, extra):
    """Every trained method on Ray Train (linear's fit in a task with a worker's resources, then SFT on the folded
    model). (A driver killed mid-run: tests/test_ray_jobs.py, against a real head.)"""
    import ray

    from prunelab.distributed.train import like_a_worker, train_on_ray

    _, pruned, corpus = lineage
    start_ray(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": TESTS}})
    try:
        config = recover_config(pruned, corpus, tmp_path / "w", method=method,
                                workers={"num_workers": 1, "max_failures": 1}, **extra)
        log = tmp_path / "starts-worker"
        out = recover(config, lambda job, out: train_on_ray(job, config.workers, out,
                                                            [RecordStarts(log, die_at=3, grace_s=5)]),
                      progress=False, place=lambda fn, *args: like_a_worker(config.workers, fn, *args))
        assert starts(log) == [0, 2]  # the worker died at step 3; Ray Train restarted it from step 2
        assert (out / "merged" / "config.json").exists()  # merged in a task with a worker's resources
    finally:
        ray.shutdown()
