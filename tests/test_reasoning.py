"""Reasoning models: the thinking switch reaches the prompt as each family's template takes it (and is refused by
name where a template has none), an output is split into reasoning and answer at its budgets exactly as a run
stopped at each budget would be, an output still reasoning at its budget is recorded as cut in thinking (not as a
wrong answer), and non-reasoning evaluation is untouched."""

import json

import pytest
import reasoning_templates as templates

from prunelab.cli import main
from prunelab.errors import ConfigError
from prunelab.generation import Sampling
from prunelab.generation.reasoning import Budgets, check_thinking, reasoning_format, split
from prunelab.results import ResultsStore
from prunelab.tasks import build_task

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def render(template, **kwargs):
    return templates.tokenizer(template).apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False,
                                                             **kwargs)


def test_the_switch_reaches_the_prompt_as_each_family_takes_it():
    qwen3 = check_thinking(templates.tokenizer(templates.QWEN3), "off", None, "qwen3")
    assert render(templates.QWEN3, **qwen3.template_kwargs("off", None, "")).endswith("<think>\n\n</think>\n\n")
    assert render(templates.QWEN3, **qwen3.template_kwargs("on", None, "")).endswith("<|im_start|>assistant\n")
    assert qwen3.template_kwargs("default", None, "") == {}
    harmony = check_thinking(templates.tokenizer(templates.HARMONY), "default", "high", "gpt-oss")
    assert "Reasoning: high" in render(templates.HARMONY, **harmony.template_kwargs("default", "high", ""))
    assert "Reasoning: medium" in render(templates.HARMONY)
    assert reasoning_format(templates.R1).switch is None and reasoning_format(templates.CHATML) is None


@pytest.mark.parametrize("template, mode, effort, message", [
    (templates.R1, "off", None, "r1's chat template has no switch for thinking"),
    (templates.CHATML, "on", None, "chatml's chat template has no reasoning format"),
    (templates.HARMONY, "off", None, "gpt-oss .harmony. always reasons"),
    (templates.QWEN3, "default", "low", "reasoning_effort applies to harmony templates"),
])
def test_a_switch_a_template_does_not_have_is_refused_by_name(template, mode, effort, message):
    where = {templates.R1: "r1", templates.CHATML: "chatml", templates.HARMONY: "gpt-oss"}.get(template, "qwen3")
    with pytest.raises(ConfigError, match=message):
        check_thinking(templates.tokenizer(template), mode, effort, where)


def test_an_output_is_cut_at_its_budgets():
    start, end = [7], [8]
    budgets = Budgets("<think>", "</think>", thinking=5, answer=3)
    # reasoning that ends within its budget, then the answer, cut at its budget
    parts = split([7, 1, 2, 8, 4, 5, 6, 9], start, end, False, budgets, hit_limit=False)
    assert (parts.reasoning, parts.answer, parts.cut_in_thinking, parts.answer_cut) == ([7, 1, 2, 8], [4, 5, 6],
                                                                                       False, True)
    # the end marker only after the thinking budget: cut inside the thinking, no answer
    parts = split([7, 1, 2, 3, 4, 8, 5], start, end, False, budgets, hit_limit=False)
    assert (parts.reasoning, parts.answer, parts.cut_in_thinking) == ([7, 1, 2, 3, 4], [], True)
    # a prompt that opened the block itself: the output reasons from its first token
    parts = split([1, 8, 4], start, end, True, budgets, hit_limit=False)
    assert (parts.reasoning, parts.answer, parts.cut_in_thinking, parts.answer_cut) == ([1, 8], [4], False, False)
    # ended inside its reasoning before the budget: no answer, but not cut by the budget
    assert split([7, 1], start, end, False, budgets, hit_limit=False).cut_in_thinking is False
    # no reasoning: the answer's budget alone
    parts = split([1, 2, 3], start, end, False, budgets, hit_limit=True)
    assert (parts.reasoning, parts.answer, parts.answer_cut) == ([], [1, 2, 3], True)


