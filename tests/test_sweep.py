"""The sweep: worker results equal plain scoring; a Ray run with two actors writes every result, then resumes;
bad input is refused before the output directory is touched."""

import pandas as pd
import pyarrow.parquet as pq
import pytest
import tiny
from transformers import AutoTokenizer

from prunelab.cli import main
from prunelab.config import parse_config
from prunelab.errors import ConfigError, ResultsError
from prunelab.execution.run import InProcessExecutor
from prunelab.execution.worker import Worker, WorkerSpec
from prunelab.results import Candidate, ResultsStore
from prunelab.scoring.engine import Scorer
from prunelab.stages.sweep import plan_sweep, run_sweep
from prunelab.tasks import build_task


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir("gemma3")


def sweep_config(model_dir, out, **extra):
    data = {
        "kind": "sweep",
        "name": "tiny",
        "model": {"name": str(model_dir), "dtype": "float32"},
        "tasks": [{"name": "arithmetic", "limit": 6}, {"name": "arc_easy", "limit": 3},
                  {"name": "gsm8k", "limit": 2, "max_new_tokens": 5}],
        "sweep": {"batch_tokens": 256},
        "ray": {"actors": {"num_actors": 2, "num_cpus": 1}},
        "output_dir": str(out),
        **extra,
    }
    return parse_config(data)


def test_worker_equals_plain_scoring(tiny_dir, tok):
    worker = Worker(WorkerSpec(str(tiny_dir), dtype="float32"))
    task = build_task("arithmetic", limit=8)
    items = task.items(tok)
    reqs = [it.request for it in items]
    plain = Scorer(worker.model, batch_tokens=4096)
    base = worker.prepare(reqs)
    assert [s.logprobs for s in base] == [s.logprobs for s in plain.score(reqs)]
    for removed in [(0,), (2,), (3,), (1, 2)]:
        got = worker.score(removed)
        want = plain.score(reqs, removed=removed)
        for g, w in zip(got, want):
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)


@pytest.mark.slow
def test_ray_sweep_writes_everything_and_resumes(tiny_dir, tmp_path):
    import ray

    out = tmp_path / "run"
    config = sweep_config(tiny_dir, out)
    try:
        assert main(["sweep", str(_write(config, tmp_path)), "--no-progress"]) == 0
        store = ResultsStore(out)
        table = store.read().to_pandas()
        # 5 candidates (base + 4 layers) x (6 probe items x 2 metrics + 3 ARC items x 2 metrics + 2 GSM8K items x 9:
        # lm-eval's two grades, math-verify's, truncated, output tokens, Rep-2/3/4, Self-BLEU-4)
        assert len(table) == 5 * (6 * 2 + 3 * 2 + 2 * 9)
        assert (out / "retention.csv").exists() and (out / "layer_sensitivity.png").exists()
        assert "drop-3" in (out / "retention.md").read_text()

        # results equal plain scoring with the layer removed
        worker = Worker(WorkerSpec(str(tiny_dir), dtype="float32"))
        task = build_task("arithmetic", limit=6)
        items = task.items(AutoTokenizer.from_pretrained(tiny_dir))
        scores = Scorer(worker.model).score([it.request for it in items], removed=(2,))
        want = {it.id: task.score_item(it, [s])["logprob"] for it, s in zip(items, scores)}
        got = table[(table.candidate == "drop-2") & (table.metric == "logprob")].set_index("item_id")["value"]
        assert got.to_dict() == pytest.approx(want, abs=1e-4)

        # generations on the actors equal generating with the layer removed; every one is recorded
        gsm8k = build_task("gsm8k", limit=2, max_new_tokens=5)
        gen_items = gsm8k.items(AutoTokenizer.from_pretrained(tiny_dir))
        want = worker.generate([it.request for it in gen_items], (2,), gsm8k.sampling(False))
        records = store.generations().to_pandas()
        assert len(records) == 5 * 2
        got = records[records.candidate == "drop-2"].set_index("item_id")
        assert got["output"].to_dict() == {g.id: g.text for g in want}
        assert got["output_tokens"].to_dict() == {g.id: g.output_tokens for g in want}
        assert {"classification_mean", "generative_mean"} <= set(pd.read_csv(out / "retention.csv", index_col=0))

        # a rerun has nothing to do; a lost file is recomputed alone, to the same values
        assert plan_sweep(config, store.done()).units == []
        victim = sorted((out / "results" / "arc_easy" / "drop-1").glob("*.parquet"))[0]
        before = pq.read_table(victim).to_pandas()
        victim.unlink()
        plan = plan_sweep(config, store.done())
        assert [(u.task, u.candidates) for u in plan.units] == [("arc_easy", (Candidate((1,)),))]
        assert main(["sweep", str(_write(config, tmp_path)), "--no-progress"]) == 0
        after = pq.read_table(victim).to_pandas()
        assert after.drop(columns="value").equals(before.drop(columns="value"))
        assert after["value"].tolist() == pytest.approx(before["value"].tolist(), abs=1e-6)
    finally:
        ray.shutdown()


