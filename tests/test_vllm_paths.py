"""prunelab's vLLM code that runs without vLLM: the layer switch's removed layer, for each way vLLM 0.33's families
call their decoder layers (read in its source: the standard, gpt_oss, Qwen3-Next/3.5, granite, the Transformers
backend; the vLLM lane, tests/test_vllm.py, checks the switch against exported checkpoints), and engines that share a
GPU starting one after another."""

import pytest

from prunelab.generation.vllm_layers import passthrough

H, R, P = object(), object(), object()  # hidden states, residual, positions


class Standard:  # llama, mistral, qwen2/3, qwen3_moe, mixtral, gemma2/3, phi3, deepseek_v3 (one extra argument)
    def forward(self, positions, hidden_states, residual, *args, **kwargs):
        raise AssertionError("removed")


class GptOss:
    def forward(self, hidden_states, positions, residual):
        raise AssertionError("removed")


class Qwen3Next:
    def forward(self, hidden_states, residual, positions, **kwargs):
        raise AssertionError("removed")


class Granite:
    def forward(self, positions, hidden_states):
        raise AssertionError("removed")


class HFLayer:  # vLLM's Transformers backend (olmo2, smollm3): Hugging Face's own decoder layers
    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False,
                position_embeddings=None, **kwargs):
        raise AssertionError("removed")


@pytest.mark.parametrize("layer, call, returned", [
    (Standard(), lambda f: f(P, H, R), (H, R)),
    (Standard(), lambda f: f(P, H, None), (H, None)),  # after a removed layer 0
    (Standard(), lambda f: f(P, H, R, "llama_4_scaling"), (H, R)),
    (GptOss(), lambda f: f(H, P, R), (H, R)),
    (Qwen3Next(), lambda f: f(positions=P, hidden_states=H, residual=R), (H, R)),
    (Granite(), lambda f: f(P, H), H),
    (HFLayer(), lambda f: f(H, attention_mask="mask", position_ids=P, position_embeddings=("cos", "sin")), H),
])
def test_a_removed_layer_returns_its_input_as_its_caller_expects(layer, call, returned):
    got = call(passthrough(layer))
    assert got == returned if isinstance(returned, tuple) else got is returned


def test_a_layer_without_hidden_states_is_refused_by_name():
    class Odd:
        def forward(self, inputs, positions):
            pass

    with pytest.raises(ValueError, match=r"Odd.forward.*no hidden-states argument.*generation.backend hf"):
        passthrough(Odd())


def _start(gpus, log, hold_s):
    import time

    from prunelab.generation.vllm import one_engine_starting_per_gpu

    with one_engine_starting_per_gpu(gpus):
        with open(log, "a") as f:
            f.write(f"start {time.monotonic()}\n")
        time.sleep(hold_s)
        with open(log, "a") as f:
            f.write(f"end {time.monotonic()}\n")


def test_engines_sharing_a_gpu_start_one_after_another(tmp_path, monkeypatch):
    """Two engines on GPU 0 (two actors at num_gpus 0.5): the second starts when the first has started; an engine
    on another GPU does not wait."""
    import multiprocessing

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the locks live in this test's own directory
    context = multiprocessing.get_context("spawn")
    shared, other = tmp_path / "gpu0.log", tmp_path / "gpu1.log"
    runs = [context.Process(target=_start, args=(["0"], shared, 1.0)) for _ in range(2)]
    runs.append(context.Process(target=_start, args=(["1"], other, 0.0)))
    for p in runs:
        p.start()
    for p in runs:
        p.join(60)
    assert [p.exitcode for p in runs] == [0, 0, 0]
    events = [line.split() for line in shared.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end", "start", "end"]  # never two starting at once
    assert float(events[2][1]) >= float(events[1][1])
    assert other.read_text().startswith("start")
