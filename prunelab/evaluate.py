"""`prunelab eval`: score one model (pruned, recovered, or any checkpoint) on tasks, and its retention against a
base model when one is given. Runs in this process (no cluster needed); results go to the same kind of store as a
sweep's, so a stopped evaluation resumes and the report has the same intervals and paired tests.

In the store the base model's rows are candidate "base" (as in a sweep) and the evaluated model's are "model".
"""

from pathlib import Path

import torch
from pydantic import Field
from tqdm import tqdm

from prunelab.config import Frozen, ModelSpec, TaskSpec
from prunelab.models import load_model
from prunelab.report import write_report
from prunelab.scoring.engine import Scorer
from prunelab.sweep.store import ResultsStore
from prunelab.tasks import build_task, flatten, regroup


class EvalConfig(Frozen):
    name: str
    model: ModelSpec
    base_model: ModelSpec | None = Field(default=None, description="retention is model / base_model per task")
    tasks: list[TaskSpec] = Field(min_length=1)
    batch_tokens: int = Field(default=4096, ge=16)
    threads: int | None = Field(default=None, ge=1)
    output_dir: str

    def identity(self):
        base = self.base_model.model_dump() if self.base_model else None
        return {"model": self.model.model_dump(), "base_model": base, "tasks": [t.model_dump() for t in self.tasks]}


def evaluate(config: EvalConfig, progress: bool = True) -> dict[str, Path]:
    if config.threads:
        torch.set_num_threads(config.threads)
    store = ResultsStore(config.output_dir, model=config.model.name)
    store.claim(config.identity(), config.model_dump())
    done = {(task, candidate) for task, candidate, _ in store.done()}
    tasks = {spec.name: build_task(spec.name, limit=spec.limit, seed=spec.seed, num_fewshot=spec.num_fewshot)
             for spec in config.tasks}
    for label, spec in [("model", config.model), ("base", config.base_model)]:
        todo = [name for name in tasks if spec is not None and (name, label) not in done]
        if not todo:
            continue
        model, tokenizer = load_model(spec.name, dtype=spec.dtype, revision=spec.revision)
        scorer = Scorer(model, batch_tokens=config.batch_tokens)
        for name in tqdm(todo, desc=f"eval {label} ({spec.name})", disable=not progress):
            task = tasks[name]
            items = task.items(tokenizer)
            scores = regroup(items, scorer.score(flatten(items)))
            store.write(name, (), [(it.id, task.score_item(it, s)) for it, s in zip(items, scores)], candidate=label)
        del model
    primary = {name: task.primary_metric for name, task in tasks.items()}
    return write_report(config.output_dir, primary, title=f"{config.name} ({config.model.name})")
