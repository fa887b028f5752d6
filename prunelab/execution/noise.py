"""The engine's noise floor: how many of the base model's generative items change outcome when only the batch
layout changes. In bf16 (and on GPUs, in any dtype) a greedy output can depend on which rows share its batch, so a
candidate that differs from the base model on a few items may differ by layout alone; this says how many.

    measure_noise_floor(root, plan, candidate, worker, executor)   # after a stage's own run; recorded in meta.json

The base model's items are generated a second time under another layout (`second_layout`) into a store of their own
(`<root>/noise-floor/`, resumable like the stage's), and compared item by item with the stage's rows: the items whose
primary metric differs, and those whose text differs. The stage's own results are never touched.
"""

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd

from prunelab.atomic import write_json
from prunelab.execution.plan import plan_units
from prunelab.execution.run import Executor, run_plan
from prunelab.execution.worker import MULTI_CANDIDATE, WorkerSpec
from prunelab.results import Candidate, ResultsStore
from prunelab.tasks import GENERATIVE_KIND

log = logging.getLogger(__name__)
NOISE_DIR = "noise-floor"
LAYOUTS = "layouts.json"  # in NOISE_DIR: the two layouts, in words
BATCHED = 8  # the second layout of a run that generates each item alone


def layout(worker: WorkerSpec, unit_items: int) -> str:
    """How `worker` lays out generation, in words (units of `unit_items` items)."""
    if worker.generator != "hf":
        invariant = " with VLLM_BATCH_INVARIANT=1" if worker.batch_invariant else ""
        alone = unit_items == 1
        return (f"{worker.generator}, each item submitted alone{invariant}" if alone else
                f"{worker.generator}'s continuous batching of up to {unit_items} items at a time{invariant}")
    if worker.generation_engine == MULTI_CANDIDATE:
        return (f"the multi-candidate engine: every candidate of up to {unit_items} items in one decode batch of up to "
                f"{worker.generation_tokens} KV tokens")
    if worker.generation_batch_size == 1 or unit_items == 1:
        return "each item alone (a batch of one, no padding)"
    return f"batches of up to {min(worker.generation_batch_size, unit_items)} items, longest prompts together, left-padded"


def second_layout(worker: WorkerSpec, unit_items: int) -> tuple[WorkerSpec, int]:
    """Another layout than `worker`'s for the same model, and its unit size: each item alone, or (for a run that
    generates each item alone already) batches of 8."""
    alone = worker.generator == "hf" and worker.generation_engine != MULTI_CANDIDATE and (
        worker.generation_batch_size == 1 or unit_items == 1)
    if alone:
        return dataclasses.replace(worker, generation_batch_size=BATCHED), BATCHED
    return dataclasses.replace(worker, generation_engine="per-candidate", generation_batch_size=1), 1


def measure_noise_floor(root: str | Path, tasks: dict, tokenizer, candidate: Candidate, worker: WorkerSpec,
                        unit_items: int, executor: Executor, identity: dict, progress: bool = True,
                        desc: str = "") -> dict | None:
    """Generates `candidate` (the base model, as `worker` loads it) on every generative task of `tasks` under a
    second layout, compares with the stage's rows, and records the result in meta.json as `noise_floor`; returns
    it (None when the plan has no generative task). `unit_items`: the stage's generative unit size."""
    from prunelab.metadata import add_to_meta

    root = Path(root)
    tasks = {name: t for name, t in tasks.items() if t.kind == GENERATIVE_KIND}
    if not tasks:
        return None
    other, other_unit = second_layout(worker, unit_items)
    store = ResultsStore(root / NOISE_DIR, model=worker.model)
    store.check_claim(identity)
    noise_plan = plan_units(tasks, tokenizer, [candidate], store.done(), batch_tokens=worker.batch_tokens,
                            generation_unit=other_unit)
    store.claim(identity)
    # how the two stores' rows were generated; a stage seeded with another stage's base rows (a pipeline's
    # eval-base) has that stage's layouts here already, copied with the rows
    described = root / NOISE_DIR / LAYOUTS
    if not described.exists():
        write_json(described, [layout(worker, unit_items), layout(other, other_unit)])
    if noise_plan.units:
        executor.close()  # the stage's workers go before the second layout's load the model
    run_plan(noise_plan, store, executor, other, progress, desc=f"{desc} noise floor".strip())
    floor = compare_layouts(root, candidate.name, {n: t.primary_metric for n, t in tasks.items()})
    record = {"candidate": candidate.name, "layouts": json.loads(described.read_text()), "tasks": floor}
    add_to_meta(root, noise_floor=record)
    return record


def compare_layouts(root: str | Path, candidate: str, primary: dict[str, str]) -> dict[str, dict]:
    """Per task (name -> primary metric): on the items both layouts hold, how many change outcome (the primary
    metric differs), which, how many scored higher or lower in the second layout, and how many outputs differ as
    text."""
    root = Path(root)
    stores = [ResultsStore(root), ResultsStore(root / NOISE_DIR)]
    rows = [s.read().to_pandas() for s in stores]
    texts = [_texts(s, candidate) for s in stores]
    out = {}
    for task, metric in primary.items():
        values = [r[(r.candidate == candidate) & (r.task == task) & (r.metric == metric)]
                  .drop_duplicates("item_id", keep="last").set_index("item_id")["value"] for r in rows]
        common = values[0].index.intersection(values[1].index)
        a, b = values[0][common], values[1][common]
        differs = ~((a == b) | (a.isna() & b.isna()))
        text = [t.get(task, pd.Series(dtype=object)) for t in texts]
        both = text[0].index.intersection(text[1].index).intersection(common)
        out[task] = {"items": len(common), "changed": int(differs.sum()),
                     "changed_items": sorted(common[differs.to_numpy()].tolist()),
                     "higher_second": int((b > a).sum()), "lower_second": int((b < a).sum()),
                     "outputs_differ": int((text[0][both] != text[1][both]).sum())}
    return out


def _texts(store: ResultsStore, candidate: str) -> dict[str, pd.Series]:
    table = store.generations()
    if table is None:
        return {}
    frame = table.select(["task", "candidate", "item_id", "output"]).to_pandas()
    frame = frame[frame.candidate == candidate]
    return {task: g.drop_duplicates("item_id", keep="last").set_index("item_id")["output"]
            for task, g in frame.groupby("task")}


def describe(record: dict | None, labels: dict[str, str] | None = None) -> str:
    """One paragraph for a page or table: the noise floor of each generative task, or why there is none."""
    if not record:
        return ("Engine noise floor: not measured (a run made before it was, or `generation.noise_floor: false`), so "
                "a difference of a few generative items cannot be told from a change of batch layout.")
    labels = labels or {}
    parts = []
    for task, f in record["tasks"].items():
        part = f"{labels.get(task, task)} {f['changed']} of {f['items']} items change outcome"
        if f["outputs_differ"] != f["changed"]:
            part += f" ({f['outputs_differ']} outputs differ)"
        parts.append(part)
    a, b = record["layouts"]
    return (f"Engine noise floor: the base model generated under two batch layouts ({a}; {b}): {'; '.join(parts)}. "
            "A model that differs from the base model on about as many items may differ by layout alone.")
