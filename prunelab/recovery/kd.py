"""Logit distillation (method kd): the pruned model, with (Q)LoRA, learns the unpruned model's next-token
distribution on the corpus's texts, under TRL's generalized Jensen-Shannon divergence (`beta`), on a share `lmbda`
of steps on its own samples instead (on-policy, GKD: Agarwal et al., ICLR 2024).

TRL 1.16's stable `DistillationTrainer` trains on-policy only (the student writes every completion); off-policy
distillation on a fixed corpus, which keeps every arm on the same texts, is its `GKDTrainer` (trl.experimental.gkd),
whose `lmbda` is the on-policy share."""

import warnings

import torch

from prunelab.errors import ConfigError
from prunelab.models.loading import attention_kwargs


def check_teacher(teacher_tokenizer, teacher_config, student_tokenizer, student_config, teacher: str) -> None:
    """The divergence compares the two distributions token by token: same vocabulary, same token ids."""
    t_vocab, s_vocab = teacher_config.get_text_config().vocab_size, student_config.get_text_config().vocab_size
    if t_vocab != s_vocab:
        raise ConfigError(f"kd.teacher {teacher!r} has a vocabulary of {t_vocab} tokens, the pruned model {s_vocab}: "
                          "distillation compares next-token distributions, so teacher and student must share a "
                          "tokenizer (leave kd.teacher unset to distil from the base model)")
    t_ids, s_ids = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if t_ids != s_ids:
        differ = sorted(set(t_ids.items()) ^ set(s_ids.items()), key=str)[:3]
        raise ConfigError(f"kd.teacher {teacher!r} has another tokenizer than the pruned model (e.g. {differ}): "
                          "distillation compares next-token distributions, so teacher and student must share a "
                          "tokenizer (leave kd.teacher unset to distil from the base model)")


def load_teacher(path: str, dtype: str, device: torch.device):
    """The teacher in inference mode on the student's device: bf16 on a GPU, else `dtype` as a CPU resolves it."""
    from transformers import AutoModelForCausalLM

    from prunelab.models.loading import resolve_dtype

    torch_dtype = torch.bfloat16 if device.type == "cuda" else resolve_dtype(dtype, str(device))
    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, device_map={"": device},
                                                   **attention_kwargs(path))
    return teacher.eval().requires_grad_(False)


def as_messages(dataset):
    """GKD's collator reads whole conversations from `messages` (a `prompt` column would be taken for the prompt
    already formatted as text)."""
    return dataset.map(lambda e: {"messages": e["prompt"] + e["completion"]}, remove_columns=dataset.column_names)


def kd_trainer(model, teacher, tokenizer, dataset, config, output_dir, world_size: int, callbacks=()):
    from prunelab.recovery.train import _peft_wrapping, lora_config, training_arguments

    with warnings.catch_warnings():  # the experimental-API notice: prunelab pins trl and tests this trainer
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    kd = config.kd
    args = training_arguments(GKDConfig, config, model, output_dir, world_size, len(dataset), lmbda=kd.lmbda,
                              beta=kd.beta, temperature=kd.temperature, max_new_tokens=kd.max_new_tokens)
    with _peft_wrapping():
        return GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=as_messages(dataset),
                          processing_class=tokenizer, peft_config=lora_config(config), callbacks=list(callbacks))


def trainer(job, config, tokenizer, dataset, device: torch.device, output_dir, world_size: int, callbacks=()):
    """Method kd: (Q)LoRA on the pruned model, distilling the teacher's next-token distribution."""
    from prunelab.recovery.train import load_for_training

    model = load_for_training(job.model_path, config.model.dtype, config.quantization, device)
    teacher = load_teacher(job.teacher_path, config.model.dtype, device)
    return kd_trainer(model, teacher, tokenizer, dataset, config, output_dir, world_size, callbacks)


def needs(config, facts, manifest: dict) -> dict:
    """The teacher: kd.teacher, or the base model the pruning manifest names; its tokenizer must be the student's."""
    from pathlib import Path

    from prunelab.config import ModelSpec
    from prunelab.errors import DataError
    from prunelab.models import inspect_model
    from prunelab.surgery import MANIFEST_NAME

    teacher_name = config.kd.teacher or manifest.get("base_model_path")
    if not teacher_name:
        raise DataError(f"method kd distils from the base model, and {config.model.name!r} has no pruning "
                        f"manifest ({MANIFEST_NAME}) naming it: set kd.teacher")
    teacher = inspect_model(ModelSpec(name=teacher_name, dtype=config.model.dtype))
    check_teacher(teacher.tokenizer, teacher.config, facts.tokenizer, facts.config, teacher_name)
    return {"teacher_path": str(Path(teacher.path).resolve()) if Path(teacher.path).exists() else teacher.path}
