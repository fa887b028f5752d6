"""`prunelab eval`: score one model (pruned, recovered, or any checkpoint) on tasks, and its retention against a
base model when one is given. Runs in this process (no cluster needed); results go to the same kind of store as a
sweep's, so a stopped evaluation resumes and the report has the same intervals and paired tests.

In the store the base model's rows are candidate "base" (as in a sweep) and the evaluated model's are "model".
Generative tasks are written in chunks of items as they finish, with every generation recorded.
"""

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from tqdm import tqdm

from prunelab.config import Frozen, GenerationSpec, ModelSpec, TaskSpec
from prunelab.generation import HFBackend
from prunelab.models import load_model, load_tokenizer, resolve_model_path
from prunelab.report import write_report
from prunelab.scoring.engine import Scorer
from prunelab.sweep.store import ResultsStore
from prunelab.tasks import GenerativeTask, flatten, regroup


class EvalConfig(Frozen):
    name: str
    model: ModelSpec
    base_model: ModelSpec | None = Field(default=None, description="retention is model / base_model per task")
    tasks: list[TaskSpec] = Field(min_length=1)
    batch_tokens: int = Field(default=4096, ge=16)
    backend: Literal["prunelab", "lm-eval"] = Field(
        default="prunelab", description="classification scorer: prunelab's engine, or lm-eval's HF backend itself")
    generation: GenerationSpec = GenerationSpec()
    threads: int | None = Field(default=None, ge=1)
    output_dir: str

    def identity(self):
        base = self.base_model.model_dump() if self.base_model else None
        return {"model": self.model.model_dump(), "base_model": base, "tasks": [t.identity() for t in self.tasks]}


def generate_and_score(task: GenerativeTask, items, backend, store: ResultsStore, candidate: str,
                       removed: tuple[int, ...] = (), chunk: int = 32, progress: bool = True) -> None:
    """Generates for `items` in chunks, scores each chunk and writes its metrics and generations."""
    if not items:
        return
    sampling = task.sampling(items[0].reference["chat"])
    bar = tqdm(total=len(items), desc=f"{task.name} ({candidate})", unit="item", disable=not progress)
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        generations = backend.generate([it.request for it in part], sampling)
        metrics = task.score(part, generations)
        store.write_generations(task.name, candidate, [g.record() for g in generations])
        store.write(task.name, removed, [(it.id, m) for it, m in zip(part, metrics)], candidate=candidate)
        bar.update(len(part))
    bar.close()


def _make_generator(config: EvalConfig, spec: ModelSpec, model, tokenizer):
    if config.generation.backend == "vllm":
        from prunelab.generation.vllm import VLLMBackend

        return VLLMBackend(resolve_model_path(spec.name), dtype=spec.dtype)
    return HFBackend(model, tokenizer, batch_size=config.generation.batch_size)


def evaluate(config: EvalConfig, progress: bool = True) -> dict[str, Path]:
    if config.threads:
        torch.set_num_threads(config.threads)
    store = ResultsStore(config.output_dir, model=config.model.name)
    store.claim(config.identity(), config.model_dump())
    done = store.done()
    tasks = {spec.name: spec.build(config.generation) for spec in config.tasks}
    for label, spec in [("model", config.model), ("base", config.base_model)]:
        if spec is None:
            continue
        # what is left to compute, known from the tokenizer alone: a finished run loads no weights
        tokenizer = load_tokenizer(spec.name, revision=spec.revision)
        pending = {}
        for name, task in tasks.items():
            if isinstance(task, GenerativeTask):  # stored in chunks: resume item by item
                items = [it for it in task.items(tokenizer) if (name, label, it.id) not in done]
            else:  # stored whole
                items = [] if any(t == name and c == label for t, c, _ in done) else task.items(tokenizer)
            if items:
                pending[name] = items
        if not pending:
            continue
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = scorer = generator = None
        if config.generation.backend == "hf" or any(not isinstance(tasks[n], GenerativeTask) for n in pending):
            model, tokenizer = load_model(spec.name, dtype=spec.dtype, device=device, revision=spec.revision)
        for name, items in pending.items():
            task = tasks[name]
            if isinstance(task, GenerativeTask):
                generator = generator or _make_generator(config, spec, model, tokenizer)
                generate_and_score(task, items, generator, store, label, chunk=4 * config.generation.batch_size,
                                   progress=progress)
                continue
            if scorer is None and config.backend == "lm-eval":
                from prunelab.scoring.lm_eval_backend import LMEvalScorer

                scorer = LMEvalScorer(model, tokenizer)
            scorer = scorer or Scorer(model, batch_tokens=config.batch_tokens)
            scores = regroup(items, scorer.score(flatten(items)))
            store.write(name, (), [(it.id, task.score_item(it, s)) for it, s in zip(items, scores)], candidate=label)
        del model, scorer, generator
    return write_report(config.output_dir, tasks, title=f"{config.name} ({config.model.name})")
