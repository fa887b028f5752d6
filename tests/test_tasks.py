"""The arithmetic probe's format and determinism; packaged multiple-choice data and its splits."""

import pytest

from prunelab.errors import ConfigError, DataError
from prunelab.tasks import build_task
from prunelab.tasks.arithmetic import FEWSHOT, ArithmeticProbe, answer, digit_request, problems, prompt


def test_probe_prompt_format():
    assert FEWSHOT == (
        "Question: What is (4 * 4) * 1? Answer: 16\n"
        "Question: What is (8 + 3) * 5? Answer: 55\n"
        "Question: What is (7 + 5) - 6? Answer: 6\n"
    )
    assert prompt((2, "*", 3, "+", 4)) == FEWSHOT + "Question: What is (2 * 3) + 4? Answer: "
    assert answer((2, "-", 9, "+", 1)) == -6
    assert prompt((2, "-", 9, "+", 1)) == FEWSHOT + "Question: What is (2 - 9) + 1? Answer: -"


def test_probe_is_deterministic_and_excludes_fewshot():
    a, b = problems(500, seed=3), problems(500, seed=3)
    assert a == b and problems(500, seed=4) != a
    assert len(set(a)) == 500
    assert not {(4, "*", 4, "*", 1), (8, "+", 3, "*", 5), (7, "+", 5, "-", 6)} & set(a)
    assert all(0 <= x <= 9 for p in a for x in (p[0], p[2], p[4]))
    assert {p[1] for p in a} == {"+", "-", "*"}


def test_probe_items_target_first_digit(tok):
    task = ArithmeticProbe(limit=40, seed=1)
    items = task.items(tok)
    for item, p in zip(items, problems(40, 1)):
        assert item.gold == int(str(abs(answer(p)))[0])
        req = item.request
        assert len(req.continuations) == 10 and all(len(c) == 1 for c in req.continuations)
        assert req.prefix_len > 0  # the 3-shot block is computed once per batch
        # each digit continuation tokenizes exactly as the prompt followed by that digit
        for d, (token,) in enumerate(req.continuations):
            assert tok.decode(list(req.context) + [token], skip_special_tokens=True) == prompt(p) + str(d)


def test_probe_rejects_a_tokenizer_that_merges_digits(tok):
    class Merging:
        def __call__(self, text, add_special_tokens=True):
            ids = [ord(c) for c in text]  # one token per character, except " 1", which is one token
            return {"input_ids": ids[:-2] + [1000] if text.endswith(" 1") else ids}

        def convert_ids_to_tokens(self, ids):
            return ids

    with pytest.raises(DataError, match="each digit 0-9 to be one token"):
        digit_request(Merging(), "What is 3? Answer: ")


@pytest.mark.slow
def test_packaged_mc_data_and_disjoint_fewshot(tok):
    task = build_task("arc_easy", limit=20, seed=5, num_fewshot=3)
    shots, docs = task.fewshot_and_eval(task.docs())
    assert len(shots) == 3 and len(docs) == 20
    assert not {d.id for d in shots} & {d.id for d in docs}
    items = task.items(tok)
    assert all(it.request.prefix_len > 0 for it in items)
    assert [d.id for d in build_task("arc_easy", limit=20, seed=5, num_fewshot=3).fewshot_and_eval(task.docs())[1]] \
        == [d.id for d in docs]
    piqa = build_task("piqa", limit=5)
    assert all(len(it.request.continuations) == 2 for it in piqa.items(tok))


def test_unknown_task_lists_the_names():
    with pytest.raises(ConfigError, match="unknown task 'hellaswagg'.*arithmetic, arc_easy"):
        build_task("hellaswagg")


@pytest.mark.slow
@pytest.mark.parametrize("name, n_choices", [("hellaswag", 4), ("openbookqa", 4), ("arc_challenge", None)])
def test_more_packaged_mc_tasks(tok, name, n_choices):
    task = build_task(name, limit=6)
    items = task.items(tok)
    assert len(items) == 6
    if n_choices:
        assert all(len(it.request.continuations) == n_choices for it in items)
    assert all(0 <= it.gold < len(it.request.continuations) for it in items)


@pytest.mark.slow
def test_winogrande_items_are_two_contexts_one_continuation(tok):
    items = build_task("winogrande", limit=5).items(tok)
    for it in items:
        assert len(it.requests) == 2 and it.gold in (0, 1)
        assert it.requests[0].continuations == it.requests[1].continuations
        assert it.requests[0].context != it.requests[1].context


@pytest.mark.slow
def test_mmlu_prompt_and_shared_subject_prefix(tok):
    from prunelab.tasks.mmlu import description, format_question

    task = build_task("mmlu", limit=30, num_fewshot=2)
    items = task.items(tok)
    assert len(items) == 30 and len({it.id for it in items}) == 30
    assert all(it.request.prefix_len > 0 for it in items)
    row = {"question": " What is 2+2? ", "choices": ["1", "2", "3", "4"]}
    assert format_question(row) == "What is 2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    assert description("high_school_physics").startswith("The following are multiple choice questions (with answers) about high school physics.")


def test_every_task_declares_the_kind_its_registry_entry_says():
    """A task's kind is its own (lm-eval's output type: log-likelihood or generation); the registry's copy, which
    configs read without importing the task, must agree."""
    from prunelab.tasks import CLASSIFICATION, GENERATIVE_KIND, TASKS, build_task

    for name in TASKS.names():
        task = build_task(name)
        assert task.kind == TASKS.entry(name).kind in (CLASSIFICATION, GENERATIVE_KIND), name


def test_an_unreachable_evalplus_is_asked_once_a_day(monkeypatch, caplog):
    """Offline (here: a proxy that refuses), the first code task warns and falls back to the base tests; the next
    ones ask no network and say so at INFO, until the marker beside evalplus's cache is a day old or deleted."""
    import logging
    from pathlib import Path

    utils = pytest.importorskip("evalplus.data.utils")
    import evalplus.data.humaneval as humaneval

    from prunelab.data.evalplus import plus_tasks

    for name in ("HF_HUB_OFFLINE", "PRUNELAB_OFFLINE", "HUMANEVAL_OVERRIDE_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    cached = Path(utils.get_dataset_metadata("HumanEvalPlus", humaneval.HUMANEVAL_PLUS_VERSION, mini=False)[1])
    if cached.exists():
        pytest.skip("EvalPlus's HumanEval+ is cached on this machine: nothing is downloaded")
    marker = Path(f"{cached}.unreachable")
    marker.unlink(missing_ok=True)
    try:
        with caplog.at_level(logging.INFO, logger="prunelab.data.evalplus"):
            assert plus_tasks("humaneval") is None and marker.exists()
            assert plus_tasks("humaneval") is None
        levels = [r.levelno for r in caplog.records if r.name == "prunelab.data.evalplus"]
        assert levels == [logging.WARNING, logging.INFO] and "was unreachable" in caplog.records[-1].message
    finally:
        marker.unlink(missing_ok=True)
