"""Layer surgery: in-memory removal, temporary views and exported checkpoints all equal an independently built model."""

import json

import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from prunelab.errors import ModelError
from prunelab.surgery import MANIFEST_NAME, check_layers, drop_layers, keep_layers, save_pruned

IDS = torch.tensor([[1, 17, 45, 99, 3, 250, 7, 61, 88, 120, 33, 5, 77, 200, 14, 9, 300, 41, 52, 8, 19, 90]])
TOL = dict(atol=1e-5, rtol=1e-4)  # fp32; the same weights in the same order of operations


def reference_model(family: str, full, keep: list[int]):
    """A fresh model with len(keep) layers whose weights are copied from `full`'s layers `keep`."""
    cfg = tiny.config(family, len(keep))
    if getattr(full.config, "layer_types", None) is not None:
        cfg.layer_types = [full.config.layer_types[i] for i in keep]
    ref = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    state = {}
    for name, tensor in full.state_dict().items():
        if name.startswith("model.layers."):
            idx, rest = name[len("model.layers."):].split(".", 1)
            if int(idx) in keep:
                state[f"model.layers.{keep.index(int(idx))}.{rest}"] = tensor
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
    assert pruned.config.num_hidden_layers == 4

    out = save_pruned(pruned, tiny.tokenizer(), tmp_path / "ckpt", {"removed_layers": [1, 4], "base_model": family})
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(IDS).logits, expected, **TOL)
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
    assert [l.self_attn.layer_idx for l in m.model.layers] == [0, 1, 2, 3]


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
    assert len(m.model.layers) == 4  # nothing changed


def test_unsupported_architecture_is_named():
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64))
    with pytest.raises(ModelError, match="unsupported architecture 'gpt2'.*llama, qwen2"):
        drop_layers(gpt2, [0])