def test_cutting_at_the_budgets_equals_stopping_there(tiny_model_dir, tmp_path):
    """The same item generated once up to both budgets and split, against a run stopped at the thinking budget:
    the reasoning is the same tokens (decoding is causal)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.generation import HFBackend

    path = templates.save(tmp_path / "r1", templates.R1)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    item = build_task("gsm8k", limit=1).items(tok)[0]
    assert item.request.opens_reasoning
    backend = HFBackend(model, tok, batch_size=1)
    budgets = Budgets("<think>", "</think>", thinking=6, answer=4)
    got = backend.generate([item.request], Sampling(max_new_tokens=budgets.total, reasoning=budgets))[0]
    alone = backend.generate([item.request], Sampling(max_new_tokens=6))[0]
    assert got.cut_in_thinking and got.thinking_tokens == 6 and got.text == "" and got.finish_reason == "length"
    assert got.reasoning == alone.text.replace("</think>", "").replace("<think>", "").strip()


def test_eval_records_answers_cut_inside_their_thinking(tiny_model_dir, tmp_path, capsys):
    path = templates.save(tmp_path / "r1", templates.R1)
    out = tmp_path / "eval"
    assert main(["eval", "--local", "--model", str(path), "--tasks", "gsm8k", "--limit", "3", "--out", str(out),
                 "--no-progress", "tasks.0.max_new_tokens=3", "generation.thinking_budget=4"]) == 0
    rows = ResultsStore(out).read().to_pandas()
    values = rows.groupby("metric").value.apply(list).to_dict()
    assert values["cut_in_thinking"] == [1.0] * 3 and values["thinking_tokens"] == [4.0] * 3
    assert values["answer_tokens"] == [0.0] * 3 and values["flexible_extract"] == [0.0] * 3
    generations = ResultsStore(out).generations().to_pandas()
    assert (generations.output == "").all() and (generations.reasoning.str.len() > 0).all()
    assert (generations.outcome == "cut in thinking").all()
    assert json.loads((out / "meta.json").read_text())["config"]["generation"]["thinking_budget"] == 4


def test_thinking_off_renders_the_switch_and_a_template_without_one_is_refused_before_anything_is_written(
        tiny_model_dir, tmp_path, capsys):
    qwen3 = templates.save(tmp_path / "qwen3", templates.QWEN3)
    out = tmp_path / "off"
    assert main(["eval", "--local", "--model", str(qwen3), "--tasks", "gsm8k", "--limit", "2", "--out", str(out),
                 "--no-progress", "tasks.0.max_new_tokens=3", "generation.thinking=off"]) == 0
    generations = ResultsStore(out).generations().to_pandas()
    assert generations.prompt.str.endswith("<think>\n\n</think>\n\n").all()
    rows = ResultsStore(out).read().to_pandas()
    assert "thinking_tokens" not in set(rows.metric)  # off: the output is the answer, as a plain model's
    assert "reasoning" not in generations

    r1 = templates.save(tmp_path / "r1", templates.R1)
    refused = tmp_path / "refused"
    assert main(["eval", "--local", "--model", str(r1), "--tasks", "gsm8k", "--limit", "2", "--out", str(refused),
                 "--no-progress", "generation.thinking=off"]) == 2
    assert "has no switch for thinking" in capsys.readouterr().err and not refused.exists()
    assert main(["eval", "--local", "--model", str(r1), "--tasks", "gsm8k", "--limit", "2", "--out", str(refused),
                 "--no-progress", "generation.thinking_budget=600"]) == 2
    assert "generation.thinking_budget is 600" in capsys.readouterr().err and not refused.exists()


def test_a_model_that_does_not_reason_is_evaluated_as_before(tiny_model_dir):
    task = build_task("gsm8k", limit=2)
    import tiny

    items = task.items(tiny.tokenizer())
    assert task.reasoning is None and not any(it.request.opens_reasoning for it in items)
    assert task.sampling(False) == Sampling(max_new_tokens=512, seed=1234, stop=("\n\nQuestion:", "Question:"))
    assert "thinking_tokens" not in task.metrics


def test_the_multi_candidate_engine_splits_as_the_hf_backend_does(tmp_path):
    """A sweep of a reasoning model: every candidate's reasoning, answer and cut equal the HF backend's on the model
    with those layers removed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.generation import HFBackend
    from prunelab.generation.candidates import CandidateGenerator
    from prunelab.surgery import keep_layers

    path = templates.save(tmp_path / "r1", templates.R1)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    requests = [it.request for it in build_task("gsm8k", limit=3).items(tok)]
    budgets = Budgets("<think>", "</think>", thinking=5, answer=3)
    sampling = Sampling(max_new_tokens=budgets.total, reasoning=budgets)
    candidates = [(), (1,), (2, 3)]
    fused = CandidateGenerator(model, tok).generate(requests, candidates, sampling)
    for removed, got in zip(candidates, fused):
        with keep_layers(model, [i for i in range(4) if i not in removed]):
            want = HFBackend(model, tok, batch_size=1).generate(requests, sampling)
        fields = ("text", "reasoning", "thinking_tokens", "cut_in_thinking", "finish_reason", "output_tokens")
        assert [[getattr(g, f) for f in fields] for g in got] == [[getattr(w, f) for f in fields] for w in want]
        assert all(g.reasoning is not None for g in got)


