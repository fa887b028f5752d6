"""A prunelab driver for the driver-fault tests: `python tests/driver.py STAGE ARGS...` runs `prunelab STAGE ARGS...`
and logs each piece of finished work to $PRUNELAB_TEST_LOG as it is stored: `result TASK CANDIDATE` (a sweep's
results), `shard K` (an SGR shard), `start STEP` / `step STEP` (a training attempt's first step and each step done,
from inside the Ray Train worker). With $PRUNELAB_TEST_DELAY_S set, each is followed by that pause, so a test can
kill the driver at a known point and then read what the rerun computed."""

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


def instrument() -> None:
    import prunelab.distributed.train as ray_train
    from prunelab.results import ResultsStore
    from prunelab.sgr.shards import CorpusShards

    store_write, shard_write, train_on_ray = ResultsStore.write, CorpusShards.write, ray_train.train_on_ray

    def write_results(self, task, candidate, rows):
        path = store_write(self, task, candidate, rows)
        record(f"result {task} {candidate.name}")
        return path

    def write_shard(self, shard, rows):
        path = shard_write(self, shard, rows)
        record(f"shard {shard}")
        return path

    def train(job, workers, out, callbacks=()):
        return train_on_ray(job, workers, out, [*callbacks, RecordSteps(LOG, DELAY_S)])

    ResultsStore.write, CorpusShards.write, ray_train.train_on_ray = write_results, write_shard, train


if __name__ == "__main__":
    instrument()
    from prunelab.cli import main

    sys.exit(main(sys.argv[1:]))
