"""Lines that Ray's own workers send to the driver's log and that ask nothing of the user, dropped there.

- Ray's C++ core worker logs, at ERROR, "Actor with class name: ... has constructor arguments in the object store
  and max_restarts > 0" for every actor Ray Data and Ray Train start (their constructor arguments are theirs, not
  prunelab's; ray-project/ray#53727): once per SGR and per recover run, reading as a failure.
- Ray Train's placement-group cleaner warns "Failed to query Ray Train Controller actor state ... Continuing to
  monitor" when the cluster shuts down under it.
- Blank lines that Ray Train workers print, which reach the log as an empty "(RayTrainWorker pid=...)" line.

The Python logger's line is silenced at its source: its level, set in every worker process of a Ray instance that
prunelab starts (`quiet_worker_loggers`, Ray's `worker_process_setup_hook`). A C++ log line has no logger and no
setting for one message (the only switch, RAY_BACKEND_LOG_LEVEL, would also hide Ray's real errors, from its log
files too), and raising Ray's inline-argument size does not keep those arguments out of the object store (tried:
Ray Data puts them there itself). So that line, and blank lines, are dropped where the driver prints its workers'
lines: Ray's log dispatcher (`ray._private.ray_logging`, a private seam; where a Ray release moves it, the lines pass
as before and nothing else changes). Every other line, Ray's own errors included, passes unchanged. The same
message from the driver's own core worker (Ray Data's actors are created there) goes straight to its stderr and
stays.
"""

import logging
import re

NOISE = (
    re.compile(r"core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store and "
               r"max_restarts > 0"),
)
_HANDLER = "ray_print_logs"
# loggers of Ray's own whose warnings ask nothing of the user, and the level they are raised to
QUIET_LOGGERS = {"ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR}
SETUP_HOOK = "prunelab.distributed.worker_logs.quiet_worker_loggers"


def quiet_worker_loggers() -> None:
    """Ray's `worker_process_setup_hook` for a Ray instance prunelab starts: runs in each worker process."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def is_noise(line: str) -> bool:
    return not line.strip() or any(pattern.search(line) for pattern in NOISE)


def _filtered(handle):
    def handle_kept(data: dict) -> None:
        lines = [line for line in data.get("lines", []) if not is_noise(line)]
        if lines:
            handle({**data, "lines": lines})

    handle_kept.prunelab_filter = True
    return handle_kept


def quiet_worker_logs() -> bool:
    """Wraps the driver's printer of worker lines with the filter above (once); False where Ray has no such
    printer (log_to_driver off, or a release that moved it)."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    handlers = getattr(dispatcher, "handlers", None)
    if not isinstance(handlers, list):
        return False
    with dispatcher._lock:
        found = False
        for i, (name, handle) in enumerate(dispatcher.handlers):
            if name == _HANDLER:
                found = True
                if not getattr(handle, "prunelab_filter", False):
                    dispatcher.handlers[i] = (name, _filtered(handle))
    return found


__all__ = ["NOISE", "QUIET_LOGGERS", "SETUP_HOOK", "is_noise", "quiet_worker_loggers", "quiet_worker_logs"]
