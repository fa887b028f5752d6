"""`prunelab sgr`: the base model answers a prompt corpus (Self-Generated Responses), as parquet shards + meta.json.

    run(config, runtime) -> SGRArtifact       # the stage's entry point: the runtime's runner (Ray Data), or here
    generate_corpus(config)                   # in this process (transformers generate)
    generate_corpus(config, ray_responses)    # Ray Data (prunelab.distributed.sgr): HF actors or vLLM engines

Everything is validated (model, chat template, corpus, lengths, the directory's owner) before anything is written.
Shards already on disk are skipped; the rows of the rest are generated, and each shard is written (atomically) as
soon as all of its prompts are answered.
"""

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from prunelab.artifacts import SGRArtifact
from prunelab.atomic import write_json, write_parquet
from prunelab.config import SGRConfig
from prunelab.data.prompts import prompts_hash
from prunelab.errors import ConfigError
from prunelab.metadata import META_FILE, build_meta
from prunelab.models import inspect_model
from prunelab.models.templates import apply_template, resolve_template, template_hash
from prunelab.progress import bar as progress_bar
from prunelab.results import ResultsStore
from prunelab.sgr.generate import ResponseGenerator, input_row
from prunelab.sgr.select import corpus_prompts, select_prompts
from prunelab.sgr.shards import ROW_SCHEMA, CorpusShards, corpus_hash

log = logging.getLogger(__name__)
Responses = Callable[[list[dict]], Iterable[list[dict]]]  # input rows -> batches of corpus rows, in any order
RunnerFactory = Callable[..., Responses]  # (config, model facts, chat template, progress) -> Responses


