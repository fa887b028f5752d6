"""Layer surgery: in-memory removal, temporary views and exported checkpoints all equal an independently built model."""

import json

import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from prunelab.errors import ModelError
from prunelab.models.view import layer_kinds, view
from prunelab.surgery import MANIFEST_NAME, check_layers, drop_layers, keep_layers, save_pruned

IDS = torch.tensor([[1, 17, 45, 99, 3, 250, 7, 61, 88, 120, 33, 5, 77, 200, 14, 9, 300, 41, 52, 8, 19, 90]])
TOL = dict(atol=1e-5, rtol=1e-4)  # fp32; the same weights in the same order of operations


def reference_config(family: str, full, keep: list[int]):
    """The config of the family's model with len(keep) layers that are `full`'s layers `keep`, written out here
    for each family's per-layer entries (not through prunelab's model view)."""
    cfg = tiny.config(family, len(keep))
    text, full_text = (cfg.text_config, full.config.text_config) if family == "gemma3-mm" else (cfg, full.config)
    for name in ("layer_types", "no_rope_layers"):
        if getattr(full_text, name, None) is not None:
            setattr(text, name, [getattr(full_text, name)[i] for i in keep])
    if family == "qwen3_moe":  # dense where the full model was dense
        text.decoder_sparse_step = 1
        text.mlp_only_layers = [n for n, i in enumerate(keep) if i in full_text.mlp_only_layers]
    if family == "deepseek_v3":
        text.first_k_dense_replace = sum(i < full_text.first_k_dense_replace for i in keep)
    return cfg


def comparable(config: dict) -> dict:
    """A config's entries without those that say where and how it was saved."""
    return {k: comparable(v) if isinstance(v, dict) else v for k, v in config.items()
            if k not in ("transformers_version", "dtype", "architectures", "_name_or_path")}


def reference_model(family: str, full, keep: list[int]):
    """A fresh model with len(keep) layers whose weights are copied from `full`'s layers `keep`."""
    ref = AutoModelForCausalLM.from_config(reference_config(family, full, keep), dtype=torch.float32).eval()
    prefix = "model.language_model.layers." if family == "gemma3-mm" else "model.layers."
    state = {}
    for name, tensor in full.state_dict().items():
        if name.startswith(prefix):
            idx, rest = name[len(prefix):].split(".", 1)
            if int(idx) in keep:
                state[f"{prefix}{keep.index(int(idx))}.{rest}"] = tensor
        else:
            state[name] = tensor
    ref.load_state_dict(state, strict=True)
    return ref


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_drop_equals_model_built_without_the_layers(family, tmp_path):
    full = tiny.model(family, 6)
    keep = [0, 2, 3, 5]
    expected = reference_model(family, full, keep)(IDS).logits

    with keep_layers(full, keep):
        viewed = full(IDS).logits
    torch.testing.assert_close(viewed, expected, **TOL)

    pruned = drop_layers(tiny.model(family, 6), [1, 4])
    torch.testing.assert_close(pruned(IDS).logits, expected, **TOL)
    assert view(pruned).num_layers == 4 and view(pruned).config.num_hidden_layers == 4

    out = save_pruned(pruned, tiny.tokenizer(), tmp_path / "ckpt", {"removed_layers": [1, 4], "base_model": family})
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(reloaded) is type(full)  # Gemma 3 as shipped reloads with its vision tower
    torch.testing.assert_close(reloaded(IDS).logits, expected, **TOL)
    # the exported config describes the remaining layers exactly: every layer's attention and dense/sparse block
    assert layer_kinds(reloaded.config) == [layer_kinds(full.config)[i] for i in keep]
    assert comparable(reloaded.config.to_dict()) == comparable(reference_config(family, full, keep).to_dict())
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["removed_layers"] == [1, 4] and manifest["num_hidden_layers"] == 4


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_view_restores_the_model(family):
    m = tiny.model(family, 4)
    before = m(IDS).logits
    types = list(getattr(m.config, "layer_types", None) or [])
    with keep_layers(m, [1, 3]):
        pass
    torch.testing.assert_close(m(IDS).logits, before, atol=0, rtol=0)
    assert list(getattr(m.config, "layer_types", None) or []) == types
    assert [[x.layer_idx for x in layer.modules() if hasattr(x, "layer_idx")][0]
            for layer in view(m).layers] == [0, 1, 2, 3]


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_kv_cache_generation_after_drop(family):
    """Stale layer_idx would break or corrupt the KV cache: cached greedy decoding must equal uncached."""
    m = drop_layers(tiny.model(family, 5), [0, 3])
    prompt = IDS[:, :6]
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    cached = m.generate(prompt, use_cache=True, **kw)
    uncached = m.generate(prompt, use_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_gemma3_layer_types_follow_the_layers():
    m = tiny.model("gemma3", 4)  # sliding, full, sliding, full
    drop_layers(m, [0])
    assert m.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]


@pytest.mark.parametrize(
    "layers, message",
    [([4], r"layers has \[4\] out of range; the model has 4 layers \(0..3\)"), ([-1], "out of range"),
     ([1, 1], r"repeats \[1\]"), ([0, 1, 2, 3], "cannot remove all 4 layers"),
     (["2"], "not layer indices; allowed: integers 0..3"), ([1.0], "not layer indices")],
)
def test_bad_layer_lists_are_rejected(layers, message):
    with pytest.raises(ModelError, match=message):
        check_layers(layers, 4)
    m = tiny.model("llama", 4)
    with pytest.raises(ModelError, match=message):
        drop_layers(m, layers)
    assert view(m).num_layers == 4  # nothing changed


def test_unsupported_architecture_is_named():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64))
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'.*llama, mistral, qwen2"):
        drop_layers(gpt2, [0])


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16, torch.float16])
def test_an_export_keeps_the_checkpoints_own_precision(stored, tiny_model_dir, tmp_path):
    """`drop` and `prune` save in the dtype the source is stored in, whatever `dtype: auto` computes in on this
    machine (bf16 where the CPU has native bf16): reloaded, the export's logits are the source's with the same
    layers bypassed, to the last bit."""
    from prunelab.cli import main

    source = tmp_path / "source"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"), dtype=torch.float32).to(stored).save_pretrained(source)
    tiny.tokenizer().save_pretrained(source)
    name = str(stored).removeprefix("torch.")
    want = drop_layers(AutoModelForCausalLM.from_pretrained(source, dtype=stored).eval(), [1, 2])
    for command in (["drop", "--model", str(source), "--layers", "1,2", "--out", str(tmp_path / "drop")],
                    ["prune", "--model", str(source), "--layers", "1,2", "--out", str(tmp_path / "prune")]):
        out = tmp_path / command[0]
        assert main(command) == 0
        assert json.loads((out / "config.json").read_text())["dtype"] == name
        assert json.loads((out / MANIFEST_NAME).read_text())["dtype"] == {"stored": name, "saved": name,
                                                                           "converted": False}
        got = AutoModelForCausalLM.from_pretrained(out, dtype=stored).eval()
        with torch.no_grad():
            assert torch.equal(got(IDS).logits, want(IDS).logits), command[0]
    # converting is on purpose, and said
    assert main(["drop", "--model", str(source), "--layers", "1", "--out", str(tmp_path / "fp16"),
                 "--dtype", "float16"]) == 0
    record = json.loads((tmp_path / "fp16" / MANIFEST_NAME).read_text())["dtype"]
    assert record == {"stored": name, "saved": "float16", "converted": stored != torch.float16}
