"""Count the answers that ran to the token limit, per model, and test each recovered model against the pruned model
and against SFT on SGR on the same items (exact McNemar: a two-sided sign test on the items where exactly one of
the two ran away).

    python docs/repro/qwen-coder-recovery/runaway.py runs/qwen-coder-recovery [--task humaneval]

The pipeline's report counts degeneration by n-gram repetition; this page's runaway answers are read from the stored
generations (`finish_reason == "length"`), so the figures on the page can be checked from the stage directories.
"""

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import binomtest


def runaway(eval_dir: Path, task: str) -> pd.Series:
    files = sorted((eval_dir / "generations" / task / "model").glob("*.parquet"))
    generations = pd.concat(pd.read_parquet(f) for f in files).drop_duplicates("item_id", keep="last")
    return generations.set_index("item_id")["finish_reason"].eq("length").sort_index()


def mcnemar(a: pd.Series, b: pd.Series) -> str:
    fixed, new = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(fixed, fixed + new).pvalue if fixed + new else 1.0
    return f"{fixed} stopped, {new} newly ran away (p {p:.3f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pipeline_dir")
    p.add_argument("--task", default="humaneval")
    args = p.parse_args()
    stages = json.loads((Path(args.pipeline_dir) / "pipeline.json").read_text())["stages"]
    evals = {s["name"]: Path(s["dir"]) for s in stages if s["name"].startswith("eval-")}
    for name, path in evals.items():
        if not (path / "generations" / args.task / "model").is_dir():
            continue
        counts = runaway(path, args.task)
        line = f"{name}: {int(counts.sum())} of {len(counts)} at the limit"
        target = name.removeprefix("eval-").rsplit("-", 1)
        if len(target) == 2 and f"eval-{target[0]}" in evals:
            line += f"; against pruned: {mcnemar(runaway(evals[f'eval-{target[0]}'], args.task), counts)}"
            sft = f"eval-{target[0]}-sgr"
            if name != sft and sft in evals:
                line += f"; against SFT sgr: {mcnemar(runaway(evals[sft], args.task), counts)}"
        print(line)


if __name__ == "__main__":
    main()
