"""The scoring engine equals plain full-forward scoring, with and without the sweep's layer-input cache.

Tolerance: 1e-4 absolute on summed log-probabilities, fp32. The engine batches, pads and reuses KV caches across
prefix, context and continuation, so the sums differ from a one-sequence forward only by float reassociation.
"""

import pytest
import tiny
import torch

from prunelab.errors import ModelError
from prunelab.models.view import view
from prunelab.scoring.engine import Scorer, plan_batches
from prunelab.scoring.requests import Request, choice_request, encode_pair, next_token_request
from prunelab.surgery import keep_layers

TOL = 1e-4
PREFIX = "Question: What is (4 * 4) * 1? Answer: 16\nQuestion: What is (8 + 3) * 5? Answer: 55\n"


def requests(tok):
    long_tail = " and then the quick brown fox jumps over the lazy dog again" * 2  # beyond the sliding window of 16
    return [
        choice_request(tok, PREFIX + "Question: What is (7 + 5) - 6? Answer:", [" 6", " 16", " carbon dioxide"], PREFIX),
        choice_request(tok, PREFIX + "Question: What is 3 + 4? Answer:", [" 7", " seven"], PREFIX),
        choice_request(tok, "The quick brown fox", [" jumps", " sat on the mat", " A"]),
        choice_request(tok, "Which gas do plants take in?" + long_tail, [" carbon dioxide", " helium"]),
        next_token_request(tok, PREFIX + "Question: What is 2 + 2? Answer: ", [5, 6, 7], PREFIX),
    ]


