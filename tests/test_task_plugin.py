"""A new task is one module and one registry line: a generative task from a test module, registered through
`TASKS.register`, is validated by configs, evaluated by `prunelab eval` (stored, scored, reported), and its test
items are kept out of calibration and recovery data by the overlap check."""

import json

import pytest
import torch
from plugin_task import SENTENCES, RepeatSentence
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from prunelab.cli import main
from prunelab.config import PromptsSpec, TaskSpec
from prunelab.errors import ConfigError, DataError
from prunelab.results import ResultsStore
from prunelab.tasks import GENERATIVE_KIND, TASKS, TaskEntry, generative_tasks
from prunelab.tasks.overlap import check_disjoint


@pytest.fixture
def registered():
    TASKS.register("repeat_sentence", TaskEntry("plugin_task:RepeatSentence", GENERATIVE_KIND))
    yield
    TASKS.unregister("repeat_sentence")


def test_a_registered_task_runs_through_eval_and_the_overlap_check(registered, tiny_model_dir, tmp_path, capsys):
    assert "repeat_sentence" in generative_tasks()
    assert TaskSpec(name="repeat_sentence", max_new_tokens=6).build().max_new_tokens == 6  # generation fields apply
    model = tiny_model_dir("qwen2")
    out = tmp_path / "eval"
    assert main(["eval", "--local", "--model", str(model), "--tasks", "repeat_sentence,arithmetic", "--limit", "4",
                 "--out", str(out), "--dtype", "float32", "--no-progress", "tasks.0.max_new_tokens=6"]) == 0
    assert "repeat_sentence" in capsys.readouterr().out

    # stored: every item, the task's own metrics, the generation; each output is transformers' greedy output
    rows = ResultsStore(out).read().to_pandas()
    mine = rows[rows.task == "repeat_sentence"]
    assert mine.item_id.nunique() == 4 and {"exact", "first_word", "truncated", "rep2"} <= set(mine.metric)
    generations = ResultsStore(out).generations().to_pandas().set_index("item_id")
    tok = AutoTokenizer.from_pretrained(model)
    hf = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
    task = RepeatSentence(limit=4, max_new_tokens=6)
    for item in task.items(tok):
        ids = hf.generate(input_ids=torch.tensor([item.request.prompt_ids]),
                          generation_config=GenerationConfig(do_sample=False, max_new_tokens=6,
                                                             pad_token_id=tok.pad_token_id or tok.eos_token_id))
        text = tok.decode(ids[0, len(item.request.prompt_ids):], skip_special_tokens=True)
        assert generations.loc[item.id, "output"] == text, item.id
        want = float(text.strip() == item.reference["sentence"])
        assert mine[(mine.item_id == item.id) & (mine.metric == "exact")].value.item() == want
    described = json.loads((out / "meta.json").read_text())["tasks"]["repeat_sentence"]
    assert described["kind"] == GENERATIVE_KIND and described["primary_metric"] == "exact"

    # its test items are test items: calibration text containing one is refused, naming the task
    with pytest.raises(DataError, match="overlaps the test split of repeat_sentence"):
        check_disjoint(["notes: " + SENTENCES[2] + " (copied)", "unrelated text " * 8], ["repeat_sentence"])
    check_disjoint(["unrelated text " * 8], ["repeat_sentence"])
    assert "repeat_sentence" in PromptsSpec().exclude_tasks  # SGR leaves its items out of recovery prompts by default


def test_a_name_already_taken_or_never_registered_is_refused(registered):
    with pytest.raises(ConfigError, match="task 'gsm8k' is registered already"):
        TASKS.register("gsm8k", TaskEntry("plugin_task:RepeatSentence", GENERATIVE_KIND))
    with pytest.raises(ConfigError, match="unknown task 'repeat_sentense'; allowed: .*repeat_sentence"):
        TASKS.check("repeat_sentense")
    with pytest.raises(ValueError, match="max_new_tokens only apply to generative tasks"):
        TaskSpec(name="arithmetic", max_new_tokens=6)
