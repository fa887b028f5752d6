"""Where a stage computes: the one thing a stage's `run(config, runtime)` gets besides its config. The CLI and
`jobs/` build it (on Ray: `prunelab.distributed.ray_runtime`; without: `Runtime.in_process()`), so no stage starts
or attaches to Ray itself.

    executor(ray_spec)   a context-managed executor of candidate units (sweep, compare, eval, iterative prune),
                         sized by the stage's `ray` section
    sgr                  a runner factory for SGR responses (None: transformers generate in this process)
    trainer(workers)     a recovery trainer for the stage's `workers` (None: train in this process)
    measuring(ray_spec)  place(fn, *args): runs fn where the stage's measurements run (cost), a Ray task sized like
                         one of `ray.actors`, or here
    worker_task(workers) place(fn, *args): runs fn where a recovery worker runs (the adapter merge: on a GPU node,
                         not on a small head), or here
"""

from collections.abc import Callable
from dataclasses import dataclass


def _in_process_executor(ray_spec=None):
    from prunelab.execution.run import InProcessExecutor

    return InProcessExecutor()


def here(fn, *args):
    """Runs `fn` in this process: where a runtime without a cluster measures."""
    return fn(*args)


def _measure_here(ray_spec=None):
    return here


def _merge_here(workers=None):
    return here


@dataclass(frozen=True)
class Runtime:
    executor: Callable = _in_process_executor
    sgr: Callable | None = None
    trainer: Callable | None = None
    measuring: Callable = _measure_here
    worker_task: Callable = _merge_here
    progress: bool = True

    @classmethod
    def in_process(cls, progress: bool = True) -> "Runtime":
        """No Ray: one worker in this process, SGR and training in this process."""
        return cls(progress=progress)


__all__ = ["Runtime", "here"]
