"""Re-judge this shoot-out with the report's current statistics, from what this directory stores (issue 39): the
per-comparison p-values of `recovery-*/against.csv`, adjusted by Holm within each family (one target's models
against its references, per task row), and the runaway comparisons of the README (discordant counts that
`runaway.py` printed from the stored generations), as exact McNemar tests adjusted by Holm over all 15 of them,
the family they were chosen from after seeing the results.

    python docs/repro/qwen-coder-recovery/rejudge_stats.py
"""

from pathlib import Path

import pandas as pd
from scipy.stats import binomtest

from prunelab.report.retention import adjust_against
from prunelab.significance import adjust, smallest_p, successes_needed

HERE = Path(__file__).parent
# runaway.py's output as the README quotes it: (comparison, stopped, newly ran away) on the same items
RUNAWAY = [
    ("HumanEval 0.08: SFT vs pruned", 8, 1), ("HumanEval 0.08: KD vs pruned", 6, 1),
    ("HumanEval 0.08: partial vs pruned", 8, 1), ("HumanEval 0.08: linear vs pruned", 13, 0),
    ("HumanEval 0.25: SFT vs pruned", 9, 1), ("HumanEval 0.25: KD vs pruned", 8, 1),
    ("HumanEval 0.25: partial vs pruned", 2, 0), ("HumanEval 0.25: linear vs pruned", 19, 0),
    ("HumanEval 0.25: KD vs SFT", 2, 3), ("HumanEval 0.25: partial vs SFT", 1, 7),
    ("HumanEval 0.25: linear vs SFT", 13, 2),
    ("GSM8K 0.25: SFT vs pruned", 8, 0), ("GSM8K 0.25: KD vs pruned", 8, 0), ("GSM8K 0.25: linear vs pruned", 7, 0),
    ("GSM8K 0.25: partial vs pruned", 5, 1),
]


def against_table() -> pd.DataFrame:
    frames = [adjust_against(pd.read_csv(path)).assign(
        target=path.parent.name.removeprefix("recovery-").replace("-at-", "@"))
        for path in sorted(HERE.glob("recovery-*/against.csv"))]
    out = pd.concat(frames)
    return out[out["task"].isin(["generative mean", "classification mean"])]


def runaway_table() -> pd.DataFrame:
    rows = [{"comparison": name, "stopped": a, "newly ran away": b,
             "p": binomtest(a, a + b, 0.5).pvalue if a + b else 1.0} for name, a, b in RUNAWAY]
    frame = pd.DataFrame(rows)
    frame["p (Holm over 15)"] = adjust(frame["p"].to_numpy(float))
    need = successes_needed(len(RUNAWAY))
    frame["testable"] = [a + b >= need for _, a, b in RUNAWAY]
    return frame


def main() -> None:
    against = against_table()
    print("## Recovery against the pruned model and against SFT on SGR (Holm within each target and task row)\n")
    print(against[["target", "model", "against", "task", "difference", "p_value", "p_adj", "items"]].to_markdown(
        index=False, floatfmt=".3f"))
    runaway = runaway_table()
    print("\n## Runaway answers (exact McNemar; Holm over the 15 comparisons)\n")
    print(runaway.to_markdown(index=False, floatfmt=".4f"))
    need = successes_needed(len(RUNAWAY))
    print(f"\nOver 15 comparisons a test can reach 0.05 after Holm only with {need} or more changed items, all one "
          f"way (15 x 2 x 0.5^{need} = {15 * smallest_p(need):.3f}); 'testable' says which had that many.")


if __name__ == "__main__":
    main()
