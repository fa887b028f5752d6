"""The model view's refusals: an unsupported family (exit 2, naming its model_type and the supported ones), a model
under a known model_type whose decoder is not where its family keeps it, a checkpoint that needs its own code, and a
removal that leaves a hybrid model with linear-attention layers only; each before anything is written."""

import json

import pytest
import tiny
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from prunelab.cli import main
from prunelab.config import ModelSpec
from prunelab.errors import ModelError
from prunelab.models import inspect_model, load_model
from prunelab.models.view import SUPPORTED_MODEL_TYPES, layer_kinds, view
from prunelab.surgery import drop_layers

REMOTE_CONFIG = '''
from transformers import PretrainedConfig


class CustomConfig(PretrainedConfig):
    model_type = "custom_decoder"
'''


def test_an_unsupported_family_exits_2_naming_it_and_the_supported_ones(tmp_path, capsys):
    path = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=tiny.VOCAB)).save_pretrained(path)
    tiny.tokenizer().save_pretrained(path)
    out = tmp_path / "out"
    assert main(["drop", "--model", str(path), "--layers", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unsupported architecture 'gpt2'" in err and ", ".join(SUPPORTED_MODEL_TYPES) in err
    assert main(["eval", "--local", "--model", str(path), "--tasks", "arithmetic", "--limit", "2", "--out", str(out),
                 "--no-progress"]) == 2
    assert "unsupported architecture 'gpt2'" in capsys.readouterr().err
    assert not out.exists()


class Renamed(nn.Module):
    """A custom class under model_type llama whose decoder stack is not at `.model.layers`."""

    def __init__(self):
        super().__init__()
        inner = tiny.model("llama", 2)
        self.config = inner.config
        self.transformer, self.lm_head = inner.model, inner.lm_head


def test_a_model_whose_decoder_is_elsewhere_is_refused_not_cut_wrong():
    model = Renamed()
    with pytest.raises(ModelError, match=r"does not have the layout of its family: expected decoder layers at "
                                         r"\.model\.layers.*custom model class"):
        drop_layers(model, [0])
    assert len(model.transformer.layers) == 2


def test_a_checkpoint_with_its_own_code_is_refused_unless_asked(tmp_path):
    path = tmp_path / "remote"
    path.mkdir()
    (path / "configuration_custom.py").write_text(REMOTE_CONFIG)
    (path / "config.json").write_text(json.dumps({"model_type": "custom_decoder",
                                                  "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}))
    tiny.tokenizer().save_pretrained(path)
    with pytest.raises(ModelError, match=r"needs code that ships with the checkpoint.*model.trust_remote_code: true"):
        inspect_model(ModelSpec(name=str(path)))
    # asked for, the code runs, and the family check applies to what it defines
    with pytest.raises(ModelError, match="unsupported architecture 'custom_decoder'"):
        inspect_model(ModelSpec(name=str(path), trust_remote_code=True))


def test_a_hybrid_sweep_runs_every_layer(tmp_path, capsys):
    """Once refused, a sweep of a hybrid now scores every layer removed (scores against the really pruned model:
    tests/test_engine.py and tests/test_sweep.py)."""
    path = tiny.save(tmp_path / "hybrid", "qwen3_5", 4)
    out = tmp_path / "sweep"
    config = {"kind": "sweep", "name": "h", "model": {"name": str(path), "dtype": "float32"},
              "tasks": [{"name": "arithmetic", "limit": 2}], "output_dir": str(out)}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    assert main(["sweep", str(tmp_path / "c.yaml"), "--local", "--no-progress"]) == 0
    rows = (out / "retention.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["base", "drop-0", "drop-1", "drop-2", "drop-3"]


def test_a_removal_that_leaves_a_hybrid_without_attention_is_refused_before_anything_is_written(tmp_path, capsys):
    path = tiny.save(tmp_path / "hybrid", "qwen3_5", 4)  # linear, full, linear, full
    out = tmp_path / "pruned"
    assert main(["drop", "--model", str(path), "--layers", "1,3", "--out", str(out)]) == 2
    assert "leaves qwen3_5_text with linear-attention layers only; keep at least one of its attention layers [1, 3]" \
        in capsys.readouterr().err
    assert not out.exists()
    model = tiny.model("qwen3_5", 4)
    with pytest.raises(ModelError, match="linear-attention layers only"):
        drop_layers(model, [1, 3])
    assert view(model).num_layers == 4 and model.config.layer_types[1] == "full_attention"  # nothing changed
    drop_layers(model, [0, 3])  # one attention layer left: generation with its cache works
    assert model.generate(torch.tensor([[1, 17, 45]]), max_new_tokens=4, do_sample=False, pad_token_id=0).shape[1] == 7


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_a_loaded_family_keeps_its_layer_kinds_through_a_reload(family, tmp_path):
    """load_model (the path every stage takes) reads each family as it was saved, layer kinds included."""
    path = tiny.save(tmp_path / family, family, 4)
    model, _ = load_model(str(path), dtype="float32")
    assert layer_kinds(model.config) == layer_kinds(tiny.config(family, 4))
    ids = torch.tensor([[1, 17, 45, 99, 3]])
    torch.testing.assert_close(model(ids).logits, tiny.model(family, 4)(ids).logits)


def test_a_family_that_softcaps_attention_loads_with_eager_attention(tiny_model_dir):
    """Gemma 2's attention-logit softcap exists only in eager attention (SDPA drops it); the others keep their
    default."""
    from prunelab.models import load_model

    gemma2, _ = load_model(str(tiny_model_dir("gemma2")), dtype="float32")
    llama, _ = load_model(str(tiny_model_dir("llama")), dtype="float32")
    assert gemma2.config.attn_logit_softcapping and gemma2.config._attn_implementation == "eager"
    assert llama.config._attn_implementation != "eager"
