"""Tiny random models, one per supported architecture family, and a small BPE tokenizer, all built in code."""

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers import models as hf

VOCAB = 384
# one tiny random model per supported family (`prunelab.models.view.FAMILIES`); gemma3-mm is the multimodal
# checkpoint (vision tower kept), qwen3_5 the hybrid of linear and full attention
FAMILIES = ("llama", "qwen2", "qwen3", "qwen3_moe", "mistral", "mixtral", "gemma2", "gemma3", "gemma3-mm", "phi3",
            "olmo2", "smollm3", "gpt_oss", "qwen3_5", "deepseek_v3")
# the families with sliding-window layers (every layer in Mistral's case), at the window `config` gives them
SLIDING_FAMILIES = ("mistral", "gemma2", "gemma3", "gemma3-mm", "gpt_oss")

_CORPUS = [
    "Question: What is (4 * 4) * 1? Answer: 16",
    "Question: What is (8 + 3) * 5? Answer: 55",
    "Question: What is (7 + 5) - 6? Answer: 6",
    "The quick brown fox jumps over the lazy dog. A cat sat on the mat.",
    "Which gas do plants take in? Answer: carbon dioxide, oxygen, nitrogen, helium",
    "def add(a, b):\n    return a + b\n",
] + [f"{a} + {b} = {a + b}" for a in range(10) for b in range(10)]


@functools.cache
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def config(family: str, num_layers: int = 4, hidden: int = 32, window: int = 16):
    common = dict(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    alternating = [("sliding_attention" if (i + 1) % 2 else "full_attention") for i in range(num_layers)]
    moe = dict(num_experts_per_tok=2, moe_intermediate_size=hidden)
    if family == "llama":  # with Llama 3.x RoPE scaling
        return hf.llama.LlamaConfig(**common, rope_parameters=dict(
            rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=64))
    if family == "qwen2":
        return hf.qwen2.Qwen2Config(**common, tie_word_embeddings=False)
    if family == "qwen3":
        return hf.qwen3.Qwen3Config(**common, head_dim=hidden // 4)
    if family == "qwen3_moe":  # layers 1 and 2 dense (mlp_only_layers), the others sparse: a removal must keep both
        return hf.qwen3_moe.Qwen3MoeConfig(**common, head_dim=hidden // 4, num_experts=4, mlp_only_layers=[1, 2],
                                           decoder_sparse_step=1, **moe)
    if family == "mistral":
        return hf.mistral.MistralConfig(**common, sliding_window=window)  # every layer slides (no layer_types)
    if family == "mixtral":
        return hf.mixtral.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
    if family == "gemma2":
        return hf.gemma2.Gemma2Config(**common, head_dim=hidden // 4, sliding_window=window, final_logit_softcapping=30.0)
    if family == "gemma3":
        # sliding window of 16 with the pattern 1 global per 2 layers, so short tests exercise both mask types
        return hf.gemma3.Gemma3TextConfig(**common, head_dim=hidden // 4, sliding_window=window, layer_types=alternating)
    if family == "gemma3-mm":  # Gemma 3 as shipped: a vision tower and the language model under model.language_model
        text = hf.gemma3.Gemma3TextConfig(**common, head_dim=hidden // 4, sliding_window=window, layer_types=alternating)
        vision = hf.siglip.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                              num_attention_heads=2, image_size=16, patch_size=8)
        return hf.gemma3.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                                      image_token_index=VOCAB - 1, boi_token_index=VOCAB - 2,
                                      eoi_token_index=VOCAB - 3)
    if family == "phi3":
        return hf.phi3.Phi3Config(**common)
    if family == "olmo2":
        return hf.olmo2.Olmo2Config(**common)
    if family == "smollm3":  # every 4th layer without RoPE (no_rope_layers), so removals must keep the pattern
        return hf.smollm3.SmolLM3Config(**common, no_rope_layer_interval=3)
    if family == "gpt_oss":
        return hf.gpt_oss.GptOssConfig(**common, head_dim=hidden // 4, num_local_experts=4, num_experts_per_tok=2,
                                       sliding_window=window, layer_types=alternating)
    if family == "qwen3_5":
        return hf.qwen3_5.Qwen3_5TextConfig(**common, head_dim=hidden // 4, linear_num_key_heads=2, linear_num_value_heads=2,
                                            linear_key_head_dim=hidden // 4, linear_value_head_dim=hidden // 4,
                                            layer_types=[("full_attention" if i % 2 else "linear_attention")
                                                         for i in range(num_layers)])
    if family == "deepseek_v3":  # multi-head latent attention; the first 2 layers dense, then mixture of experts
        # no grouped heads in MLA: as many key-value heads as query heads. From hidden 256 up (the vLLM tests), the
        # latent and RoPE widths of the real model (512 + 64): vLLM's MLA kernels take that head size only
        latent, rope = (512, 64) if hidden >= 256 else (hidden // 2, hidden // 8)
        return hf.deepseek_v3.DeepseekV3Config(**{**common, "num_key_value_heads": 4}, first_k_dense_replace=2,
                                               n_routed_experts=4, n_shared_experts=1, n_group=1, topk_group=1,
                                               topk_method="noaux_tc", q_lora_rank=hidden // 2, kv_lora_rank=latent,
                                               qk_rope_head_dim=rope, qk_nope_head_dim=hidden // 8,
                                               v_head_dim=hidden // 4, **moe)
    raise ValueError(family)


def model(family: str, num_layers: int = 4, seed: int = 0, dtype=torch.float32, hidden: int = 32, window: int = 16):
    """`window`: the sliding-window families' window (16, so that short tests cross it)."""
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(config(family, num_layers, hidden, window), dtype=dtype)
    # Random init gives near-uniform predictions; larger weights make layers matter, so errors show up in logits.
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
    return m.eval()


def save(path, family: str, num_layers: int = 4, hidden: int = 32):
    """Writes a tiny model of `family` with the test tokenizer as a Hugging Face directory; returns the path."""
    model(family, num_layers, hidden=hidden).save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path
