"""A line on stderr every `PRUNELAB_HEARTBEAT_S` seconds (60; 0: none) while a generation runs, so that minutes of
decoding on a CPU (an evaluation's generative task is one call; a sweep's generative unit, one call for every
candidate) are not minutes of silence. In a Ray actor the line reaches the driver's log with the actor's pid.

    beat = Heartbeat("generate 32 rows")
    beat(lambda: f"token {t}/{n}")     # from the decode loop: prints only when the interval has passed
"""

import os
import sys
import time
from collections.abc import Callable


def interval_s() -> float:
    return float(os.environ.get("PRUNELAB_HEARTBEAT_S", "60"))


class Heartbeat:
    def __init__(self, what: str):
        self.what, self.interval = what, interval_s()
        self.start = self.last = time.perf_counter()

    def __call__(self, state: Callable[[], str]) -> bool:
        """Prints `what: state() (seconds so far)` when the interval has passed since the last line; returns
        whether it did. `state` is only called then."""
        now = time.perf_counter()
        if self.interval <= 0 or now - self.last < self.interval:
            return False
        self.last = now
        print(f"{self.what}: {state()} ({now - self.start:.0f} s)", file=sys.stderr, flush=True)
        return True
