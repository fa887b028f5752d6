"""The recovery methods behind `recover.method`, one module each: what a trained method builds on a worker (the
model it trains and its trainer), and what its result is (an adapter to merge, or the trained weights).

    sft      (Q)LoRA, SFT on the corpus's responses             recovery/train.py
    kd       (Q)LoRA, distilling the base model's logits        recovery/kd.py
    partial  the last layers, final norm and head, all weights  recovery/partial.py
    linear   no training: least-squares maps folded in          recovery/linear.py (then: sft or kd on top)
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrainedMethod:
    name: str
    adapter: bool  # its result is a LoRA adapter to merge; else the trained checkpoint itself

    def trainer(self, job, config, tokenizer, dataset, device: torch.device, output_dir, world_size: int,
                callbacks=()):
        from prunelab.recovery.train import load_for_training, sft_trainer

        if self.name == "partial":
            from prunelab.recovery.partial import load_for_partial

            model = load_for_partial(job.model_path, config.model.dtype, device, config.partial.layers)
            return sft_trainer(model, tokenizer, dataset, config, output_dir, world_size, callbacks, peft=False,
                               learning_rate=config.partial.learning_rate)
        model = load_for_training(job.model_path, config.model.dtype, config.quantization, device)
        if self.name == "kd":
            from prunelab.recovery.kd import kd_trainer, load_teacher

            teacher = load_teacher(job.teacher_path, config.model.dtype, device)
            return kd_trainer(model, teacher, tokenizer, dataset, config, output_dir, world_size, callbacks)
        return sft_trainer(model, tokenizer, dataset, config, output_dir, world_size, callbacks)


TRAINED = {"sft": TrainedMethod("sft", adapter=True), "kd": TrainedMethod("kd", adapter=True),
           "partial": TrainedMethod("partial", adapter=False)}


def trained_method(config) -> TrainedMethod | None:
    """The training a RecoverConfig runs: its method's, linear's `then`, or none (linear alone)."""
    name = config.linear.then if config.method == "linear" else config.method
    return TRAINED[name] if name else None


def trainable_parameters(model_config, config, method: TrainedMethod) -> int:
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
