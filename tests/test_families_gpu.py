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


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_resumed_candidates_score_as_the_removed_model_on_gpu(family, tok):
    from test_engine import test_resume_from_layer_inputs_equals_plain_removal

    test_resume_from_layer_inputs_equals_plain_removal(family, tok)
    assert next(tiny.model(family, 2).parameters()).is_cuda


@pytest.mark.parametrize("family", tiny.FAMILIES)
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


def spread_over_gpu_and_cpu(model):
    """`model` with its first half of layers (and the embeddings) on cuda:0 and the rest (with the final norm and the
    head) on the CPU, each module executing where it lives (accelerate's hooks move activations between them):
    the cross-device path of a model spread over two GPUs, on one GPU."""
    from accelerate import dispatch_model

    layers = model.config.num_hidden_layers
    names = [n for n, _ in model.named_children()]
    inner = [n for n, _ in model.model.named_children() if n != "layers"]
    device_map = {f"model.{n}": 0 if n in ("embed_tokens", "rotary_emb") else "cpu" for n in inner}
    device_map |= {f"model.layers.{i}": 0 if i < layers // 2 else "cpu" for i in range(layers)}
    device_map |= {n: "cpu" for n in names if n != "model"}
    # main_device cpu: modules mapped to the CPU run there (with a GPU main device, accelerate would offload them
    # and run them on the GPU, which is not the path under test)
    return dispatch_model(model, device_map, main_device="cpu")


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_model_spread_over_the_gpu_and_the_cpu_scores_and_generates_as_on_one(family, tok):
    """Item 1 of the GPU path's second read: the scorer (base pass, a candidate resumed from a layer on the other
    device), the multi-candidate generator (recorded inputs on their layer's device, rows skipping layers on both)
    and the KV rows give what the same model gives on the CPU alone."""
    from test_candidates import requests

    from prunelab.execution.worker import Worker
    from prunelab.generation import Sampling
    from prunelab.generation.candidates import CandidateGenerator
    from prunelab.tasks import build_task, flatten

    torch.set_default_device(None)
    alone = tiny.model(family, 4).eval()
    spread = spread_over_gpu_and_cpu(tiny.model(family, 4).eval())
    assert {p.device.type for p in spread.parameters()} == {"cuda", "cpu"}
    items = build_task("arc_easy", limit=8).items(tok)
    reference, crossing = Worker.around(alone, tok), Worker.around(spread, tok)
    crossing.device = "cuda:0"
    for worker in (reference, crossing):
        worker.prepare(flatten(items))
    for removed in [(), (1,), (3,), (1, 2)]:
        want = reference.score(removed) if removed else reference.prepare(flatten(items))
        got = crossing.score(removed) if removed else crossing.prepare(flatten(items))
        for g, w in zip(got, want):
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-3)
    reqs, sampling = requests(tok), Sampling(max_new_tokens=10)
    candidates = [(), (1,), (3,), (1, 3)]
    want = CandidateGenerator(alone, tok, batch_tokens=48, decode_tokens=120).generate(reqs, candidates, sampling)
    got = CandidateGenerator(spread, tok, batch_tokens=48, decode_tokens=120).generate(reqs, candidates, sampling)
    same = sum(g.text == w.text for gs, ws in zip(got, want) for g, w in zip(gs, ws))
    assert same >= 0.9 * sum(len(w) for w in want)  # GPU and CPU float32 may split a near tie differently
