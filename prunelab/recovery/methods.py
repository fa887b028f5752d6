"""What every recovery method shares, asked of the method's module (`prunelab.recovery.registry` says which):
its trainer, what it reads besides the corpus, and the parameters it trains."""

import importlib

import torch

from prunelab.recovery.registry import RecoveryMethod, trained


def trained_method(config) -> RecoveryMethod | None:
    """The training a RecoverConfig runs: its method's, what it trains after itself (linear's `then`), or none."""
    return trained(config.method, config)


def make_trainer(method: RecoveryMethod, job, config, tokenizer, dataset, device: torch.device, output_dir,
                 world_size: int, callbacks=()):
    """The method's trainer (its module's `trainer`), on `device`, for a group of `world_size` workers."""
    return importlib.import_module(method.module).trainer(job, config, tokenizer, dataset, device, output_dir,
                                                          world_size, callbacks)


def transform(name: str, config, needs: dict, tokenizer, manifest: dict, out_dir: str, place) -> dict:
    """Method `name`'s transformation of the model (its module's `transform`): writes a checkpoint in `out_dir`,
    returns its record."""
    from prunelab.recovery.registry import method

    return importlib.import_module(method(name).module).transform(config, needs, tokenizer, manifest, out_dir, place)


def method_needs(name: str, config, facts, manifest: dict) -> dict:
    """What method `name` reads besides the corpus (its module's `needs`), checked before anything is written."""
    from prunelab.recovery.registry import method

    module = importlib.import_module(method(name).module)
    return module.needs(config, facts, manifest) if hasattr(module, "needs") else {}


def trainable_parameters(model_config, config, method: RecoveryMethod) -> int:
    """Parameters the method trains, counted on an empty (meta) model: LoRA's r x (in + out) per targeted linear
    layer, or the full weights of what partial fine-tuning unfreezes."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    if not method.adapter:
        from prunelab.recovery.partial import freeze_all_but_last

        return freeze_all_but_last(model, config.partial.layers)
    targets = set(config.lora.target_modules)
    return sum(config.lora.r * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)
