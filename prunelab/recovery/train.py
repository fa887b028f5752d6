"""The SFT trainer of recovery, the same in this process and on a Ray Train worker: the pruned model loaded for
(Q)LoRA on one device, TRL's SFTTrainer with the paper's settings, and the merge of the trained adapter."""

import json
import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from prunelab.errors import ConfigError
from prunelab.models.loading import attention_kwargs

log = logging.getLogger(__name__)


def use_nf4(quantization: str, device: torch.device) -> bool:
    """QLoRA (4-bit NF4 base) on GPU when `auto`; plain LoRA on CPU."""
    return quantization == "nf4" or (quantization == "auto" and device.type == "cuda")


def load_for_training(path: str, dtype: str, quantization: str, device: torch.device):
    """The pruned model on `device`: NF4 (double quant, bf16 compute) for QLoRA, else in `dtype` (auto: bf16 on GPU,
    fp32 on CPUs without native bf16). `device_map={"": device}` puts one full copy on this worker's device ("auto"
    would switch on model parallelism and silently turn data parallelism off)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from prunelab.models.loading import resolve_dtype

    if use_nf4(quantization, device):
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        return AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.bfloat16,
                                                    device_map={"": device}, **attention_kwargs(path))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, str(device)),
                                                 **attention_kwargs(path))
    return model.to(device)


def accumulation_steps(training, world_size: int) -> int:
    per_step = training.per_device_batch_size * max(1, world_size)
    if training.batch_size % per_step:
        raise ConfigError(f"training.batch_size ({training.batch_size}) is not a multiple of per_device_batch_size "
                          f"({training.per_device_batch_size}) x workers ({max(1, world_size)}); the effective batch "
                          "is their product times the gradient accumulation steps")
    return training.batch_size // per_step


@contextmanager
def _peft_wrapping():
    """PEFT reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model (PeftModel.__init__):
    that FutureWarning is PEFT's to fix, not the user's (prunelab asks for `activation_checkpointing`), so it is
    silenced there and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _checkpointing_argument(config_class) -> str:
    """transformers 5.23 renamed `gradient_checkpointing` to `activation_checkpointing`; the GPU stack (vLLM 0.33)
    pins transformers below 5.21, which knows only the old name."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def total_steps(training, examples: int, world_size: int) -> int:
    """Optimizer steps of a run, as transformers' Trainer counts them: `max_steps`, or the epochs over batches of
    `per_device_batch_size` on each of `world_size` ranks, `accumulation_steps` batches per step."""
    if training.max_steps:
        return training.max_steps
    batches = math.ceil(examples / (training.per_device_batch_size * max(1, world_size)))
    per_epoch = max(1, math.ceil(batches / accumulation_steps(training, world_size)))
    return max(1, math.ceil(training.epochs * per_epoch))


def warmup_steps(training, steps: int) -> int:
    """Whole warmup steps for a run of `steps`: a fraction below 1 is rounded down (transformers rounds it up, so a
    run of a few steps warmed up for all of them, starting at learning rate 0), and warmup never takes more than
    half the run: a run of one or two steps trains at the full rate."""
    wanted = int(training.warmup_steps * steps) if training.warmup_steps < 1 else int(training.warmup_steps)
    return min(wanted, (steps - 1) // 2)


def training_arguments(args_class, config, model, output_dir: str | Path, world_size: int, examples: int,
                       learning_rate: float | None = None, **extra):
    """`args_class` (SFTConfig or a subclass) with the settings every trained method shares: the effective batch,
    warmup then a constant learning rate, a checkpoint every `save_steps` (and at the end) with optimizer state for
    resumption, tokens counted, and bf16 where the model computes in it."""
    t = config.training
    device = next(model.parameters()).device
    quantized = getattr(model, "is_loaded_in_4bit", False)
    steps = total_steps(t, examples, world_size)
    return args_class(
        output_dir=str(output_dir), learning_rate=learning_rate or t.learning_rate,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=accumulation_steps(t, world_size), num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1, lr_scheduler_type="constant_with_warmup", warmup_steps=warmup_steps(t, steps),
        logging_steps=1, save_strategy="steps", save_steps=t.save_steps, seed=t.seed, data_seed=t.seed,
        bf16=device.type == "cuda" or quantized or model.dtype == torch.bfloat16, fp16=False,
        use_cpu=device.type == "cpu", max_length=t.max_length, report_to="none", dataloader_num_workers=0,
        ddp_find_unused_parameters=False, disable_tqdm=True, save_total_limit=2,
        include_num_input_tokens_seen="non_padding",
        **{_checkpointing_argument(args_class): t.gradient_checkpointing}, **extra)


def lora_config(config):
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def sft_trainer(model, tokenizer, dataset, config, output_dir: str | Path, world_size: int, callbacks=(),
                peft: bool = True, learning_rate: float | None = None):
    """TRL's SFTTrainer for a RecoverConfig: loss on completions only, LoRA on the configured modules (`peft`), or
    the model's own trainable parameters (partial fine-tuning)."""
    from trl import SFTConfig, SFTTrainer

    args = training_arguments(SFTConfig, config, model, output_dir, world_size, len(dataset), learning_rate,
                              packing=False, completion_only_loss=True)
    with _peft_wrapping():
        return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(config) if peft else None, callbacks=list(callbacks))


def trainer(job, config, tokenizer, dataset, device: torch.device, output_dir, world_size: int, callbacks=()):
    """Method sft: (Q)LoRA on the pruned model, TRL's SFTTrainer on the corpus's responses."""
    model = load_for_training(job.model_path, config.model.dtype, config.quantization, device)
    return sft_trainer(model, tokenizer, dataset, config, output_dir, world_size, callbacks)


def check_lora_targets(model_config, target_modules: list[str], model_name: str) -> None:
    """LoRA targets must name linear layers of the model (q_proj ... down_proj in every supported family)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    unknown = [m for m in target_modules if m not in names]
    if unknown:
        raise ConfigError(f"lora.target_modules {unknown} are not linear layers of {model_name!r}; allowed: "
                          f"{', '.join(sorted(names))}")


def checkpoint_dtype(model_path: str, dtype: str) -> torch.dtype:
    """`dtype`, where auto is the dtype the checkpoint is stored in (`models.loading.export_dtype`): what a
    result is saved in, whatever it was computed in."""
    from prunelab.models.loading import export_dtype

    return export_dtype(model_path, "source" if dtype == "auto" else dtype)


def merge_adapter(model_path: str, adapter_dir: str | Path, tokenizer, out_dir: str | Path, dtype: str,
                  files: dict[str, str]) -> Path:
    """The adapter merged into the pruned model reloaded unquantized, saved as a stock checkpoint that `prunelab
    eval` (and vLLM) load; `files` (name -> text) go beside it. It runs where the memory is: loaded straight onto
    this process's GPU if it has one, in `dtype`, where auto is the checkpoint's own dtype (bf16 for released
    models), never an fp32 copy of a bf16 model (~25 GB for a pruned 8B) because the CPU lacks native bf16."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from prunelab.hardware import device_name
    from prunelab.surgery import save_pruned

    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=checkpoint_dtype(model_path, dtype),
                                                device_map={"": device_name()}, **attention_kwargs(model_path))
    with _peft_wrapping():
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    manifest_files = dict(files)
    manifest = manifest_files.pop("prunelab_manifest.json", None)
    return save_pruned(merged, tokenizer, out_dir, json.loads(manifest) if manifest else {}, manifest_files)
