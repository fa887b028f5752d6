"""The recovery methods beside SFT: logit distillation (kd), partial-layer fine-tuning (partial) and training-free
linear replacement (linear). Each trains or folds on tiny models, resumes, records its budget; each refuses what it
cannot do with exit code 2 and nothing written. Warmup never takes a whole short run."""

import copy
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_recover import RecordStarts, make_lineage, recover_config, starts

from prunelab.cli import main
from prunelab.config import RecoverConfig, parse_config
from prunelab.errors import ConfigError, DataError
from prunelab.models import load_model
from prunelab.models.templates import PLAIN_TEMPLATE, apply_template
from prunelab.models.view import view
from prunelab.recovery.run import train_in_process
from prunelab.stages.recover import recover


@pytest.fixture(scope="module")
def lineage(tiny_model_dir, tmp_path_factory):
    return make_lineage(tmp_path_factory.mktemp("lineage"), tiny_model_dir("llama"))


def weights(directory) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(directory).glob("*.safetensors")):
        out |= load_file(str(f))
    return out


def logits(model_dir, text="What is 3 + 3? It is 6.") -> torch.Tensor:
    model, tok = load_model(str(model_dir), dtype="float32")
    with torch.no_grad():
        return model(torch.tensor([tok(text)["input_ids"]])).logits


CALIBRATION = {"calibration": {"samples": 16, "max_length": 64}}


# -- warmup -----------------------------------------------------------------------------------------------------


def test_warmup_never_swallows_a_short_run(lineage, tmp_path):
    from prunelab.config.sections import TrainingSpec
    from prunelab.recovery.train import warmup_steps

    assert warmup_steps(TrainingSpec(warmup_steps=0.03), 100) == 3
    assert warmup_steps(TrainingSpec(warmup_steps=0.03), 2) == 0  # transformers would round 0.06 up to 1
    assert warmup_steps(TrainingSpec(warmup_steps=10), 4) == 1  # at most half the run, the rest at the full rate
    _, pruned, corpus = lineage
    out = recover(recover_config(pruned, corpus, tmp_path / "one", training={"max_steps": 1, "warmup_steps": 0.03,
                                                                           "learning_rate": 1e-2}), progress=False)
    curve = pd.read_csv(out / "training_curve.csv")
    assert curve.learning_rate.tolist() == [1e-2]  # the one step trains at the configured rate, not at 0
    assert not torch.allclose(logits(out / "merged"), logits(pruned), atol=1e-4)


# -- partial ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_partial_trains_the_last_layers_fully_and_leaves_the_rest_bit_identical(lineage, tmp_path, dtype):
    """In bf16 too, where the trained weights are kept in fp32 during training (pure bf16 would round small steps
    away) and the result is saved in bf16."""
    _, pruned, corpus = lineage  # 3 layers left, saved in fp32
    out = recover(recover_config(pruned, corpus, tmp_path / "p", method="partial",
                                 model={"dtype": str(dtype).removeprefix("torch.")},
                                 partial={"layers": 1, "learning_rate": 3e-3},
                                 training={"max_steps": 12, "save_steps": 6}), progress=False)
    assert not (out / "adapter").exists()
    before, after = {k: v.to(dtype) for k, v in weights(pruned).items()}, weights(out / "merged")
    assert {v.dtype for v in after.values()} == {dtype}
    assert before.keys() == after.keys()
    trained = {k for k in before if not torch.equal(before[k], after[k])}
    expected = {k for k in before if k.startswith(("model.layers.2.", "model.norm.", "lm_head."))}
    assert trained and trained <= expected
    # every frozen parameter bit for bit (the embedding too: the tiny llama's head is untied)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in expected)
    meta = json.loads((out / "meta.json").read_text())["training"]
    assert meta["method"] == "partial" and meta["steps"] == 12
    assert meta["trainable_parameters"] == sum(before[k].numel() for k in expected)
    curve = pd.read_csv(out / "training_curve.csv")
    assert curve.loss.tail(6).mean() < curve.loss.head(6).mean()  # the second epoch fits better than the first
    manifest = json.loads((out / "merged" / "prunelab_manifest.json").read_text())
    assert manifest["recovery"]["method"] == "partial" and manifest["removed_layers"] == [1]