def test_results_dir_of_another_experiment_is_refused(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    ResultsStore(out).claim(sweep_config(tiny_dir, out).identity())
    other = sweep_config(tiny_dir, out, tasks=[{"name": "arithmetic", "limit": 7}])
    with pytest.raises(ResultsError, match=r"belongs to another experiment \(differs in: tasks\)"):
        ResultsStore(out).claim(other.identity())
    assert main(["sweep", str(_write(other, tmp_path)), "--no-progress"]) == 2
    assert "belongs to another experiment" in capsys.readouterr().err


def test_cli_rejects_bad_layers_with_exit_2(tiny_dir, tmp_path, capsys):
    config = sweep_config(tiny_dir, tmp_path / "r", sweep={"layers": [1, 9]})
    assert main(["sweep", str(_write(config, tmp_path)), "--no-progress"]) == 2
    assert "sweep.layers has [9] out of range; the model has 4 layers" in capsys.readouterr().err
    assert main(["sweep", str(_write(config, tmp_path)), "ray.actors.num_actorz=3"]) == 2
    assert "ray.actors.num_actorz: unknown key" in capsys.readouterr().err
    assert main(["drop", "--model", str(tiny_dir), "--layers", "0,1,2,3", "--out", str(tmp_path / "x")]) == 2
    assert "cannot remove all 4 layers" in capsys.readouterr().err
    assert main(["sweep", str(_write(sweep_config("no/such-model-xyz", tmp_path / "q"), tmp_path))]) == 2
    assert "unknown model 'no/such-model-xyz'" in capsys.readouterr().err


def _write(config, tmp_path):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump()))
    return path


