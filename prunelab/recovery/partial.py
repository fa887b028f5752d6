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