@pytest.mark.parametrize("template, output", [
    (templates.QWEN3, "<think>\nTwo plus three is five.\n</think>\n\nThe final answer is 5"),
    (templates.HARMONY, "<|channel|>analysis<|message|>Two plus three is five.<|end|><|start|>assistant"
                        "<|channel|>final<|message|>The final answer is 5"),
])
def test_an_answer_is_split_from_its_reasoning_in_each_format(template, output):
    """A reasoning output as each family writes it, through the function every backend finishes with: the answer
    alone is scored, the reasoning is kept without its markers, the tokens are counted apart."""
    from prunelab.generation.reasoning import finish_with_reasoning

    tok = templates.tokenizer(template)
    fmt = reasoning_format(template)
    ids = tok.encode(output, add_special_tokens=False)
    budgets = Budgets(fmt.start, fmt.end, thinking=64, answer=64)
    text, reasoning, reason, answer_n, thinking_n, cut = finish_with_reasoning(tok, ids, False, budgets, "stop")
    assert (text, reasoning.strip(), reason, cut) == ("The final answer is 5", "Two plus three is five.", "stop",
                                                      False)
    reasoned = output[:output.index(fmt.end) + len(fmt.end)]  # the markers are added tokens: clean boundaries
    assert thinking_n == len(tok.encode(reasoned, add_special_tokens=False)) and answer_n + thinking_n == len(ids)
    # the same output with a thinking budget that ends inside the reasoning: cut, no answer
    short = Budgets(fmt.start, fmt.end, thinking=5, answer=64)
    text, _, reason, answer_n, thinking_n, cut = finish_with_reasoning(tok, ids, False, short, "stop")
    assert (text, reason, answer_n, thinking_n, cut) == ("", "length", 0, 5, True)


def _sgr(model, prompts, out, **sampling):
    from prunelab.config import SGRConfig, parse_config

    return parse_config({"kind": "sgr", "name": "r", "model": {"name": str(model), "dtype": "float32"},
                         "output_dir": str(out), "engine": {"shard_size": 4, "batch_size": 4},
                         "prompts": {"source": str(prompts), "limit": None, "exclude_tasks": [],
                                     "max_prompt_tokens": 128}, "sampling": sampling}, cls=SGRConfig)


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "q.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?"}) + "\n" for i in range(6)))
    return path


