"""The outputs behind the scores: each candidate's generations beside the base model's, with what was scored from
each (the extracted answer or the assembled program, the outcome and its message, the error class).

    samples(run_dir, task="humaneval", candidate="drop-5", flipped=True)   # the items the base solved and it lost

`prunelab samples RUN_DIR` prints them. Reads the store alone (`generations/` and `results/`), like every report.
"""

import json
from pathlib import Path

import pandas as pd

from prunelab.artifacts import SOURCES
from prunelab.errors import ResultsError
from prunelab.metadata import META_FILE, read_meta
from prunelab.results import ResultsStore


def samples(root: str | Path, task: str | None = None, candidate: str | None = None,
            flipped: bool = False) -> pd.DataFrame:
    """One row per (task, candidate, item) other than the base model's: its output and what was scored from it, the
    base model's beside it (columns base_*), and the primary metric of both. `flipped`: only items where the base
    model's primary metric is higher than the candidate's (solved by the base, lost by the candidate). A combined
    table's directory (`prunelab report A B --out C`) gives each of its evaluations' samples, named by its label."""
    root = Path(root)
    if not (root / META_FILE).exists() and (root / SOURCES).exists():
        return _combined(root, task, candidate, flipped)
    meta = read_meta(root)
    store = ResultsStore(root)
    table = store.generations()
    if table is None:
        raise ResultsError(f"{str(root)!r} has no generations: it ran no generative task")
    gens = table.to_pandas()
    if "outcome" not in gens or gens["outcome"].isna().all():
        raise ResultsError(f"{str(root)!r} has generations but no scored samples: it was made before prunelab kept "
                           "them (rerun its stage in a new output directory to keep them)")
    known = sorted(gens["task"].unique())
    if task is not None and task not in known:
        raise ResultsError(f"task {task!r} has no generations in {str(root)!r}; it has: {', '.join(known)}")
    candidates = sorted(gens["candidate"].unique())
    if candidate is not None and candidate not in candidates:
        raise ResultsError(f"candidate {candidate!r} has no generations in {str(root)!r}; it has: "
                           f"{', '.join(candidates)}")
    gens = gens.drop_duplicates(["task", "candidate", "item_id"], keep="last")
    primary = {name: t["primary_metric"] for name, t in meta["tasks"].items()}
    stored = store.read().to_pandas()
    rows = stored[[primary.get(t) == m for t, m in zip(stored["task"], stored["metric"])]]
    # a sampled task's generations are its samples (ids "<item>#<j>"): each is scored by its item's sample:j
    sampled = stored[stored["metric"].str.startswith("sample:")]
    if not sampled.empty:
        rows = pd.concat([rows, sampled.assign(item_id=sampled["item_id"] + "#" + sampled["metric"].str[7:])])
    rows = rows.drop_duplicates(["task", "candidate", "item_id"], keep="last")[["task", "candidate", "item_id", "value"]]
    gens = gens.merge(rows.rename(columns={"value": "score"}), on=["task", "candidate", "item_id"], how="left")
    base = gens[gens["candidate"] == "base"].drop(columns=["candidate"]).add_prefix("base_")
    others = gens[gens["candidate"] != "base"]
    out = others.merge(base, left_on=["task", "item_id"], right_on=["base_task", "base_item_id"], how="left")
    out = out.drop(columns=["base_task", "base_item_id"])
    if task is not None:
        out = out[out["task"] == task]
    if candidate is not None:
        out = out[out["candidate"] == candidate]
    if flipped:
        out = out[out["base_score"] > out["score"]]
    return out.sort_values(["task", "candidate", "item_id"]).reset_index(drop=True)


def _combined(root: Path, task: str | None, candidate: str | None, flipped: bool) -> pd.DataFrame:
    sources = json.loads((root / SOURCES).read_text())
    if candidate is not None and candidate not in sources:
        raise ResultsError(f"candidate {candidate!r} is not a row of {str(root)!r}; its rows: {', '.join(sources)}")
    parts = []
    for label, source in sources.items():
        if candidate in (None, label):
            part = samples(source, task=task, candidate="model", flipped=flipped)
            parts.append(part.assign(candidate=label))
    return pd.concat(parts).sort_values(["task", "candidate", "item_id"]).reset_index(drop=True)


def clip(text, width: int) -> str:
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    return text if len(text) <= width else text[:width] + f" ... [{len(text) - width} more characters]"


def format_samples(table: pd.DataFrame, width: int = 600) -> str:
    """The samples as text: per item, the candidate and the base model side by side."""
    blocks = []
    for r in table.itertuples(index=False):
        head = (f"== {r.task} {r.item_id}: {r.candidate} {r.score:g} ({r.outcome}) vs base "
                f"{r.base_score:g} ({r.base_outcome})")
        parts = [head]
        if getattr(r, "error_class", None):
            parts.append(f"   error class: {r.error_class} (base: {r.base_error_class})")
        if getattr(r, "gold", None):
            parts.append(f"   gold: {clip(r.gold, 200)}")
        for who, scored, output, message in ((r.candidate, r.scored, r.output, r.outcome_message),
                                             ("base", r.base_scored, r.base_output, r.base_outcome_message)):
            parts.append(f"-- {who} output:")
            parts.append(clip(output, width))
            if scored is not None and scored != output:
                parts.append(f"-- {who} scored:")
                parts.append(clip(scored, width))
            if message:
                parts.append(f"-- {who} outcome message: {clip(message, 300)}")
        blocks.append("\n".join(parts))
    return "\n\n".join(blocks) if blocks else "no samples match"


__all__ = ["clip", "format_samples", "samples"]
