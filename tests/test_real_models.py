"""Integration on the real models that PyPI packages ship (converted once into the cache, then ~1 s per load)."""

import pytest

from prunelab.cli import main
from prunelab.execution.worker import Worker
from prunelab.models import load_model
from prunelab.results import ResultsStore
from prunelab.tasks import build_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qwen():
    return load_model("qwen2.5-coder-0.5b-instruct", dtype="float32")


def test_qwen_converted_from_gguf_answers(qwen):
    model, tok = qwen
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 24
    assert tok.chat_template
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 23 + 19?"}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=16, do_sample=False)
    assert "42" in tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_qwen_sweep_cache_equals_plain_removal(qwen):
    model, tok = qwen
    worker = Worker.around(model, tok)  # reuse the loaded model instead of loading it again
    task = build_task("arithmetic", limit=6)
    items = task.items(tok)
    reqs = [it.request for it in items]
    worker.prepare(reqs)
    for removed in [(3,), (12,), (23,)]:
        got = worker.score(removed)
        want = worker.scorer.score(reqs, removed=removed)
        for g, w in zip(got, want):
            assert g.logprobs == pytest.approx(w.logprobs, abs=2e-3)


def test_qwen_multi_candidate_generation_equals_each_candidate_alone(qwen):
    # HumanEval completions (stopping where the function ends) for candidates that diverge early (layer 0), late or
    # never within the limit: the one-batch engine writes what each pruned model writes alone
    model, tok = qwen
    task = build_task("humaneval", limit=2, chat="off", max_new_tokens=24)
    items = task.items(tok)
    requests, sampling = [it.request for it in items], task.sampling(False)
    candidates = [(), (0,), (12,), (23,)]
    worker = Worker.around(model, tok)
    want = [worker.generate(requests, removed, sampling) for removed in candidates]
    from prunelab.generation.candidates import CandidateGenerator

    engine = CandidateGenerator(model, tok)
    got = engine.generate(requests, candidates, sampling)
    assert [[(g.text, g.finish_reason, g.output_tokens) for g in c] for c in got] == \
        [[(g.text, g.finish_reason, g.output_tokens) for g in c] for c in want]
    assert {s.removed: s.reused_tokens for s in engine.stats}[(0,)] == 0  # without layer 0 it diverges at once


def test_gemma_sweep_end_to_end(tmp_path):
    import ray
    import yaml

    config = {
        "kind": "sweep",
        "name": "gemma-smoke",
        "model": {"name": "gemma3-270m"},
        "tasks": [{"name": "arithmetic", "limit": 8}, {"name": "piqa", "limit": 4}],
        "sweep": {"layers": [5, 17]},
        "ray": {"actors": {"num_actors": 1, "num_cpus": 2}},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        assert main(["sweep", str(path), "--no-progress"]) == 0
    finally:
        ray.shutdown()
    df = ResultsStore(tmp_path / "run").read().to_pandas()
    logprob = df[(df.task == "arithmetic") & (df.metric == "logprob")].groupby("candidate")["value"].mean()
    # Layer 5 of Gemma 3 270M is critical (FACTS: loss 16.3 without it, base 1.86); the last layer much less so.
    assert logprob["drop-5"] < logprob["base"] - 1.0
    assert logprob["drop-5"] < logprob["drop-17"]
    assert set(df.candidate) == {"base", "drop-5", "drop-17"}


def test_qwen_writes_working_code_and_collapses_without_layer_0(qwen):
    """Real generation end to end: prompt, batched HF backend with stop strings, sandbox. The base model solves some
    HumanEval problems and stops where a function ends; without layer 0 (the sweep's most critical layer) it
    solves none and runs to the token limit."""
    from prunelab.generation import HFBackend
    from prunelab.surgery import keep_layers

    model, tok = qwen
    task = build_task("humaneval", limit=4, seed=1, max_new_tokens=96, chat="off")  # completion: short outputs
    items = task.items(tok)
    backend = HFBackend(model, tok, batch_size=4)
    sampling = task.sampling(chat=False)
    base = task.score(items, backend.generate([it.request for it in items], sampling))
    with keep_layers(model, list(range(1, 24))):
        pruned = task.score(items, backend.generate([it.request for it in items], sampling))
    assert sum(m["pass@1"] for m in base) >= 1
    assert sum(m["pass@1"] for m in pruned) == 0
    assert sum(m["truncated"] for m in pruned) > sum(m["truncated"] for m in base)


def test_qwen_answers_sgr_prompts_and_stops_on_its_end_of_turn_token(tmp_path):
    """SGR on the real chat model, in this process: short MT-Bench-style prompts answered under Qwen's own chat
    template end on <|im_end|> (finish reason stop, kept), and the answer holds no special token."""
    import json

    from prunelab.config import SGRConfig, parse_config
    from prunelab.sgr.shards import read_corpus
    from prunelab.stages.sgr import generate_corpus

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in
                               ["What is 23 + 19? Answer with the number only.", "Name the capital of France.",
                                "Say hello in one word."]))
    config = parse_config({"kind": "sgr", "name": "q", "model": {"name": "qwen2.5-coder-0.5b-instruct",
                                                                   "dtype": "float32"},
                           "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": ["gsm8k"]},
                           "sampling": {"max_new_tokens": 48}, "engine": {"batch_size": 3},
                           "output_dir": str(tmp_path / "c")}, cls=SGRConfig)
    rows, meta = read_corpus(generate_corpus(config, progress=False))
    assert meta["counts"]["kept"] == 3 and {r["finish_reason"] for r in rows} == {"stop"}
    answers = {json.loads(r["messages"])[0]["content"][:10]: r["response"] for r in rows}
    assert "42" in answers["What is 23"] and "Paris" in answers["Name the c"]
    assert not any("<|im_end|>" in r["response"] or "<|im_start|>" in r["response"] for r in rows)
    assert "<|im_start|>assistant" in meta["chat_template"]