def context_length(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def reasoning_plan(config: SGRConfig, tokenizer):
    """(reasoning format, chat template kwargs, budgets) of the base model under `config.sampling`'s thinking
    settings; (None, {}, None) for a model that does not reason (or with thinking off: its answers are plain). A
    ConfigError where the template cannot do what is asked."""
    from prunelab.generation.reasoning import Budgets, check_thinking

    s = config.sampling
    where = f"sampling of {config.model.name!r}"
    fmt = check_thinking(tokenizer, s.thinking, s.reasoning_effort, where)
    if fmt is None:
        return None, {}, None
    kwargs = fmt.template_kwargs(s.thinking, s.reasoning_effort, where)
    if s.thinking == "off":
        return None, kwargs, None
    return fmt, kwargs, Budgets(fmt.start, fmt.end, s.thinking_budget, s.max_new_tokens)


def plan_corpus(config: SGRConfig):
    """(facts, template, selection): the model, its chat template and the chosen prompts; writes nothing."""
    facts = inspect_model(config.model)
    template = resolve_template(config.chat_template, facts.tokenizer, config.model.name)
    tokenizer = apply_template(facts.tokenizer, template)
    fmt, kwargs, budgets = reasoning_plan(config, tokenizer)
    p, s = config.prompts, config.sampling
    context = context_length(facts.config)
    generated = budgets.total if budgets else s.max_new_tokens
    if context is not None and p.max_prompt_tokens + generated > context:
        thinking = f" + sampling.thinking_budget ({s.thinking_budget})" if budgets else ""
        raise ConfigError(f"prompts.max_prompt_tokens ({p.max_prompt_tokens}) + sampling.max_new_tokens "
                          f"({s.max_new_tokens}){thinking} exceed the context of {config.model.name!r} ({context} "
                          "tokens): a prompt that long could not be answered; lower one of them")
    selection = select_prompts(corpus_prompts(p.source), tokenizer, p.limit, p.seed, p.max_prompt_tokens,
                               p.exclude_tasks, source=p.source, template_kwargs=kwargs, reasoning=fmt)
    return facts, template, selection


def in_process_responses(config: SGRConfig, facts, template: str, progress: bool = True) -> Responses:
    """A runner that answers rows in this process, one generate batch at a time."""
    def run(rows: list[dict]) -> Iterator[list[dict]]:
        if not rows:
            return
        generator = ResponseGenerator(**generator_kwargs(config, facts, template))
        size = config.engine.batch_size
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            out = generator({k: [r[k] for r in batch] for k in batch[0]})
            yield [dict(zip(out, values)) for values in zip(*out.values())]

    return run


def generator_kwargs(config: SGRConfig, facts, template: str) -> dict:
    """What a generator actor is built from; a local model directory as an absolute path (an actor may run
    elsewhere), the rows labelled with the model's name as configured."""
    path = Path(facts.path)
    _, _, budgets = reasoning_plan(config, apply_template(facts.tokenizer, template))
    return {"model": str(path.resolve()) if path.exists() else config.model.name, "dtype": config.model.dtype,
            "chat_template": template, "sampling": config.sampling.model_dump(),
            "budgets": None if budgets is None else asdict(budgets),
            "batch_size": config.engine.batch_size, "model_label": config.model.name,
            "trust_remote_code": config.model.trust_remote_code}


def _clean(row: dict) -> dict:
    """A row as the shard schema wants it (batches from pandas carry NaN for missing values, numpy ints)."""
    out = {}
    for field in ROW_SCHEMA:
        value = row.get(field.name)
        if isinstance(value, float) and math.isnan(value) and not pa.types.is_floating(field.type):
            value = None
        out[field.name] = value.item() if hasattr(value, "item") else value
    return out


def generate_corpus(config: SGRConfig, runner: RunnerFactory | None = None, progress: bool = True) -> Path:
    """Runs (or resumes) the SGR corpus of `config`; returns its directory."""
    root = Path(config.output_dir)
    store = ResultsStore(root)
    store.check_claim(config.identity())
    facts, template, selection = plan_corpus(config)
    size = config.engine.shard_size
    planned = selection.prompts
    num_shards = -(-len(planned) // size)
    shards = CorpusShards(root)
    done = shards.done()
    store.claim(config.identity())
    prompts_table = [{"id": p.prompt.id, "shard": i // size, "messages": json.dumps(p.prompt.chat()),
                      "reference": p.prompt.reference, "prompt_tokens": len(p.prompt_ids)}
                     for i, p in enumerate(planned)]
    write_parquet(root / "prompts.parquet", _table(prompts_table))
    meta_extra = {"prompts_sha256": prompts_hash([p.prompt for p in planned]), "selection": selection.counts,
                  "chat_template": template, "chat_template_sha256": template_hash(template),
                  "model_path": facts.path, "num_layers": facts.num_layers, "shards": num_shards}
    fmt, kwargs, _ = reasoning_plan(config, apply_template(facts.tokenizer, template))
    if fmt is not None or kwargs:  # what recovery needs to train on the reasoning as the template writes it
        meta_extra |= {"reasoning_format": fmt.name if fmt else None, "template_kwargs": kwargs}
    _write_meta(root, config, meta_extra, shards, complete=False)

    todo = [input_row(p, i // size, config.sampling.seed) for i, p in enumerate(planned) if i // size not in done]
    expected: dict[int, set[str]] = {}
    for row in todo:
        expected.setdefault(row["shard"], set()).add(row["id"])
    pending: dict[int, dict[str, dict]] = {k: {} for k in expected}
    responses = (runner or in_process_responses)(config, facts, template, progress)
    bar = progress_bar(total=len(todo), desc=f"sgr {config.name}", unit="response", disable=not progress)
    for batch in responses(todo) if todo else ():
        for row in batch:
            row = _clean(row)
            k = row["shard"]
            if k not in pending or row["id"] in pending[k]:
                continue  # a retried batch repeats rows that already arrived (or whose shard is written)
            pending[k][row["id"]] = row
            bar.update(1)
            if set(pending[k]) == expected[k]:
                shards.write(k, list(pending.pop(k).values()))
    bar.close()
    if pending:
        missing = sum(len(expected[k]) - len(v) for k, v in pending.items())
        raise RuntimeError(f"the generator returned no response for {missing} prompts (shards {sorted(pending)}); "
                           "rerun to generate the missing shards")
    return _write_meta(root, config, meta_extra, shards, complete=True)


def _table(rows: list[dict]):
    return pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("shard", pa.int32()),
                                                         ("messages", pa.string()), ("reference", pa.string()),
                                                         ("prompt_tokens", pa.int32())]))


def _write_meta(root: Path, config: SGRConfig, extra: dict, shards: CorpusShards, complete: bool) -> Path:
    """meta.json with the corpus's counts so far: shards written, rows kept, and why the others were dropped."""
    rows = shards.read().to_pylist()
    kept = [r for r in rows if r["dropped"] is None]
    dropped = {}
    for r in rows:
        if r["dropped"] is not None:
            dropped[r["dropped"]] = dropped.get(r["dropped"], 0) + 1
    counts = {"responses": len(rows), "kept": len(kept), "dropped_truncated": dropped.get("truncated", 0),
              "dropped_empty": dropped.get("empty", 0),
              "dropped_duplicate_prompts": extra["selection"].get("duplicate", 0),
              "output_tokens_kept": sum(r["output_tokens"] for r in kept)}
    if any(r["cut_in_thinking"] is not None for r in rows):  # a reasoning model's corpus
        counts |= {"dropped_cut_in_thinking": dropped.get("cut in thinking", 0),
                   "thinking_tokens_kept": sum(r["thinking_tokens"] for r in kept)}
    meta = build_meta("sgr", config, **extra, shards_done=len(shards.done()), complete=complete, counts=counts,
                      corpus_sha256=corpus_hash(kept) if complete else None)
    write_json(root / META_FILE, meta, sort_keys=False)
    return root


def check_runner(engine, runner, where: str = "engine") -> None:
    """vLLM engines run on Ray Data only."""
    if runner is None and engine.backend != "hf":
        raise ConfigError(f"{where}.backend {engine.backend} runs on Ray Data (vLLM engines as Ray actors); drop "
                          f"--local, or use {where}.backend=hf to generate in this process")


def run(config: SGRConfig, runtime) -> SGRArtifact:
    check_runner(config.engine, runtime.sgr)
    return SGRArtifact(generate_corpus(config, runtime.sgr, progress=runtime.progress))