def test_partial_refuses_more_layers_than_remain_and_a_4bit_model(lineage, tmp_path):
    _, pruned, corpus = lineage
    with pytest.raises(ConfigError, match=r"partial.layers=4 is more than the 3 layers the pruned model has left"):
        recover(recover_config(pruned, corpus, tmp_path / "k", method="partial", partial={"layers": 4}),
                progress=False)
    assert not (tmp_path / "k").exists()
    with pytest.raises(Exception, match=r"method partial trains full weights, which a 4-bit \(nf4\) model cannot train"):
        recover_config(pruned, corpus, tmp_path / "q", method="partial", quantization="nf4")


# -- kd ---------------------------------------------------------------------------------------------------------


def test_kd_against_itself_has_zero_divergence(lineage, tmp_path):
    base, _, corpus = lineage
    # the student is the teacher (no layer removed; LoRA starts at zero): nothing to distil
    out = recover(recover_config(base, corpus, tmp_path / "self", method="kd", kd={"teacher": str(base)},
                                 training={"max_steps": 2}), progress=False)
    curve = pd.read_csv(out / "training_curve.csv")
    assert curve.loss.iloc[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_kd_distils_the_base_model_into_the_pruned_one(lineage, tmp_path, beta):
    base, pruned, corpus = lineage
    out = recover(recover_config(pruned, corpus, tmp_path / "kd", method="kd", kd={"beta": beta},
                                 training={"max_steps": 12, "learning_rate": 1e-2, "save_steps": 6}),
                  progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["lineage"]["teacher"] == str(Path(base).resolve())  # the base model the corpus was made with
    assert meta["training"]["method"] == "kd" and meta["training"]["steps"] == 12
    curve = pd.read_csv(out / "training_curve.csv")
    assert curve.loss.iloc[0] > 1e-3 and curve.loss.tail(6).mean() < curve.loss.head(6).mean()
    # the student moved towards the teacher on a text it was not trained on
    teacher, student, plain = logits(base), logits(out / "merged"), logits(pruned)

    def kl(p, q):
        return torch.nn.functional.kl_div(q.log_softmax(-1), p.log_softmax(-1), log_target=True, reduction="sum")

    assert kl(teacher, student) < kl(teacher, plain)


def test_kd_trains_on_the_completion_and_its_end_of_turn_token(lineage, tok):
    from datasets import Dataset

    from prunelab.recovery.kd import kd_trainer

    base, pruned, corpus = lineage
    model, _ = load_model(str(pruned), dtype="float32")
    teacher, _ = load_model(str(base), dtype="float32")
    tokenizer = apply_template(copy.deepcopy(tok), PLAIN_TEMPLATE)
    example = {"prompt": [{"role": "user", "content": "What is 2 + 2?"}],
               "completion": [{"role": "assistant", "content": "It is 4."}]}
    config = recover_config(pruned, corpus, "unused", method="kd")
    trainer = kd_trainer(model, teacher, tokenizer, Dataset.from_list([example]), config, "/tmp/unused", 1)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trained = [t for t, label in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist()) if label != -100]
    assert tokenizer.decode(trained).strip() == "It is 4.<eos>"


def test_kd_refuses_a_teacher_with_another_vocabulary_or_tokenizer(lineage, tmp_path):
    base, pruned, corpus = lineage
    model, tok = load_model(str(base), dtype="float32")
    model.resize_token_embeddings(model.config.vocab_size + 8)
    model.save_pretrained(tmp_path / "wider")
    tok.save_pretrained(tmp_path / "wider")
    shutil.copytree(base, tmp_path / "retokenized")
    other = copy.deepcopy(tok)
    other.add_tokens(["<extra>"])  # one more token id, the same vocabulary size in the config
    other.save_pretrained(tmp_path / "retokenized")
    for teacher, what in (("wider", "has a vocabulary of 392 tokens, the pruned model 384"),
                          ("retokenized", "has another tokenizer than the pruned model")):
        out = tmp_path / f"kd-{teacher}"
        with pytest.raises(ConfigError, match=what):
            recover(recover_config(pruned, corpus, out, method="kd", kd={"teacher": str(tmp_path / teacher)}),
                    progress=False)
        assert not out.exists()


@pytest.mark.parametrize("method", ["kd", "partial"])
def test_a_stopped_run_of_each_trained_method_resumes(lineage, tmp_path, method):
    _, pruned, corpus = lineage
    config = recover_config(pruned, corpus, tmp_path / method, method=method)
    log = tmp_path / "starts"
    with pytest.raises(RuntimeError, match="stopped on purpose"):
        recover(config, lambda job, out: train_in_process(job, out, [RecordStarts(log, raise_at=3)]), progress=False)
    out = recover(config, lambda job, out: train_in_process(job, out, [RecordStarts(log)]), progress=False)
    assert starts(log) == [0, 2]
    assert json.loads((out / "meta.json").read_text())["training"]["steps"] == 4


# -- linear -----------------------------------------------------------------------------------------------------


def test_linear_replaces_an_identity_block_exactly(tiny_model_dir, tmp_path):
    """A removed layer whose attention and MLP write nothing is the identity: the map estimated for it is I, and the
    folded checkpoint is the base model to float precision."""
    model, tok = load_model(str(tiny_model_dir("llama")), dtype="float32")
    layer = view(model).layers[2]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    _, pruned, corpus = make_lineage(tmp_path, tmp_path / "base", removed=[2], prompts=8)
    out = recover(recover_config(pruned, corpus, tmp_path / "lin", method="linear",
                                 linear={**CALIBRATION, "ridge": 0.0}), progress=False)
    training = json.loads((out / "meta.json").read_text())["training"]
    assert training["runs"] == [[2, 2]] and training["distance_from_identity"][0] < 1e-5
    torch.testing.assert_close(logits(out / "merged"), logits(tmp_path / "base"), atol=1e-5, rtol=1e-5)


def test_a_folded_map_is_the_least_squares_fit_of_the_runs_output(lineage, tok, tmp_path):
    """On a random model the removed layer is not linear: folding the fitted map brings the run's output closer to
    the base model's on the calibration texts than removing the layer alone does, and the fold computes M T."""
    from prunelab.data.corpora import load_corpus
    from prunelab.recovery.linear import estimate_maps, fold_maps

    base, pruned, corpus = lineage  # layer 1 removed
    texts = load_corpus("sharegpt", limit=16, seed=0)
    model, tokenizer = load_model(str(base), dtype="float32")
    maps = estimate_maps(model, tokenizer, texts, [1], max_length=64, ridge=0.0)
    t = maps[(1, 1)]
    assert t.shape == (32, 32) and not torch.allclose(t, torch.eye(32, dtype=t.dtype), atol=1e-2)

    def states(m, texts):
        """Per text: the input of the layer after the run, and layer 0's MLP output."""
        v = view(m)
        out, mlp = [], []
        hook = v.layers[0].mlp.register_forward_hook(lambda mod, a, o: mlp.append(o))
        try:
            for text in texts:
                ids = torch.tensor([tokenizer(text, truncation=True, max_length=64)["input_ids"]])
                with torch.no_grad(), v.recording([v.layers[-2] if v.num_layers == 4 else v.layers[1]]) as rec:
                    m(ids)
                out.append(rec[0][0])
        finally:
            hook.remove()
        return torch.cat(out), torch.cat([x[0] for x in mlp])

    target, mlp_before = states(model, texts)
    plain, _ = load_model(str(pruned), dtype="float32")
    fold_maps(model, maps)
    view(model).drop({1})
    folded, mlp_after = states(model, texts)
    without, _ = states(plain, texts)
    torch.testing.assert_close(mlp_after.double(), mlp_before.double() @ t, atol=1e-4, rtol=1e-4)
    assert ((folded - target) ** 2).mean() < 0.9 * ((without - target) ** 2).mean()


def test_linear_checkpoint_reloads_and_can_be_trained_on(lineage, tmp_path):
    _, pruned, corpus = lineage
    out = recover(recover_config(pruned, corpus, tmp_path / "lin", method="linear", linear=CALIBRATION),
                  progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["trainable_parameters"] == 0 and meta["lineage"]["calibration"]["samples"] == 16
    config = json.loads((out / "merged" / "config.json").read_text())
    assert config["num_hidden_layers"] == 3  # a stock checkpoint of the pruned shape
    assert not torch.allclose(logits(out / "merged"), logits(pruned), atol=1e-4)
    # then: sft trains the folded model (LinearPatch), starting from the folded weights
    then = recover(recover_config(pruned, corpus, tmp_path / "then", method="linear",
                                  linear={**CALIBRATION, "then": "sft"}, training={"max_steps": 1}), progress=False)
    assert (then / "linear" / "config.json").exists() and (then / "adapter").exists()
    adapter = json.loads((then / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((then / "linear").resolve())
    torch.testing.assert_close(logits(then / "linear"), logits(out / "merged"))  # the same calibration, the same fold
    manifest = json.loads((then / "merged" / "prunelab_manifest.json").read_text())
    assert manifest["recovery"]["method"] == "linear" and manifest["recovery"]["then"] == "sft"


def test_linear_refuses_what_it_cannot_fold(lineage, tiny_model_dir, tmp_path):
    base, pruned, corpus = lineage
    cases = []
    # the base model itself: no manifest says which layers were removed
    cases.append((base, corpus, "does not say which layers of which base model were removed"))
    # a run at layer 0 has no layer before it
    _, p0, c0 = make_lineage(tmp_path / "zero", Path(base), removed=[0], prompts=8)
    cases.append((p0, c0, "starts at layer 0"))
    # Gemma 3 normalizes the MLP's output
    _, pg, cg = make_lineage(tmp_path / "gemma", Path(tiny_model_dir("gemma3")), removed=[1], prompts=8)
    cases.append((pg, cg, "post_feedforward_layernorm"))
    for i, (model, corp, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises((ConfigError, DataError), match=message):
            recover(recover_config(model, corp, out, method="linear", linear=CALIBRATION), progress=False)
        assert not out.exists()
    # no calibration texts: an empty saved dataset; through the CLI, exit code 2
    import datasets

    datasets.Dataset.from_dict({"text": []}).save_to_disk(str(tmp_path / "empty"))
    config = recover_config(pruned, corpus, tmp_path / "none", method="linear",
                            linear={"calibration": {"source": str(tmp_path / "empty")}})
    path = tmp_path / "none.json"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    assert main(["recover", str(path), "--local", "--no-progress"]) == 2
    assert not (tmp_path / "none").exists()


def test_sft_identity_is_unchanged_by_the_other_methods(lineage, tmp_path):
    """Results made before there were other methods stay valid: an sft config's claim names no method section."""
    _, pruned, corpus = lineage
    identity = recover_config(pruned, corpus, tmp_path / "s").identity()
    assert not {"method", "kd", "partial", "linear"} & identity.keys()
    kd = recover_config(pruned, corpus, tmp_path / "k", method="kd").identity()
    assert kd["method"] == "kd" and "kd" in kd and "linear" not in kd
    assert parse_config(recover_config(pruned, corpus, tmp_path / "l", method="linear",
                                       linear={"then": "kd"}).model_dump(mode="json"),
                        cls=RecoverConfig).identity().keys() >= {"linear", "kd"}
