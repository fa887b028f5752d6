"""What the stages share: the worker a config asks for, and the executor they run on when the caller gives none."""

from prunelab.execution.worker import WorkerSpec


def worker_spec(model, batch_tokens: int, generation, scorer: str = "prunelab", sweep=None) -> WorkerSpec:
    """The worker for `model` (a ModelSpec) with a config's scoring and generation settings; `sweep` (a
    SweepSpec) chooses how many candidates generate (the multi-candidate engine or one at a time)."""
    engine = {} if sweep is None else {"generation_engine": sweep.generation_engine,
                                       "generation_tokens": sweep.generation_tokens}
    return WorkerSpec(model=model.name, dtype=model.dtype, revision=model.revision,
                      trust_remote_code=model.trust_remote_code, batch_tokens=batch_tokens,
                      generation_batch_size=generation.batch_size, scorer=scorer, generator=generation.backend,
                      **engine)


def build_tasks(specs, generation) -> dict:
    """name -> task for a config's task specs."""
    return {spec.name: spec.build(generation) for spec in specs}


def default_executor(executor):
    """`executor`, or an in-process one (no cluster) when the caller gives none."""
    if executor is not None:
        return executor
    from prunelab.execution.run import InProcessExecutor

    return InProcessExecutor()