def test_bad_input_is_refused_before_the_output_directory_is_touched(tiny_dir, tmp_path, capsys):
    # a misspelt model leaves nothing behind, so the corrected command then runs
    out = tmp_path / "run"
    config = sweep_config("no/such-model-xyz", out, tasks=[{"name": "arithmetic", "limit": 2}])
    assert main(["sweep", str(_write(config, tmp_path)), "--local", "--no-progress"]) == 2
    assert not out.exists()
    good = sweep_config(tiny_dir, out, tasks=[{"name": "arithmetic", "limit": 2}], sweep={"layers": [0]})
    assert main(["sweep", str(_write(good, tmp_path)), "--local", "--no-progress"]) == 0
    capsys.readouterr()
    # an out-of-range or repeated layer pointed at that finished directory changes none of its files
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for layers, message in [([0, 9], "out of range"), ([0, 0], "repeats [0]")]:
        bad = sweep_config(tiny_dir, out, tasks=[{"name": "arithmetic", "limit": 2}], sweep={"layers": layers})
        assert main(["sweep", str(_write(bad, tmp_path)), "--local", "--no-progress"]) == 2
        assert message in capsys.readouterr().err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # `prunelab eval` pointed at the sweep's directory says what differs and which stage the directory holds
    assert main(["eval", "--local", "--model", str(tiny_dir), "--tasks", "arithmetic", "--limit", "2", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another experiment (differs in: backend, base_model, model.dtype; it holds a sweep run)" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


class _StopsAfter(InProcessExecutor):
    """Stops the run (as a killed driver would) after `n` (unit, candidate) results were written."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def execute(self, worker, units, on_result):
        def written(unit, candidate, result):
            on_result(unit, candidate, result)
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt

        super().execute(worker, units, written)


def test_multi_candidate_sweep_equals_per_candidate_sweep_and_resumes(tiny_dir, tmp_path, capsys):
    tasks = [{"name": "gsm8k", "limit": 4, "max_new_tokens": 12}, {"name": "xsum", "limit": 2, "max_new_tokens": 8}]
    per = sweep_config(tiny_dir, tmp_path / "per", tasks=tasks,
                       sweep={"generation_engine": "per-candidate", "generation_unit": 2})
    run_sweep(per, progress=False)
    multi = sweep_config(tiny_dir, tmp_path / "multi", tasks=tasks, sweep={"generation_unit": 2})
    assert multi.sweep.generation_engine == "multi-candidate"  # the default
    with pytest.raises(KeyboardInterrupt):
        run_sweep(multi, _StopsAfter(7), progress=False)
    done = ResultsStore(multi.output_dir).done()
    total = 5 * (4 + 2)  # candidates x items
    assert 0 < len(done) < total
    run_sweep(multi, progress=False)
    assert len(ResultsStore(multi.output_dir).done()) == total

    def table(config):
        t = ResultsStore(config.output_dir).read().to_pandas()
        return t.sort_values(["task", "candidate", "item_id", "metric"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(table(multi), table(per))
    generations = [ResultsStore(c.output_dir).generations().to_pandas().set_index(["task", "candidate", "item_id"])
                   .sort_index() for c in (per, multi)]
    assert generations[0]["output"].equals(generations[1]["output"])
    assert (generations[0]["reused_tokens"] == 0).all()  # the per-candidate engine decodes everything
    assert (generations[1].xs("base", level="candidate")["reused_tokens"] == 0).all()

    # a decode budget that cannot hold one row: refused before any work, naming the setting
    small = sweep_config(tiny_dir, tmp_path / "small", tasks=tasks, sweep={"generation_tokens": 20})
    assert main(["sweep", str(_write(small, tmp_path)), "--local", "--no-progress"]) == 2
    assert "sweep.generation_tokens is 20" in capsys.readouterr().err
    assert not (tmp_path / "small").exists()


def test_a_hybrid_model_sweeps_and_each_candidate_equals_its_pruned_checkpoint(tiny_model_dir, tmp_path):
    """Qwen3.5's layers are linear, full, linear, full attention: removing a linear and a full attention layer in a
    sweep (scored by the prefix-cached scorer, left-padded; generated by the multi-candidate engine, states per row)
    gives what `prunelab eval` of the checkpoint with that layer really removed gives, within the scorer's tolerance
    in fp32."""
    model_dir = tiny_model_dir("qwen3_5")
    tasks = [{"name": "arithmetic", "limit": 4}, {"name": "gsm8k", "limit": 2, "max_new_tokens": 6}]
    config = sweep_config(model_dir, tmp_path / "sweep", tasks=tasks, sweep={"layers": [0, 1], "batch_tokens": 256})
    run_sweep(config, progress=False)
    swept = ResultsStore(config.output_dir).read().to_pandas()
    outputs = ResultsStore(config.output_dir).generations().to_pandas()
    for layer in (0, 1):
        pruned, out = tmp_path / f"drop-{layer}", tmp_path / f"eval-{layer}"
        assert main(["drop", "--model", str(model_dir), "--layers", str(layer), "--out", str(pruned)]) == 0
        assert main(["eval", "--local", "--model", str(pruned), "--tasks", "arithmetic,gsm8k", "--out", str(out),
                     "--dtype", "float32", "--no-progress", "tasks.0.limit=4", "tasks.1.limit=2",
                     "tasks.1.max_new_tokens=6"]) == 0
        want = ResultsStore(out).read().to_pandas().set_index(["task", "item_id", "metric"]).value.sort_index()
        got = swept[swept.candidate == f"drop-{layer}"].set_index(["task", "item_id", "metric"]).value.sort_index()
        assert list(got.index) == list(want.index)
        assert got.to_numpy() == pytest.approx(want.to_numpy(), abs=1e-4, nan_ok=True)
        want_text = ResultsStore(out).generations().to_pandas().set_index("item_id").output.sort_index()
        got_text = outputs[outputs.candidate == f"drop-{layer}"].set_index("item_id").output.sort_index()
        assert got_text.equals(want_text)


class _Spreading(InProcessExecutor):
    """Spreads the units over `workers`, as the Ray executor does for its actors, and keeps what it ran."""

    def __init__(self, workers: int):
        super().__init__()
        self.spread_over, self.units = workers, []

    def execute(self, worker, units, on_result):
        from prunelab.execution.plan import spread

        self.units = spread(units, self.spread_over)
        super().execute(worker, self.units, on_result)


def test_units_spread_over_idle_workers_compute_the_same_results(tiny_dir, tmp_path):
    # one generative unit and one classification unit, each for every candidate: fewer units than workers
    tasks = [{"name": "gsm8k", "limit": 4, "max_new_tokens": 6}, {"name": "arithmetic", "limit": 3}]
    whole = sweep_config(tiny_dir, tmp_path / "whole", tasks=tasks, sweep={"generation_unit": 4, "batch_tokens": 4096},
                         generation={"noise_floor": False})  # the units recorded are the sweep's own
    alone = _Spreading(1)
    run_sweep(whole, alone, progress=False)
    spread_config = whole.model_copy(update={"output_dir": str(tmp_path / "spread")})
    many = _Spreading(7)
    run_sweep(spread_config, many, progress=False)
    assert len(alone.units) < 7 == len(many.units)

    def pairs(units):
        return [(u.task, u.items, c) for u in units for c in u.candidates]

    assert sorted(map(str, pairs(many.units))) == sorted(map(str, pairs(alone.units)))  # none lost or repeated

    def table(config):
        t = ResultsStore(config.output_dir).read().to_pandas()
        return t.sort_values(["task", "candidate", "item_id", "metric"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(table(spread_config), table(whole))


def test_an_evaluation_spread_over_idle_workers_splits_its_generative_units_by_items(tiny_dir, tmp_path):
    from prunelab.config import EvalConfig
    from prunelab.stages.evaluate import evaluate

    def config(out):
        return parse_config({"kind": "eval", "name": "e", "model": {"name": str(tiny_dir), "dtype": "float32"},
                             "tasks": [{"name": "gsm8k", "limit": 5, "max_new_tokens": 6}],
                             "generation": {"batch_size": 4, "noise_floor": False}, "output_dir": str(out)},
                            cls=EvalConfig)

    alone, many = _Spreading(1), _Spreading(3)
    evaluate(config(tmp_path / "alone"), alone, progress=False)
    evaluate(config(tmp_path / "many"), many, progress=False)
    assert [len(u.items) for u in alone.units] == [5]  # one candidate, one unit: one worker of three would work
    assert sorted(len(u.items) for u in many.units) == [1, 2, 2]
    assert sorted(it.id for u in many.units for it in u.items) == sorted(it.id for it in alone.units[0].items)
    rows = [ResultsStore(tmp_path / d).read().to_pandas().sort_values(["item_id", "metric"]).reset_index(drop=True)
            for d in ("alone", "many")]
    pd.testing.assert_frame_equal(rows[0], rows[1])


def test_a_vllm_generator_never_shares_a_worker_with_the_scoring_model(tiny_dir, tmp_path):
    """With generation.backend vllm, classification units run on their workers first, the executor releases them,
    and only then do generating workers start, their engine sized for the plan's longest request (prompt +
    max_new_tokens), not the checkpoint's maximum; a configured max_model_len below it is refused before any run."""
    import json
    import shutil

    from prunelab.execution.run import run_plan, worker_parts
    from prunelab.results import ResultsStore
    from prunelab.stages.common import worker_spec
    from prunelab.stages.sweep import plan_sweep

    model_dir = tmp_path / "model"  # the tiny model with a context that holds a GSM8K prompt in its small vocabulary
    shutil.copytree(tiny_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 4096}))
    cfg = parse_config({"kind": "sweep", "name": "split", "model": {"name": str(model_dir), "dtype": "float32"},
                        "tasks": [{"name": "gsm8k", "limit": 4, "max_new_tokens": 7},
                                  {"name": "piqa", "limit": 4}],
                        "generation": {"backend": "vllm", "vllm": {"gpu_memory_utilization": 0.4}},
                        "output_dir": str(tmp_path / "split")})
    plan = plan_sweep(cfg, set())
    worker = worker_spec(cfg.model, cfg.sweep.batch_tokens, cfg.generation, sweep=cfg.sweep)
    parts = worker_parts(plan, worker)
    assert [{u.generative for u in units} for _, units in parts] == [{False}, {True}]  # scoring first, then vLLM
    generating = parts[1][0]
    longest = max(len(r.prompt_ids) for u in parts[1][1] for r in u.generation_requests) + 7
    assert parts[0][0] == worker and generating.max_request_tokens == longest
    assert generating.vllm_args == {"gpu_memory_utilization": 0.4, "max_model_len": longest,
                                    "tensor_parallel_size": 1, "enforce_eager": False}

    class Recording:
        """An executor that records what it is asked (the order is the contract; nothing is computed)."""

        def __init__(self):
            self.calls = []

        def execute(self, spec, units, on_result):
            self.calls.append(("execute", spec.max_request_tokens, {u.generative for u in units}))

        def close(self):
            self.calls.append(("close",))

    executor = Recording()
    run_plan(plan, ResultsStore(tmp_path / "store"), executor, worker, progress=False)
    assert executor.calls == [("execute", None, {False}), ("close",), ("execute", longest, {True})]

    small = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={
        "vllm": cfg.generation.vllm.model_copy(update={"max_model_len": longest - 1})})})
    with pytest.raises(ConfigError, match=f"max_model_len is {longest - 1}, but the longest request needs {longest}"):
        worker_parts(plan, worker_spec(small.model, small.sweep.batch_tokens, small.generation, sweep=small.sweep))
    # a request longer than the model's context is refused here, not by vLLM inside the worker
    long = cfg.model_copy(update={"tasks": [cfg.tasks[0].model_copy(update={"max_new_tokens": 10**6})]})
    with pytest.raises(ConfigError, match=r"needs \d+ tokens .* holds \d+ \(max_position_embeddings\)"):
        worker_parts(plan_sweep(long, set()), worker)
    # an actor share of a GPU sizes the engine: 0.9 of it
    from prunelab.generation.vllm import engine_arguments

    assert engine_arguments({}, gpu_share=0.5, needed_len=100)["gpu_memory_utilization"] == 0.45


