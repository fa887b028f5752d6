"""Inference cost: parameter and KV-cache counts equal what each (pruned) config implies, in every family; the
measured artifact is reused on a rerun and remeasured for a changed checkpoint only; every model gets the same
workload; checkpoints that are no causal LM, or have another tokenizer, and batches that cannot fit are refused
before anything is measured, keeping what was measured before. No wall-clock figure is asserted."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import tiny
import torch
from fresh_ray import start_ray
from transformers import AutoConfig, AutoTokenizer

from prunelab.cli import main
from prunelab.config import CostConfig, parse_config
from prunelab.cost.bound import Shape, expected_speedups
from prunelab.cost.measure import _cache_bytes
from prunelab.errors import ConfigError, ModelError
from prunelab.models.view import view
from prunelab.stages.cost import measure_costs
from prunelab.surgery import drop_layers, save_pruned

# the families whose layers are multi-head attention and a dense gated MLP: the bound counts their weights exactly;
# for mixture-of-experts layers it counts the experts a token runs through, and it does not count multi-head
# latent attention's or linear attention's own projections
EXACT_SHAPE = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "gemma3-mm", "phi3", "olmo2", "smollm3")


@pytest.mark.parametrize("family", EXACT_SHAPE)
def test_counts_equal_what_the_pruned_config_implies(family):
    model = tiny.model(family, num_layers=4)
    drop_layers(model, [1, 2])
    shape = Shape.of(model.config)
    assert shape.layers == 2
    assert Shape.of(tiny.model(family, num_layers=4).config, keep=[0, 3]) == shape  # from the config alone
    for layer in view(model).layers:  # every 2-D weight of a layer (biases and norms are vectors)
        assert sum(p.numel() for p in layer.parameters() if p.dim() == 2) == shape.layer_params()
    assert model.get_input_embeddings().weight.numel() == shape.embedding_params()
    ids = torch.randint(3, tiny.VOCAB, (1, 20))
    with torch.inference_mode():
        cache = model(ids, use_cache=True).past_key_values
    assert _cache_bytes(cache) == shape.kv_bytes(20, 4)
    if not shape.sliding_layers:  # Gemma's sliding-window layers stop growing at their window
        assert shape.kv_bytes(20, 4) == 20 * shape.kv_bytes_per_token(4)
    full = Shape.of(tiny.model(family, num_layers=4).config)
    bound = expected_speedups(full, shape, 20, 8, 4, 4)
    assert 1 < bound["prefill"] < 2 and 1 < bound["decode_b1"] < 2  # half the layers, the head stays


def cost_config(base, models, out, **extra) -> CostConfig:
    return parse_config({"kind": "cost", "name": "tiny", "base_model": {"name": str(base), "dtype": "float32"},
                         "models": [{"name": str(m), "dtype": "float32"} for m in models], "prompt_tokens": 16,
                         "new_tokens": 4, "batch_size": 2, "warmup": 0, "runs": 1, "rounds": 1, "output_dir": str(out),
                         **extra},
                        cls=CostConfig)


@pytest.fixture(scope="module")
def checkpoints(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cost")
    base = tiny_model_dir("llama")
    from prunelab.models import load_model

    model, tok = load_model(str(base), dtype="float32")
    drop_layers(model, [1, 2])
    pruned = save_pruned(model, tok, root / "pruned", {"base_model": str(base), "removed_layers": [1, 2]})
    return base, pruned, root


@pytest.mark.slow
def test_measured_costs_are_reused_and_remeasured_when_a_checkpoint_changes(checkpoints, tmp_path):
    base, pruned, _ = checkpoints
    out = tmp_path / "cost"
    said = []
    measure_costs(cost_config(base, [pruned], out), say=said.append)
    assert [s.split(":")[1].strip().split()[0] for s in said] == ["measuring", "measuring"]
    results = {p.name.split("-")[0]: json.loads(p.read_text())["rounds"][0] for p in (out / "results").glob("*.json")}
    assert set(results) == {"base", "pruned"}
    workloads = [r["workload"] for r in results.values()]
    assert workloads[0] == workloads[1] == {"batch": 2, "prompt_tokens": 16, "new_tokens": 4, "generated_tokens": [4]}
    assert results["pruned"]["num_layers"] == 2 and results["base"]["num_layers"] == 4
    shape = Shape.of(AutoConfig.from_pretrained(pruned))
    assert results["pruned"]["kv_bytes_per_token"] == shape.kv_bytes_per_token(4)
    table = pd.read_csv(out / "cost.csv")
    assert list(table["model"]) == ["base", "pruned"] and table["decode_b1_bound"][1] > 1
    assert (table[["prefill_tps", "decode_b1_tps", "decode_batch_tps"]] > 0).all().all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["backend"] == "transformers" and meta["dtype"] == "float32" and meta["machine"]["cores"]

    said.clear()
    measure_costs(cost_config(base, [pruned], out), say=said.append)
    assert all("measured before" in s for s in said)
    weights = next(Path(pruned).glob("*.safetensors"))
    os.utime(weights)  # the checkpoint changed (a new export over it)
    said.clear()
    measure_costs(cost_config(base, [pruned], out), say=said.append)
    assert ["measured before" in s for s in said] == [True, False]


@pytest.mark.slow
def test_models_of_one_shape_measure_equal_within_their_intervals_and_more_rounds_resume(checkpoints, tmp_path):
    """Two variants with the same shape (layer 1 or layer 2 removed) do the same work: their speed-ups, each a
    geometric mean over rounds with a 95% interval, agree within the intervals. The models take turns, round by
    round; a rerun with more rounds measures the new rounds only."""
    base, _, _ = checkpoints
    out = tmp_path / "cost"
    said = []
    settings = {"removed": {"minus1": [1], "minus2": [2]}, "new_tokens": 8, "runs": 2, "warmup": 1}
    measure_costs(cost_config(base, [], out, rounds=3, **settings), say=said.append)
    assert [s.split("]")[0] + "] " + s.split(": ")[0].split("] ")[-1] for s in said] == [
        f"[round {r}/3] {m}" for r in (1, 2, 3) for m in ("base", "minus1", "minus2")]  # the models take turns
    table = pd.read_csv(out / "cost.csv").set_index("model")
    for what in ("decode_b1", "decode_batch", "prefill"):
        low = table[f"{what}_speedup:ci_low"]
        high = table[f"{what}_speedup:ci_high"]
        measured = table.index != "base"
        assert (low[measured] <= table[f"{what}_speedup"][measured]).all()
        assert (table[f"{what}_speedup"][measured] <= high[measured]).all()
        assert low["minus1"] <= high["minus2"] and low["minus2"] <= high["minus1"], what  # equal within intervals
        # the base model is the reference: 1 by definition, not a measurement against itself
        assert table.loc["base", f"{what}_speedup"] == 1 and low.isna()["base"] and high.isna()["base"]
    assert (table["rounds"] == 3).all()
    base_row = next(line for line in (out / "cost.md").read_text().splitlines() if line.startswith("| base "))
    assert "1.00 (1.00)" in base_row and "~1" not in base_row  # "~1" (no measured gain) is for measurements
    stored = json.loads(next((out / "results").glob("minus1-*.json")).read_text())
    assert len(stored["rounds"]) == 3 and all(r["warmup_runs"] >= 1 for r in stored["rounds"])
    assert stored["rounds"][0]["threads"] == torch.get_num_threads()  # pinned to this process's count
    said.clear()
    measure_costs(cost_config(base, [], out, rounds=4, **settings), say=said.append)
    assert ["measured before" in s for s in said] == [True] * 9 + [False] * 3


@pytest.mark.slow
def test_on_a_cluster_each_model_is_measured_in_a_ray_task_sized_by_ray_actors(checkpoints, tmp_path):
    import ray

    from prunelab.distributed import ray_runtime

    base, pruned, _ = checkpoints
    if torch.get_num_threads() < 2:
        pytest.skip("tells the measuring task from this process by its thread count: needs 2 threads here")
    start_ray(num_cpus=2, include_dashboard=False)
    try:
        config = cost_config(base, [pruned], tmp_path / "cost")
        runtime = ray_runtime(ray.get_runtime_context().gcs_address, progress=False)
        measure_costs(config, place=runtime.measuring(config.ray), say=lambda _: None)
    finally:
        ray.shutdown()
    meta = json.loads((tmp_path / "cost" / "meta.json").read_text())
    # the machine recorded is the measuring task's: Ray gives a task of one CPU one thread (this process has more)
    assert meta["machine"]["torch_threads"] == 1
    results = [json.loads(p.read_text())["rounds"][0] for p in (tmp_path / "cost" / "results").glob("*.json")]
    assert sorted(r["num_layers"] for r in results) == [2, 4]


def test_bad_checkpoints_and_batches_are_refused_before_measuring(checkpoints, tmp_path, capsys):
    base, pruned, root = checkpoints
    out = tmp_path / "cost"
    (out / "results").mkdir(parents=True)
    kept = out / "results" / "base-0000.json"
    kept.write_text("{}")  # something measured before
    not_lm = root / "not-a-causal-lm"
    not_lm.mkdir(exist_ok=True)
    (not_lm / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match="not-a-causal-lm"):
        measure_costs(cost_config(base, [not_lm], out))
    other_tok = root / "other-tokenizer"
    if not other_tok.exists():
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(pruned)
        tok = AutoTokenizer.from_pretrained(pruned)
        tok.add_tokens(["<only-here>"])
        model.save_pretrained(other_tok)
        tok.save_pretrained(other_tok)
    with pytest.raises(ModelError, match="has another tokenizer than the base model"):
        measure_costs(cost_config(base, [other_tok], out))
    with pytest.raises(ConfigError, match="batch_size 100000000 x .* needs about .* GiB"):
        measure_costs(cost_config(base, [pruned], out, batch_size=10**8))
    for layers, message in (([1, 9], r"removed.cut has \[9\] out of range; the model has 4 layers"),
                            ([1, 1], r"removed.cut repeats \[1\]"), ([0, 1, 2, 3], "cannot remove all 4")):
        with pytest.raises(ModelError, match=message):
            measure_costs(cost_config(base, [], out, removed={"cut": layers}))
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"kind": "cost", "name": "x", "base_model": {"name": str(base)},
                                "models": [{"name": str(not_lm)}], "output_dir": str(out)}))
    assert main(["cost", str(path)]) == 2 and "not-a-causal-lm" in capsys.readouterr().err
    assert kept.read_text() == "{}" and sorted(p.name for p in (out / "results").iterdir()) == ["base-0000.json"]


def test_engine_arguments_are_vllms_and_leave_the_workload_to_prunelab(tmp_path):
    base = {"kind": "cost", "name": "x", "base_model": {"name": "m"}, "output_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="engine_kwargs are vLLM's; backend is 'transformers'"):
        parse_config({**base, "engine_kwargs": {"enforce_eager": True}}, cls=CostConfig)
    with pytest.raises(ConfigError, match=r"engine_kwargs \['enable_prefix_caching', 'max_model_len'\] are set by"):
        parse_config({**base, "backend": "vllm", "engine_kwargs": {"max_model_len": 64, "enable_prefix_caching": 1}},
                     cls=CostConfig)
    with pytest.raises(ConfigError, match=r"engine_kwargs sets \['enforce_eager'\], which are vllm's settings"):
        parse_config({**base, "backend": "vllm", "engine_kwargs": {"enforce_eager": True}}, cls=CostConfig)
    config = parse_config({**base, "backend": "vllm", "engine_kwargs": {"kv_cache_memory_bytes": 2**30},
                           "vllm": {"enforce_eager": True}}, cls=CostConfig)
    assert config.engine_kwargs == {"kv_cache_memory_bytes": 2**30} and config.vllm.enforce_eager


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the CPU peak is reset through Linux's /proc")
def test_a_variant_made_in_memory_reports_its_own_generation_peak_not_its_checkpoints(tmp_path):
    from prunelab.stages.cost import _measure_in_subprocess

    # a bf16 checkpoint loaded in fp32, as the packaged models are: loading materializes every layer (~38 MB each)
    tiny.model("llama", num_layers=8, hidden=1024, dtype=torch.bfloat16).save_pretrained(tmp_path / "big")
    layer_bytes = 2 * sum(p.numel() * p.element_size() for p in
                          tiny.model("llama", num_layers=1, hidden=1024, dtype=torch.bfloat16).model.layers[0].parameters())
    work = {"prompt_ids": [[1] + list(range(5, 20))] * 2, "new_tokens": 4, "warmup": 0, "runs": 1,
            "dtype": "float32", "device": "cpu", "threads": 1, "path": str(tmp_path / "big")}
    base = _measure_in_subprocess({**work, "removed": []})
    half = _measure_in_subprocess({**work, "removed": [0, 1, 2, 3]})
    assert not base["peak_generate_counts_load"] and not half["peak_generate_counts_load"]
    # loading the variant materializes the whole checkpoint, so its load peak is the base model's; generating, it
    # holds half of the layers (before the peak was reset after loading, both reported the load peak)
    assert half["peak_load_bytes"] > half["peak_generate_bytes"]
    assert abs(half["peak_load_bytes"] - base["peak_load_bytes"]) < layer_bytes
    saved = base["peak_generate_bytes"] - half["peak_generate_bytes"]
    assert 0.6 * 4 * layer_bytes < saved < 1.4 * 4 * layer_bytes


def test_the_memory_a_cpu_measurement_may_use_is_the_kernels_available_memory():
    """MemAvailable (free memory plus the page cache the kernel would reclaim), not MemFree: after reading a few
    checkpoints MemFree is near nothing, and the batched setting was refused on a machine with 19 GiB to give."""
    from pathlib import Path

    from prunelab.stages.cost import measuring_host

    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo here")
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo.read_text().splitlines()}
    assert measuring_host("cpu")["free_bytes"] == pytest.approx(fields["MemAvailable"], rel=0.05)
