"""A prunelab driver for the driver-fault tests: `python tests/driver.py STAGE ARGS...` runs `prunelab STAGE ARGS...`
and logs each piece of finished work to $PRUNELAB_TEST_LOG as it is stored: `result TASK CANDIDATE` (a sweep's
results), `shard K` (an SGR shard), `start STEP` / `step STEP` (a training attempt's first step and each step done,
from inside the Ray Train worker). With $PRUNELAB_TEST_DELAY_S set, each is followed by that pause, so a test can
kill the driver at a known point and then read what the rerun computed."""

import logging
import os
import sys
import time

from transformers import TrainerCallback

LOG = os.environ["PRUNELAB_TEST_LOG"]
DELAY_S = float(os.environ.get("PRUNELAB_TEST_DELAY_S") or 0)


def record(line: str) -> None:
    with open(LOG, "a") as f:
        f.write(line + "\n")
    time.sleep(DELAY_S)


class RecordSteps(TrainerCallback):
    """Defined in __main__, so Ray pickles it by value into the training worker (no path to set up there)."""

    def __init__(self, log: str, delay_s: float):
        self.log, self.delay_s = log, delay_s

    def on_train_begin(self, args, state, control, **kw):
        with open(self.log, "a") as f:
            f.write(f"start {state.global_step}\n")

    def on_step_end(self, args, state, control, **kw):
        with open(self.log, "a") as f:
            f.write(f"step {state.global_step}\n")
        time.sleep(self.delay_s)


class RecordStored(logging.Handler):
    """What the store and the SGR shards log as they write (at DEBUG), recorded; anything else of WARNING and
    above is printed as the CLI would print it."""

    def emit(self, entry: logging.LogRecord) -> None:
        words = entry.getMessage().split()
        if words[:2] == ["stored", "results"]:
            record(f"result {words[2]} {words[3]}")
        elif words[:2] == ["stored", "shard"]:
            record(f"shard {words[2]}")
        elif entry.levelno >= logging.WARNING:
            print(f"{entry.levelname} {entry.getMessage()}", file=sys.stderr)


def instrument() -> None:
    import prunelab.distributed.train as ray_train

    for name in ("prunelab.results", "prunelab.sgr.shards"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(RecordStored())
        logger.propagate = False
    train_on_ray = ray_train.train_on_ray

    def train(job, workers, out, callbacks=()):  # the training worker is another process: a callback records there
        return train_on_ray(job, workers, out, [*callbacks, RecordSteps(LOG, DELAY_S)])

    ray_train.train_on_ray = train


if __name__ == "__main__":
    instrument()
    from prunelab.cli import main

    sys.exit(main(sys.argv[1:]))
