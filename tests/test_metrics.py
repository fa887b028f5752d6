"""Degeneration metrics and the code error taxonomy on hand-checked cases."""

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from prunelab.metrics.code_errors import Outcome, classify, syntax_class
from prunelab.metrics.degeneration import degeneration, rep_n, self_bleu4, sentences


def test_rep_n():
    assert rep_n("a b c d", 2) == 0.0
    assert rep_n("a b a b a b", 2) == pytest.approx(1 - 2 / 5)  # 5 bigrams, 2 distinct
    assert rep_n("a", 2) == 0.0


def test_self_bleu_is_intra_response():
    looping = "The answer is 4. The answer is 4. The answer is 4."
    varied = "First add the numbers. Then check the carry! Finally write 42 down."
    assert self_bleu4(looping) == pytest.approx(1.0)
    assert self_bleu4(varied) < 0.2
    assert self_bleu4("Only one sentence.") == 0.0
    s = sentences(varied)
    smooth = SmoothingFunction().method1
    expected = sum(sentence_bleu(s[:i] + s[i + 1:], x, smoothing_function=smooth) for i, x in enumerate(s)) / 3
    assert self_bleu4(varied) == pytest.approx(expected)
    assert set(degeneration(looping)) == {"rep2", "rep3", "rep4", "self_bleu4"}


@pytest.mark.parametrize(
    "code, finish, outcome, expected",
    [
        ("def f(x):\n    return x\n", "stop", Outcome("passed"), "passed"),
        ("def f(x):\n    return (x + 1\n", "length", Outcome("failed", "SyntaxError"), "truncated"),
        ("def f(x):\n    return (x + 1\n", "stop", Outcome("failed", "SyntaxError"), "bracket"),
        ("def f(x):\n    return x + 1]\n", "stop", Outcome("failed", "SyntaxError"), "bracket"),
        ("def f(x):\n    return [x + 1)\n", "stop", Outcome("failed", "SyntaxError"), "bracket"),
        ("def f(x)\n    return x\n", "stop", Outcome("failed", "SyntaxError"), "syntax"),
        ("def f(x):\nreturn x\n", "stop", Outcome("failed", "IndentationError"), "syntax"),
        ("def f(x):\n    return y\n", "stop", Outcome("failed", "NameError", "name 'y' is not defined"), "undefined_name"),
        ("def f(x):\n    while True: pass\n", "stop", Outcome("timeout"), "timeout"),
        ("def f(x):\n    return x\n", "stop", Outcome("failed", "AssertionError"), "assertion"),
        ("def f(x):\n    return 1 / 0\n", "stop", Outcome("failed", "ZeroDivisionError"), "other"),
    ],
)
def test_error_taxonomy(code, finish, outcome, expected):
    assert classify(code, finish, outcome) == expected


def test_syntax_check_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    assert syntax_class(f"open({str(marker)!r}, 'w').write('x')\n") is None
    assert not marker.exists()
