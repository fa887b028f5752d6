"""Progress of a long step, in a terminal and in a log alike.

    with bar(total=64, desc="calibration", unit="text") as b: ... b.update(8)

Where stderr is a terminal this is tqdm's bar. Elsewhere (a log file, `nohup`, a Ray worker whose output the driver
collects) tqdm's carriage-return updates would pile up as one endless line, so the same tqdm writes whole lines
instead, at most one every `PRUNELAB_HEARTBEAT_S` seconds (60; the heartbeat of long generations) and one when the
step ends: a long step is never minutes of silence, and a log stays a few lines long.

`TrainingProgress` is the same for a trainer: steps done, the last loss and the time left, on the first worker.
"""

import io
import os
import sys

from tqdm import tqdm


def interval_s() -> float:
    return float(os.environ.get("PRUNELAB_HEARTBEAT_S", "60"))


class _Lines(io.TextIOBase):
    """A file for tqdm that turns each redraw into one line on stderr."""

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False,
        **kwargs) -> tqdm:
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=_Lines(),
                mininterval=interval_s(), ascii=True, ncols=100, **kwargs)


def quiet_library_bars() -> None:
    """In a log (stderr not a terminal), the libraries' own bars (transformers' "Loading weights" and "Writing model
    shards", datasets' map passes) are carriage-return lines that pile up: they are turned off there, at their
    source, through the variables both read (processes started from this one, Ray's local workers, inherit them; a
    user's own setting wins), or their switches where they are imported already. prunelab's bars (`bar`) say what
    those steps do, as lines. In a terminal they stay."""
    if sys.stderr.isatty():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow huggingface_hub's
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def training_progress():
    """A `transformers.TrainerCallback` that shows optimizer steps with the last logged loss and the time left (the
    trainer's own bar is off: every worker would draw one)."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = bar(total=state.max_steps, desc="train", unit="step", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingProgress()


__all__ = ["bar", "interval_s", "quiet_library_bars", "training_progress"]