def test_sgr_of_a_reasoning_model_keeps_its_reasoning_apart_and_drops_responses_cut_inside_it(tmp_path, questions):
    """R1's template opens the reasoning itself: with a thinking budget the tiny model never closes, every row is
    cut in thinking, dropped as such, its reasoning the tokens a run stopped at the budget gives."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunelab.generation import GenerationRequest, HFBackend
    from prunelab.sgr.shards import CorpusShards
    from prunelab.stages.sgr import generate_corpus

    path = templates.save(tmp_path / "r1", templates.R1)
    root = generate_corpus(_sgr(path, questions, tmp_path / "sgr", max_new_tokens=3, thinking_budget=4),
                           progress=False)
    rows = CorpusShards(root).read().to_pylist()
    assert len(rows) == 6 and {r["dropped"] for r in rows} == {"cut in thinking"}
    assert all(r["cut_in_thinking"] and r["thinking_tokens"] == 4 and r["response"] == "" for r in rows)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                     tokenize=True, return_dict=True)["input_ids"]
    alone = HFBackend(model, tok, batch_size=1).generate([GenerationRequest("x", "", tuple(prompt))],
                                                         Sampling(max_new_tokens=4))[0]
    row = next(r for r in rows if "2 + 2" in r["messages"])
    assert row["reasoning"] == alone.text.replace("</think>", "").strip()
    meta = json.loads((root / "meta.json").read_text())
    assert meta["reasoning_format"] == "think tags" and meta["counts"]["dropped_cut_in_thinking"] == 6


def test_sgr_thinking_off_reaches_the_prompt_and_a_template_without_the_switch_is_refused(tmp_path, questions,
                                                                                         capsys):
    from prunelab.sgr.shards import CorpusShards
    from prunelab.stages.sgr import plan_corpus

    qwen3 = templates.save(tmp_path / "qwen3", templates.QWEN3)
    _, _, selection = plan_corpus(_sgr(qwen3, questions, tmp_path / "x", max_new_tokens=3, thinking="off"))
    tok = templates.tokenizer(templates.QWEN3)
    assert all(tok.decode(p.prompt_ids).endswith("<think>\n\n</think>\n\n") for p in selection.prompts)
    from prunelab.stages.sgr import generate_corpus

    root = generate_corpus(_sgr(qwen3, questions, tmp_path / "off", max_new_tokens=3, thinking=False),
                           progress=False)
    rows = CorpusShards(root).read().to_pylist()  # off: answers as a plain model's, no reasoning columns
    assert all(r["reasoning"] is None and r["cut_in_thinking"] is None for r in rows)
    r1 = templates.save(tmp_path / "r1", templates.R1)
    config = tmp_path / "sgr.yaml"
    config.write_text(json.dumps(_sgr(r1, questions, tmp_path / "refused", thinking="off").model_dump(mode="json")))
    assert main(["sgr", str(config), "--local", "--no-progress"]) == 2
    assert "has no switch for thinking" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main(["sgr", str(config), "--local", "--no-progress", "sampling.thinking=default",
                 "sampling.thinking_budget=600"]) == 2  # 128 prompt + 600 + 1024 answer tokens: over 512
    assert "sampling.thinking_budget (600)" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    # at their defaults the reasoning settings leave a corpus's key as it was before they existed
    assert not {"thinking", "thinking_budget", "reasoning_effort"} & set(
        _sgr(qwen3, questions, tmp_path / "k").identity()["sampling"])


def _corpus_rows():
    return [{"id": "a", "messages": json.dumps([{"role": "user", "content": "What is 2 + 3?"}]), "reference": "5",
             "response": "The answer is 5.", "reasoning": "Two plus three is five.", "dropped": None},
            {"id": "b", "messages": json.dumps([{"role": "user", "content": "What is 1 + 1?"}]), "reference": "2",
             "response": "2", "reasoning": None, "dropped": None}]


@pytest.mark.parametrize("template, fmt", [(templates.QWEN3, "think tags"), (templates.HARMONY, "harmony")])
def test_recovery_trains_on_the_reasoning_where_the_template_writes_it(template, fmt):
    """keep: the rendered training text holds the reasoning and then the answer, as the family's template writes a
    reasoning turn; drop: the answer alone, rendered as the template renders a plain turn."""
    from prunelab.recovery.data import check_reasoning_kept, training_examples

    tok, rows = templates.tokenizer(template), _corpus_rows()
    kept, _ = training_examples(rows, "sgr", "keep", fmt)
    check_reasoning_kept(kept, rows, tok, "c")
    text = tok.apply_chat_template(kept[0]["prompt"] + kept[0]["completion"], tokenize=False)
    assert text.index("Two plus three is five.") < text.index("The answer is 5.")
    dropped, _ = training_examples(rows, "sgr", "drop", fmt)
    text = tok.apply_chat_template(dropped[0]["prompt"] + dropped[0]["completion"], tokenize=False)
    assert "Two plus three" not in text and "The answer is 5." in text
    reference, _ = training_examples(rows, "reference", "keep", fmt)  # the original answers never had reasoning
    assert [e["completion"][0]["content"] for e in reference] == ["5", "2"]


def test_keeping_the_reasoning_is_refused_where_the_template_drops_it():
    from prunelab.errors import DataError
    from prunelab.recovery.data import check_reasoning_kept, training_examples

    tok, rows = templates.tokenizer(templates.R1), _corpus_rows()  # R1 strips every assistant turn's reasoning
    kept, _ = training_examples(rows, "sgr", "keep", "think tags")
    with pytest.raises(DataError, match="drops the reasoning of an assistant turn .*recover.reasoning: drop"):
        check_reasoning_kept(kept, rows, tok, "c")


def test_corpus_shards_written_before_the_reasoning_columns_read_with_them_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelab.sgr.shards import ROW_SCHEMA, CorpusShards

    old = pa.schema([f for f in ROW_SCHEMA if f.name not in ("reasoning", "thinking_tokens", "cut_in_thinking")])
    row = {"id": "a", "shard": 0, "messages": "[]", "reference": None, "response": "r", "finish_reason": "stop",
           "prompt_tokens": 3, "output_tokens": 1, "model": "m", "temperature": 0.0, "top_p": 1.0,
           "max_new_tokens": 4, "seed": 0, "dropped": None}
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "shards" / "shard-00000.parquet")
    got = CorpusShards(tmp_path).read().to_pylist()
    assert got == [{**row, "reasoning": None, "thinking_tokens": None, "cut_in_thinking": None}]


def test_a_corpus_trains_on_its_reasoning_in_the_format_its_meta_records(tmp_path):
    """select_examples reads the corpus's reasoning format from its meta.json: a gpt-oss corpus trains with the
    reasoning as harmony's analysis message, not as think tags pasted into the answer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelab.recovery.data import select_examples
    from prunelab.sgr.shards import ROW_SCHEMA

    base = {"shard": 0, "finish_reason": "stop", "prompt_tokens": 3, "output_tokens": 4, "model": "m",
            "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 0, "thinking_tokens": 3,
            "cut_in_thinking": False}
    rows = [{**base, **r} for r in _corpus_rows()]
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), tmp_path / "shards" / "shard-00000.parquet")
    (tmp_path / "meta.json").write_text(json.dumps({"stage": "sgr", "complete": True,
                                                    "reasoning_format": "harmony"}))
    tok = templates.tokenizer(templates.HARMONY)
    examples, counts = select_examples(str(tmp_path), "sgr", tok, 512)
    text = tok.apply_chat_template(examples[0]["prompt"] + examples[0]["completion"], tokenize=False)
    assert "<|channel|>analysis<|message|>Two plus three is five.<|end|>" in text and "<think>" not in text
    assert counts["examples"] == 2
    examples, _ = select_examples(str(tmp_path), "sgr", tok, 512, reasoning="drop")
    assert "<|channel|>analysis" not in tok.apply_chat_template(examples[0]["prompt"] + examples[0]["completion"],
                                                                tokenize=False)