def test_exact_generation_does_not_depend_on_the_batch_in_bf16(tmp_path):
    """generation.exact: in bf16, where batching changes numbers (a 256-wide model: 4 of 24 greedy outputs differed
    between two of these layouts without it, on an AVX512-BF16 CPU), a sweep's outputs are the same whatever the
    batch size, unit size or engine setting, and equal the exported checkpoint's with that layer removed."""
    from prunelab.config import EvalConfig
    from prunelab.stages.evaluate import evaluate

    wide = tiny.save(tmp_path / "wide", "llama", hidden=256)
    tasks = [{"name": "gsm8k", "limit": 8, "max_new_tokens": 16}]
    bf16 = {"name": str(wide), "dtype": "bfloat16"}
    layouts = [({"batch_size": 8}, {"generation_unit": 8}), ({"batch_size": 3}, {"generation_unit": 2}),
               ({"batch_size": 4}, {"generation_unit": 4, "generation_engine": "per-candidate"})]
    outputs = []
    for i, (generation, sweep) in enumerate(layouts):
        config = sweep_config(wide, tmp_path / f"layout{i}", tasks=tasks, model=bf16,
                              generation={**generation, "exact": True}, sweep={**sweep, "layers": [1, 2]})
        run_sweep(config, progress=False)
        outputs.append(ResultsStore(config.output_dir).generations().to_pandas()
                       .set_index(["candidate", "item_id"])["output"].sort_index())
    assert outputs[0].equals(outputs[1]) and outputs[0].equals(outputs[2])
    assert main(["drop", "--model", str(wide), "--layers", "1", "--out", str(tmp_path / "drop-1")]) == 0
    evaluate(parse_config({"kind": "eval", "name": "e", "model": {"name": str(tmp_path / "drop-1"),
                                                                 "dtype": "bfloat16"},
                           "tasks": tasks, "generation": {"batch_size": 8, "exact": True},
                           "output_dir": str(tmp_path / "eval")}, cls=EvalConfig), progress=False)
    checkpoint = ResultsStore(tmp_path / "eval").generations().to_pandas().set_index("item_id")["output"].sort_index()
    assert checkpoint.tolist() == outputs[0].loc["drop-1"].tolist()


def test_exact_vllm_generation_is_refused_for_hybrid_models_by_name():
    from types import SimpleNamespace

    from prunelab.config import GenerationSpec, ModelSpec
    from prunelab.stages.common import check_engines, worker_spec

    spec = worker_spec(ModelSpec(name="m"), 4096, GenerationSpec(backend="vllm", exact=True))
    assert spec.batch_invariant
    hybrid = SimpleNamespace(config=tiny.config("qwen3_5"))
    with pytest.raises(ConfigError, match="VLLM_BATCH_INVARIANT for hybrid linear-attention models"):
        check_engines(hybrid, spec, {"gsm8k": None})
    # hf: a batch of one per item, candidate by candidate
    hf = worker_spec(ModelSpec(name="m"), 4096, GenerationSpec(exact=True))
    assert (hf.generation_batch_size, hf.generation_engine, hf.batch_invariant) == (1, "per-candidate", False)
