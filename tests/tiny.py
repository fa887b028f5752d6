"""Tiny random models, one per supported architecture family, and a small BPE tokenizer, all built in code."""

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

VOCAB = 384
FAMILIES = ("llama", "qwen2", "mistral", "gemma2", "gemma3")

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


def config(family: str, num_layers: int = 4, hidden: int = 32):
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
    if family == "llama":
        return LlamaConfig(**common)
    if family == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=False)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "gemma2":
        return Gemma2Config(**common, head_dim=8, sliding_window=16, final_logit_softcapping=30.0)
    if family == "gemma3":
        # sliding window of 16 with the pattern 1 global per 2 layers, so short tests exercise both mask types
        return Gemma3TextConfig(**common, head_dim=8, sliding_window=16, sliding_window_pattern=2,
                                layer_types=[("sliding_attention" if (i + 1) % 2 else "full_attention")
                                             for i in range(num_layers)])
    raise ValueError(family)


def model(family: str, num_layers: int = 4, seed: int = 0, dtype=torch.float32, hidden: int = 32):
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(config(family, num_layers, hidden), dtype=dtype)
    # Random init gives near-uniform predictions; larger weights make layers matter, so errors show up in logits.
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return m.eval()


def save(path, family: str, num_layers: int = 4, hidden: int = 32):
    """Writes a tiny model of `family` with the test tokenizer as a Hugging Face directory; returns the path."""
    model(family, num_layers, hidden=hidden).save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path
