"""Every family's cached paths on a CUDA GPU (skipped without one): the engine's resumed candidates score what the
model with the layers really removed scores, the multi-candidate generator gives each candidate its own greedy
tokens, and Block Influence equals the one-text reference: the CPU tests of the same names, with every tensor and
model made on the GPU."""

import pytest
import tiny
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def on_gpu():
    torch.set_default_device("cuda")
    try:
        yield
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize("family", tiny.KV_FAMILIES)
def test_resumed_candidates_score_as_the_removed_model_on_gpu(family, tok):
    from test_engine import test_resume_from_layer_inputs_equals_plain_removal

    test_resume_from_layer_inputs_equals_plain_removal(family, tok)
    assert next(tiny.model(family, 2).parameters()).is_cuda


@pytest.mark.parametrize("family", tiny.KV_FAMILIES)
def test_every_candidate_gets_its_own_tokens_on_gpu(family, tok, monkeypatch):
    from test_candidates import test_every_candidate_gets_the_tokens_it_gets_alone

    test_every_candidate_gets_the_tokens_it_gets_alone(family, tok, monkeypatch)


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_block_influence_equals_the_reference_on_gpu(family, tok):
    from test_strategies import test_block_influence_and_angular_equal_a_one_text_reference

    test_block_influence_and_angular_equal_a_one_text_reference(family, tok)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_model_spread_over_two_gpus_scores_as_on_one(family, tiny_model_dir, tok):
    """A model larger than one GPU: `load_model(device="cuda")` with two GPUs visible spreads its layers over both
    (straight from the checkpoint), and the resumed candidates, whose recorded inputs live on their layer's GPU,
    score what the single-GPU model scores."""
    from prunelab.execution.worker import Worker, WorkerSpec
    from prunelab.tasks import build_task

    torch.set_default_device(None)
    path = str(tiny_model_dir(family))
    task = build_task("arithmetic", limit=8)
    requests = [item.request for item in task.items(tok)]
    spread = Worker(WorkerSpec(model=path, dtype="float32", device="cuda"))
    single = Worker(WorkerSpec(model=path, dtype="float32", device="cuda:0"))
    assert {p.device.index for p in spread.model.parameters()} == {0, 1}
    for worker in (spread, single):
        worker.prepare(requests)
    for removed in [(0,), (2,)]:
        got, want = spread.score(removed), single.score(removed)
        for g, w in zip(got, want):
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
