"""HumanEval+ and MBPP+ test inputs from EvalPlus, when its data is reachable: the file named by evalplus's own
override variables (HUMANEVAL_OVERRIDE_PATH, MBPP_OVERRIDE_PATH), evalplus's download cache, or a download when
online. Needs the `evalplus` package (`pip install 'prunelab[plus]'`); without it, or offline with no file, code
tasks run the benchmarks' base tests and say so in every table.
"""

import base64
import logging
import os
import pickle
import socket
import time

from prunelab.errors import DataError

log = logging.getLogger(__name__)

_OVERRIDE = {"humaneval": "HUMANEVAL_OVERRIDE_PATH", "mbpp": "MBPP_OVERRIDE_PATH"}
_NAME = {"humaneval": "HumanEvalPlus", "mbpp": "MbppPlus"}
RETRY_AFTER_S = 24 * 3600


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("PRUNELAB_OFFLINE") == "1"


def plus_tasks(benchmark: str) -> dict[str, dict] | None:
    """{item id of the benchmark ("HumanEval/0", "2"): {entry_point, reference_source, inputs_b64, atol}}, or None
    when EvalPlus data is not available."""
    try:
        import evalplus.data.humaneval as humaneval
        import evalplus.data.mbpp as mbpp
        from evalplus.data.utils import get_dataset_metadata
    except ImportError:
        return None
    override = os.environ.get(_OVERRIDE[benchmark])
    module = humaneval if benchmark == "humaneval" else mbpp
    # evalplus reads its override variable once, at import; honour one set later (e.g. by a test or a notebook)
    setattr(module, _OVERRIDE[benchmark], override)
    version = humaneval.HUMANEVAL_PLUS_VERSION if benchmark == "humaneval" else mbpp.MBPP_PLUS_VERSION
    _, cached = get_dataset_metadata(_NAME[benchmark], version, mini=False)
    # a failed download is remembered beside evalplus's cache, so a machine found offline is not asked again (and
    # warned about again) by every task of every command for a day
    unreachable = f"{cached}.unreachable"
    if not override and not os.path.exists(cached):
        if _offline():
            return None
        if os.path.exists(unreachable) and time.time() - os.path.getmtime(unreachable) < RETRY_AFTER_S:
            log.info("EvalPlus data for %s was unreachable at %s; using the base tests (delete %s to try again)",
                     benchmark, time.ctime(os.path.getmtime(unreachable)), unreachable)
            return None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # evalplus downloads without a timeout; a firewall that drops packets would hang
    try:
        tasks = humaneval.get_human_eval_plus() if benchmark == "humaneval" else mbpp.get_mbpp_plus()
    except Exception as exc:
        if override:  # a file the user named and evalplus rejects is bad input, not a missing source
            raise DataError(f"{_OVERRIDE[benchmark]}={override!r} is not usable EvalPlus data: "
                            f"{type(exc).__name__}: {str(exc)[:300]}") from None
        # no network or a broken download: fall back to the base tests, loudly, once a day
        os.makedirs(os.path.dirname(unreachable), exist_ok=True)
        with open(unreachable, "w") as f:
            f.write(f"{type(exc).__name__}: {str(exc)[:300]}\n")
        log.warning("EvalPlus data for %s unavailable (%s: %s); using the base tests, and not trying again for %d h "
                    "(delete %s to try sooner)", benchmark, type(exc).__name__, str(exc)[:200],
                    RETRY_AFTER_S // 3600, unreachable)
        return None
    finally:
        socket.setdefaulttimeout(previous)
    out = {}
    for task_id, task in tasks.items():
        item_id = task_id if benchmark == "humaneval" else task_id.split("/")[-1]
        source = task["prompt"] + task["canonical_solution"] if benchmark == "humaneval" else task["canonical_solution"]
        inputs = list(task["base_input"]) + list(task["plus_input"])
        out[item_id] = {"entry_point": task["entry_point"], "reference_source": source, "atol": task.get("atol") or 0,
                        "inputs_b64": base64.b64encode(pickle.dumps(inputs)).decode()}
    return out
