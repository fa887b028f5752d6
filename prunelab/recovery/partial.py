"""Partial-layer fine-tuning (method partial): the output head, the final norm and the last k decoder layers
trained with all their weights, every other parameter frozen (Lu et al., ICLR 2026: better than LoRA after
pruning). No adapter: the trained checkpoint is the result."""

import torch

from prunelab.errors import ConfigError
from prunelab.models.loading import attention_kwargs


def trained_modules(model, layers: int) -> list[torch.nn.Module]:
    from prunelab.models.view import view

    v = view(model)
    if layers > v.num_layers:
        raise ConfigError(f"partial.layers={layers} is more than the {v.num_layers} layers the pruned model has "
                          f"left; at most {v.num_layers}")
    return [v.head, v.norm, *list(v.layers)[v.num_layers - layers:]]


def freeze_all_but_last(model, layers: int) -> int:
    """Freezes every parameter but those of the head, the final norm and the last `layers` layers (a tied head
    trains the embedding it shares); returns how many parameters train."""
    model.requires_grad_(False)
    for module in trained_modules(model, layers):
        module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_for_partial(path: str, dtype: str, device: torch.device, layers: int):
    """The pruned model for training: frozen weights in `dtype` (auto: bf16 on a GPU or a CPU with native bf16),
    the trained ones in fp32, as mixed precision keeps its master weights: in bf16, AdamW's steps at a full
    fine-tuning learning rate (~1e-3 of a weight) fall below its rounding and are lost."""
    from transformers import AutoModelForCausalLM

    from prunelab.models.loading import resolve_dtype

    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, str(device)),
                                                 device_map={"": device}, **attention_kwargs(path))
    freeze_all_but_last(model, layers)
    for module in trained_modules(model, layers):
        module.float()
    return model


def trainer(job, config, tokenizer, dataset, device: torch.device, output_dir, world_size: int, callbacks=()):
    """Method partial: the last layers, final norm and head trained fully (TRL's SFTTrainer without an adapter)."""
    from prunelab.recovery.train import sft_trainer

    model = load_for_partial(job.model_path, config.model.dtype, device, config.partial.layers)
    return sft_trainer(model, tokenizer, dataset, config, output_dir, world_size, callbacks, peft=False,
                       learning_rate=config.partial.learning_rate)


def needs(config, facts, manifest: dict) -> dict:
    """Nothing besides the corpus; the model must have `partial.layers` layers to train (checked on a meta model)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        trained_modules(AutoModelForCausalLM.from_config(facts.config), config.partial.layers)
    return {}
