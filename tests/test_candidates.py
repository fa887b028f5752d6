"""The multi-candidate generator: every candidate gets the tokens it would get generating alone with its layers
removed (greedy), through the first-divergence path and with rows that stop early; sampled outputs depend on the
item and seed only; bad budgets are refused."""

import pytest
import tiny
import torch

from prunelab.errors import ConfigError, ModelError
from prunelab.generation import GenerationRequest, HFBackend, Sampling, candidates
from prunelab.generation.candidates import CandidateGenerator
from prunelab.models.view import view
from prunelab.surgery import keep_layers

PROMPTS = ["Question: What is (4 * 4) * 1? Answer:", "def add(a, b):", "The quick brown fox", "7 + 5 =",
           "Which gas do plants take in? Answer: carbon", "A cat"]
LAYERS = 6
INERT = 2  # a layer made nearly an identity, so removing it keeps the base output for a while


def requests(tok):
    return [GenerationRequest(f"p{i}", p, tuple(tok(p)["input_ids"])) for i, p in enumerate(PROMPTS)]


def model_with_inert_layer(family: str, scale: float = 0.05):
    """A tiny model whose layer INERT adds `scale` times its usual update to the residual stream (a forward hook on
    the layer, part of the model for every path that runs it)."""
    model = tiny.model(family, LAYERS)

    def damp(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        damped = args[0] + scale * (hidden - args[0])
        return (damped, *output[1:]) if isinstance(output, tuple) else damped

    view(model).layers[INERT].register_forward_hook(damp)
    return model


def alone(model, tok, reqs, removed, sampling):
    """Today's path: the HF backend on the model with `removed` dropped."""
    with keep_layers(model, [layer for layer in range(LAYERS) if layer not in removed]):
        return HFBackend(model, tok, batch_size=4).generate(reqs, sampling)


def outcome(generations):
    return [(g.text, g.finish_reason, g.output_tokens) for g in generations]


CANDIDATES = [(), *[(layer,) for layer in range(LAYERS)], (1, 3), (INERT, LAYERS - 1)]


def inert_setup(family, tok, reqs, sampling):
    """A model with an inert layer and an end token such that, generating alone, some base rows stop early and some
    run to the length limit, and the inert layer's candidate keeps some items' base output and changes others;
    with the expected outcome of every candidate. How inert the layer must be depends on the family's weights."""
    for scale in (0.1, 0.05, 0.02, 0.01, 0.005):
        model = model_with_inert_layer(family, scale)
        with torch.no_grad():
            outputs = [model.generate(torch.tensor([r.prompt_ids]), max_new_tokens=sampling.max_new_tokens,
                                      do_sample=False, pad_token_id=0, eos_token_id=2)[0, len(r.prompt_ids):].tolist()
                       for r in reqs]
        # a second end-of-sequence token: the one in the most base outputs, but not in all of them
        stop_token = max({t for o in outputs for t in o}, key=lambda t: (
            0 < (n := sum(t in o for o in outputs)) < len(outputs), n, -t))
        model.generation_config.eos_token_id = [2, stop_token]
        expected = [outcome(alone(model, tok, reqs, removed, sampling)) for removed in CANDIDATES]
        inert, base = expected[CANDIDATES.index((INERT,))], expected[0]
        if ({g[1] for g in base} >= {"stop", "length"} and any(a == b for a, b in zip(inert, base))
                and any(a != b for a, b in zip(inert, base))):
            return model, expected
    raise AssertionError(f"no setting gives {family} early stops and a partly diverging candidate")


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_every_candidate_gets_the_tokens_it_gets_alone(family, tok, monkeypatch):
    reqs = requests(tok)
    sampling = Sampling(max_new_tokens=14)
    model, expected = inert_setup(family, tok, reqs, sampling)

    # small budgets: several prefill/trace groups, and decode batches that admit rows as others finish
    fused = CandidateGenerator(model, tok, batch_tokens=48, decode_tokens=120)
    got = fused.generate(reqs, CANDIDATES, sampling)
    assert [outcome(g) for g in got] == expected
    stats = {s.removed: s for s in fused.stats}
    # the inert layer's candidate takes part of its output from the base output, and diverges for some items
    inert = got[CANDIDATES.index((INERT,))]
    assert any(g.reused_tokens < g.output_tokens for g in inert)  # diverged, then decoded
    assert any(g.reused_tokens >= g.output_tokens for g in inert)  # never diverged: no decoding at all
    for removed, generations in zip(CANDIDATES, got):
        # the engine's count also holds the end token a fully reused row stopped on
        reused = sum(g.reused_tokens for g in generations)
        assert reused <= stats[removed].reused_tokens <= reused + len(generations)
        assert all(g.reused_tokens <= g.output_tokens for g in generations)
    assert stats[()].reused_tokens == 0 and stats[()].decoded_tokens > 0

    # checked against the base output a few positions at a time: rows leave the check at their first difference
    monkeypatch.setattr(candidates, "CHECK_CHUNK", 3)
    chunked = CandidateGenerator(model, tok, batch_tokens=48, decode_tokens=120)
    assert [outcome(g) for g in chunked.generate(reqs, CANDIDATES, sampling)] == expected
    assert [(s.reused_tokens, s.decoded_tokens) for s in chunked.stats] == [
        (s.reused_tokens, s.decoded_tokens) for s in fused.stats]

    plain = CandidateGenerator(model, tok, batch_tokens=48, decode_tokens=120, reuse=False).generate(
        reqs, CANDIDATES, sampling)
    assert [outcome(g) for g in plain] == expected



def test_stop_strings_end_rows_as_they_do_alone(tok):
    model = model_with_inert_layer("qwen2")
    reqs = requests(tok)
    sampling = Sampling(max_new_tokens=16, stop=(" ", "\n"))
    got = CandidateGenerator(model, tok, decode_tokens=200).generate(reqs, CANDIDATES, sampling)
    for removed, generations in zip(CANDIDATES, got):
        expected = alone(model, tok, reqs, removed, sampling)
        assert [(g.text, g.finish_reason) for g in generations] == [(g.text, g.finish_reason) for g in expected]
    assert any(g.finish_reason == "stop" for c in got for g in c)


def test_sampled_outputs_depend_on_item_and_seed_only(tok):
    model = model_with_inert_layer("gemma3")
    reqs = requests(tok)
    sampling = Sampling(max_new_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    together = CandidateGenerator(model, tok, decode_tokens=120).generate(reqs, CANDIDATES, sampling)
    # each candidate alone, items in another order, no reuse of the base output: the same samples
    for removed, generations in zip(CANDIDATES, together):
        shuffled = reqs[::-1]
        alone_ = CandidateGenerator(model, tok, reuse=False).generate(shuffled, [removed], sampling)[0][::-1]
        assert [g.text for g in generations] == [g.text for g in alone_]
    again = CandidateGenerator(model, tok).generate(reqs, CANDIDATES, sampling)
    assert [[g.text for g in c] for c in again] == [[g.text for g in c] for c in together]
    other_seed = CandidateGenerator(model, tok).generate(reqs, CANDIDATES, Sampling(12, 0.9, 0.95, seed=8))
    assert [[g.text for g in c] for c in other_seed] != [[g.text for g in c] for c in together]
    greedy = CandidateGenerator(model, tok).generate(reqs, CANDIDATES, Sampling(12))
    assert [[g.text for g in c] for c in greedy] != [[g.text for g in c] for c in together]
    # coupling: the inert layer's candidate samples the base model's tokens for a while
    assert sum(g.reused_tokens for g in together[CANDIDATES.index((INERT,))]) > 0


def test_the_hf_backend_draws_the_samples_the_multi_candidate_engine_draws(tok):
    """Sampling by per-request uniforms in both engines: the HF backend, in batches of one or four, samples what the
    multi-candidate engine samples for each candidate, so candidates (and engines) differ only by their layers, and
    the base model's candidate samples the base model's outputs. Not every time: the engines' logits differ by float
    rounding (a padded batch, another kernel), and now and then that moves a token across a sampling boundary (seen:
    1 output of 108 in float32, as the noise floor the reports measure); independent draws would share almost none."""
    model = model_with_inert_layer("qwen2")
    reqs = requests(tok)
    sampling = Sampling(max_new_tokens=12, temperature=0.9, top_p=0.95, seed=7)
    fused = CandidateGenerator(model, tok, decode_tokens=120).generate(reqs, CANDIDATES, sampling)
    differ, other_seed, compared = 0, 0, 0
    for removed, got in zip(CANDIDATES, fused):
        with keep_layers(model, [layer for layer in range(LAYERS) if layer not in removed]):
            for batch_size in (1, 4):
                hf = HFBackend(model, tok, batch_size=batch_size).generate(reqs, sampling)
                differ += sum(a.text != b.text for a, b in zip(hf, got))
                compared += len(got)
            again = HFBackend(model, tok, batch_size=4).generate(reqs, Sampling(12, 0.9, 0.95, seed=8))
            other_seed += sum(a.text != b.text for a, b in zip(again, got))
    assert compared == 108 and differ <= 3, differ
    assert other_seed >= 0.9 * len(CANDIDATES) * len(reqs)  # another stream: other samples
    base = HFBackend(model, tok, batch_size=4).generate(reqs, sampling)
    assert [g.text for g in base] == [g.text for g in fused[0]]


def test_sampling_follows_temperature_and_top_p():
    from prunelab.generation.tokens import choose

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    uniforms = torch.rand(4000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(choose(logits, Sampling(temperature=1.0), uniforms), minlength=4) / 4000
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    nucleus = torch.bincount(choose(logits, Sampling(temperature=1.0, top_p=0.7), uniforms), minlength=4) / 4000
    assert nucleus[2:].sum() == 0 and torch.allclose(nucleus[:2], torch.tensor([0.625, 0.375]), atol=0.03)
    assert (choose(logits, Sampling(), None) == 0).all()


def test_a_budget_that_cannot_hold_one_row_is_refused(tok):
    model = tiny.model("llama", 4)
    reqs = requests(tok)
    with pytest.raises(ConfigError, match=r"sweep.generation_tokens is 20, but one row needs \d+"):
        CandidateGenerator(model, tok, decode_tokens=20).generate(reqs, [(), (1,)], Sampling(max_new_tokens=16))
    with pytest.raises(ModelError, match=r"layers has \[7\] out of range; the model has 4 layers"):
        CandidateGenerator(model, tok).generate(reqs, [(7,)], Sampling(max_new_tokens=4))
    # a hybrid candidate left with linear-attention layers only, before any work, with the scorer's message
    with pytest.raises(ModelError, match=r"leaves qwen3_5_text with linear-attention layers only; keep at least "
                                         r"one of its attention layers \[1, 3\]"):
        CandidateGenerator(tiny.model("qwen3_5", 4), tok).generate(reqs, [(), (1, 3)], Sampling(max_new_tokens=4))


@pytest.mark.parametrize("top_p", [1.0, 0.95, 0.5])
def test_sampling_among_the_most_probable_tokens_chooses_what_the_full_sort_chooses(top_p):
    """`choose` sorts the most probable tokens first and the whole vocabulary only where they cannot decide: on
    peaked, flat and tied distributions it picks what sorting everything picks."""
    from prunelab.generation.tokens import TOP, _choose_sorted, choose

    generator = torch.Generator().manual_seed(3)
    vocab = 4096
    peaked = torch.randn(64, vocab, generator=generator) * 2
    peaked[:, :20] += 12  # most of the mass in a few tokens: decided among them
    flat = torch.randn(64, vocab, generator=generator) * 0.1  # the uniform often lands past them: the full sort
    tied = peaked.clone()
    # sixteen tokens tied at the probability of the TOP-th most probable: a tie across the edge
    tied[:, 100:116] = torch.sort(peaked, descending=True).values[:, TOP - 1:TOP].expand(-1, 16)
    sampling = Sampling(max_new_tokens=4, temperature=0.7, top_p=top_p)
    for logits in (peaked, flat, tied):
        uniforms = torch.rand(64, generator=generator, dtype=torch.float64)
        want = _choose_sorted(torch.softmax(logits.double() / 0.7, dim=-1), top_p, uniforms)
        assert torch.equal(choose(logits, sampling, uniforms), want)
