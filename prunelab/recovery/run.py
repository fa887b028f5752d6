"""One training run of recovery, as a job that a worker can run from plain data: the same in this process and on a
Ray Train worker (`prunelab.distributed.train`), which adds its report callback and its checkpoint to resume from."""

from dataclasses import asdict, dataclass
from pathlib import Path

from prunelab.hardware import device_name

CHECKPOINTS = "checkpoints"  # in-process training's Hugging Face checkpoints
FINAL_CHECKPOINT = "final-checkpoint"  # Ray Train's last checkpoint, copied out of its storage
RAY_STORAGE = "train"  # Ray Train's run directories when workers.storage_path is unset


def resume_state(out: Path, storage_path: str | None, run_name: str) -> list[Path]:
    """What a recovery keeps only to resume an interrupted training (weights and optimizer state per checkpoint): the
    in-process checkpoints, Ray Train's final copy, and its run directory (local storage only: a remote URI's is
    the cluster's to manage)."""
    paths = [out / CHECKPOINTS, out / FINAL_CHECKPOINT, out / RAY_STORAGE]
    if storage_path and "://" not in storage_path:
        paths.append(Path(storage_path) / run_name)
    return paths


@dataclass(frozen=True)
class TrainJob:
    config: dict  # RecoverConfig, as JSON
    model_path: str  # the pruned checkpoint
    chat_template: str  # the corpus's, so the model is trained the way the corpus was asked
    run_name: str  # a stable name per output directory and identity: a rerun resumes it
    storage_path: str  # Ray Train's checkpoints (shared storage on a cluster)
    teacher_path: str | None = None  # kd: the model distilled from

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(job: TrainJob):
    """(config, tokenizer, dataset, counts) of a job: the corpus's rows as prompt-completion examples that fit."""
    from datasets import Dataset

    from prunelab.config import RecoverConfig
    from prunelab.models import load_tokenizer
    from prunelab.models.templates import apply_template
    from prunelab.recovery.data import select_examples

    config = RecoverConfig.model_validate(job.config)
    tokenizer = apply_template(load_tokenizer(job.model_path), job.chat_template)
    examples, counts = select_examples(config.corpus, config.responses, tokenizer, config.training.max_length,
                                       config.paired, config.reasoning)
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    return config, tokenizer, dataset, counts


def train(job: TrainJob, device, world_size: int, output_dir: str | Path, resume_from: str | None = None,
          callbacks=()):
    """Trains (or resumes from `resume_from`, a Hugging Face checkpoint directory); returns the trainer."""
    from transformers import PrinterCallback

    from prunelab.progress import quiet_library_bars, training_progress
    from prunelab.recovery.methods import make_trainer, trained_method

    quiet_library_bars()  # a Ray Train worker's output is a log
    config, tokenizer, dataset, _ = prepare(job)
    trainer = make_trainer(trained_method(config), job, config, tokenizer, dataset, device, output_dir, world_size,
                           [*callbacks, training_progress()])
    # with its own bar off, the Trainer prints every log as a dict: the progress line shows the loss, and
    # training_curve.csv keeps every logged value
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer


def train_in_process(job: TrainJob, out: Path, callbacks=()) -> Path:
    """Trains in this process with checkpoints under `out/checkpoints` (a rerun resumes from the last); returns the
    final checkpoint directory."""
    import torch
    from transformers.trainer_utils import get_last_checkpoint

    checkpoints = out / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    device = torch.device(device_name())
    train(job, device, 1, checkpoints, get_last_checkpoint(str(checkpoints)), callbacks)
    return Path(get_last_checkpoint(str(checkpoints)))
