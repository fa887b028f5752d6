"""What the stages share: the worker a config asks for, and the executor they run on when the caller gives none."""

from prunelab.execution.worker import WorkerSpec


def worker_spec(model, batch_tokens: int, generation, scorer: str = "prunelab", sweep=None) -> WorkerSpec:
    """The worker for `model` (a ModelSpec) with a config's scoring and generation settings; `sweep` (a
    SweepSpec) chooses how many candidates generate (the multi-candidate engine or one at a time)."""
    engine = {} if sweep is None else {"generation_engine": sweep.generation_engine,
                                       "generation_tokens": sweep.generation_tokens}
    batch_size = generation.batch_size
    if generation.exact and generation.backend == "hf":
        # the fixed layout: each item alone, never batched with other items or candidates
        engine, batch_size = {"generation_engine": "per-candidate"}, 1
    return WorkerSpec(model=model.name, dtype=model.dtype, revision=model.revision,
                      trust_remote_code=model.trust_remote_code, batch_tokens=batch_tokens,
                      generation_batch_size=batch_size, scorer=scorer, generator=generation.backend,
                      vllm_engine=tuple(sorted(generation.vllm.model_dump().items())),
                      batch_invariant=generation.exact and generation.backend == "vllm", **engine)


def check_reasoning(facts, tasks: dict) -> None:
    """The generative tasks' thinking settings against the model's chat template (a switch asked of a template
    without one), and its thinking budget against the model's context: a ConfigError before anything is written."""
    from prunelab.errors import ConfigError
    from prunelab.models.view import text_config
    from prunelab.tasks import is_generative

    context = getattr(text_config(facts.config), "max_position_embeddings", None)
    for name, task in tasks.items():
        if not is_generative(name):
            continue
        task.check_reasoning(facts.tokenizer, facts.path)
        if task.reasoning is not None and context and task.thinking_budget + task.max_new_tokens > context:
            raise ConfigError(f"generation.thinking_budget is {task.thinking_budget}: with {name}'s answer budget "
                              f"(max_new_tokens {task.max_new_tokens}) that is more than {facts.path!r} holds "
                              f"({context} tokens, max_position_embeddings); lower it")


def check_engines(facts, worker: WorkerSpec, tasks: dict) -> None:
    """Refuses, before anything is written, a model whose layers the chosen engines cannot run (a hybrid model under
    vLLM's batch-invariant mode), and thinking settings its template or context cannot hold (`check_reasoning`).
    The prefix-cached scorer runs hybrids (left-padded, `scoring.engine.plan_batches`), and the multi-candidate
    generator too (their states per row, `generation.kv.KVRows`)."""
    from prunelab.tasks import is_generative

    if worker.batch_invariant and any(is_generative(name) for name in tasks):
        from prunelab.errors import ConfigError
        from prunelab.models.view import LINEAR, layer_kinds

        if any(kind.attention == LINEAR for kind in layer_kinds(facts.config)):
            raise ConfigError(f"generation.exact with backend vllm: vLLM 0.33 refuses VLLM_BATCH_INVARIANT for hybrid "
                              f"linear-attention models (its GDN/Mamba backends have no batch-invariant kernels), "
                              f"and {facts.config.model_type} has such layers; use backend hf with exact, or exact: "
                              "false")
    check_reasoning(facts, tasks)


def build_tasks(specs, generation) -> dict:
    """name -> task for a config's task specs."""
    return {spec.name: spec.build(generation) for spec in specs}


def record_workers(root, executor) -> None:
    """meta.json gains `workers`: each worker's node, device and the dtype it computed in (the run refused to
    score if they differed: `execution.run.check_worker_dtypes`)."""
    from prunelab.metadata import add_to_meta

    computed = [dict(a) for answers in getattr(executor, "computed_in", {}).values() for a in answers]
    if computed:
        add_to_meta(root, workers=computed)


def default_executor(executor):
    """`executor`, or an in-process one (no cluster) when the caller gives none."""
    if executor is not None:
        return executor
    from prunelab.execution.run import InProcessExecutor

    return InProcessExecutor()