def test_a_tiny_gpt_oss_model_is_evaluated_through_its_harmony_template(tmp_path, capsys):
    """gpt-oss end to end: the reasoning effort reaches the system message, `thinking: off` is refused (it always
    reasons), and its outputs are scored with the reasoning metrics (an output that never opens the analysis
    channel is all answer: no thinking tokens, not cut)."""
    path = templates.save(tmp_path / "gpt-oss", templates.HARMONY, family="gpt_oss")
    out = tmp_path / "eval"
    assert main(["eval", "--local", "--model", str(path), "--tasks", "gsm8k", "--limit", "2", "--out", str(out),
                 "--no-progress", "tasks.0.max_new_tokens=3", "generation.reasoning_effort=low",
                 "generation.thinking_budget=4"]) == 0
    generations = ResultsStore(out).generations().to_pandas()
    assert generations.prompt.str.contains("Reasoning: low").all()
    assert generations.prompt.str.endswith("<|start|>assistant").all()
    values = ResultsStore(out).read().to_pandas().groupby("metric").value.apply(list).to_dict()
    assert values["thinking_tokens"] == [0.0, 0.0] and values["cut_in_thinking"] == [0.0, 0.0]
    assert values["answer_tokens"] == [3.0, 3.0]
    refused = tmp_path / "refused"
    assert main(["eval", "--local", "--model", str(path), "--tasks", "gsm8k", "--limit", "2", "--out", str(refused),
                 "--no-progress", "generation.thinking=off"]) == 2
    assert "always reasons" in capsys.readouterr().err and not refused.exists()