def reference(model, request: Request, removed=()):
    """Sum of log-probs of each continuation from one plain forward of context + continuation."""
    keep = [l for l in range(view(model).num_layers) if l not in removed]
    out = []
    with keep_layers(model, keep), torch.no_grad():
        for cont in request.continuations:
            logits = model(torch.tensor([list(request.context) + list(cont)])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            n = len(request.context)
            out.append(sum(float(logp[n - 1 + t, tok]) for t, tok in enumerate(cont)))
    return out


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_scores_equal_plain_forward(family, tok):
    model = tiny.model(family, 4)
    reqs = requests(tok)
    assert reqs[0].prefix_len > 0 and reqs[2].prefix_len == 0
    for batch_tokens in (32, 4096):  # many small batches, and one big one
        got = Scorer(model, batch_tokens=batch_tokens).score(reqs)
        for r, s in zip(reqs, got):
            assert s.logprobs == pytest.approx(reference(model, r), abs=TOL)


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_resume_from_layer_inputs_equals_plain_removal(family, tok):
    """Every single layer removed, and pairs; on the hybrid (layers linear, full, linear, full, linear), removals of
    linear and of full attention layers alike, including one after which only linear layers run (resumed at the
    attention layer before it: `Scorer.resume_point`)."""
    model = tiny.model(family, 5)
    scorer = Scorer(model, batch_tokens=4096)
    reqs = requests(tok)
    removals = [(0,), (1,), (2,), (3,), (4,), (0, 2), (2, 3)] + ([] if scorer.hybrid else [(1, 3), (0, 1, 2, 3)])
    for batch in scorer.plan(reqs):
        base, capture = scorer.run(reqs, batch, capture=True)
        plain_base, _ = scorer.run(reqs, batch)
        assert [s.logprobs for s in base] == [s.logprobs for s in plain_base]
        for removed in removals:
            start, keep = scorer.resume_point(removed)
            resumed, _ = scorer.run(reqs, batch, keep=keep, resume=(start, capture))
            for i, s in zip(batch.indices, resumed):
                assert s.logprobs == pytest.approx(reference(model, reqs[i], removed), abs=TOL), (removed, i)


def test_a_hybrid_removal_that_leaves_no_attention_layer_is_refused_with_todays_message(tok):
    scorer = Scorer(tiny.model("qwen3_5", 5))
    with pytest.raises(ModelError, match=r"removing these layers leaves qwen3_5_text with linear-attention layers "
                                         r"only; keep at least one of its attention layers \[1, 3\]"):
        scorer.score(requests(tok)[:1], removed=(1, 3))


def test_greedy_flag_matches_argmax(tok):
    model = tiny.model("llama", 3)
    r = choice_request(tok, "The quick brown", [" fox", " dog jumps"])
    with torch.no_grad():
        logits = model(torch.tensor([list(r.context)])).logits[0, -1]
    top = int(logits.argmax())
    r2 = Request(r.context, ((top,), (top, 5)))
    s = Scorer(model).score([r2])[0]
    with torch.no_grad():
        second = model(torch.tensor([list(r.context) + [top]])).logits[0, -1].argmax()
    assert s.greedy == (True, int(second) == 5)


def test_encode_pair_moves_trailing_space(tok):
    ctx, cont = encode_pair(tok, "Answer: ", "16")
    assert ctx == tok("Answer:")["input_ids"]
    assert ctx + cont == tok("Answer: 16")["input_ids"]


def test_the_sliding_families_are_those_with_a_window():
    assert {f for f in tiny.FAMILIES if view(tiny.model(f, 4)).window} == set(tiny.SLIDING_FAMILIES)


@pytest.mark.parametrize("family", tiny.SLIDING_FAMILIES)
def test_requests_longer_than_the_window_batch_with_a_shared_prefix(family, tok):
    """Masks from each row's own positions: requests of different lengths, all longer than the window of 16,
    share one batch and the few-shot prefix, though pads then lie between a short context and its continuation
    (which a window counted in cache columns would take in), and the scores are each request's alone."""
    model = tiny.model(family, 4)
    tails = ["2 + 2?", "the sum of 7 and 5 if you add them together?", "(3 + 4) * 2 - 1 + 10 - 6 * 2 + 9?"]
    reqs = [choice_request(tok, PREFIX + f"Question: What is {t} Answer:", [" 4", " 12 and then some more"], PREFIX)
            for t in tails]
    assert len({len(r.context) for r in reqs}) == 3 and min(len(r.context) - r.prefix_len for r in reqs) < 16
    scorer = Scorer(model, batch_tokens=4096)
    [batch] = scorer.plan(reqs)
    assert not batch.left and len(batch.prefix) == reqs[0].prefix_len > 16
    for r, s in zip(reqs, scorer.score(reqs)):
        assert s.logprobs == pytest.approx(reference(model, r), abs=TOL)
    start, keep = scorer.resume_point((1,))
    _, capture = scorer.run(reqs, batch, capture=True)
    resumed, _ = scorer.run(reqs, batch, keep=keep, resume=(start, capture))
    for i, s in zip(batch.indices, resumed):
        assert s.logprobs == pytest.approx(reference(model, reqs[i], (1,)), abs=TOL)


def test_batches_respect_the_token_budget_and_the_window(tok):
    """Where transformers builds the masks from cache columns (a decoder that takes no masks per layer type),
    requests longer than the window batch together, left-padded without a shared prefix."""
    reqs = requests(tok) * 5
    batches = plan_batches(reqs, batch_tokens=256, window=16)
    assert sorted(i for b in batches for i in b.indices) == list(range(len(reqs)))
    for b in batches:
        members = [reqs[i] for i in b.indices]
        assert all(r.context[: r.prefix_len] == b.prefix for r in members) or (b.left and b.prefix == ())
        longer = [len(r.context) + max(map(len, r.continuations)) > 16 for r in members]
        assert all(longer) == b.left and (all(longer) or not any(longer))
        padded = len(members) * max(len(r.context) - len(b.prefix) for r in members)
        assert len(members) == 1 or padded + sum(len(c) - 1 for r in members for c in r.continuations) <= 256
    assert any(b.left and len(b.indices) > 1 for b in batches)  # no longer one at a time
    assert all(b.left and b.prefix == () for b in plan_batches(reqs, 256, hybrid=True))
