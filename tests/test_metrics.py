"""Degeneration metrics and the code error taxonomy on hand-checked cases."""

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from prunelab.metrics.code_errors import Outcome, classify, syntax_class
from prunelab.metrics.degeneration import degeneration, rep_n, self_bleu4, sentences_of, tokens_of


def test_rep_n_is_the_papers_formula_on_its_tokens():
    # the paper's script: nltk.word_tokenize(text.lower()), then 1 - unique / all n-grams
    assert tokens_of("Add 2, then THE rest.") == ["add", "2", ",", "then", "the", "rest", "."]
    assert rep_n("a b c d", 2) == 0.0
    assert rep_n("A b a B a b", 2) == pytest.approx(1 - 2 / 5)  # lowercased: 5 bigrams, 2 distinct
    # shorter than n tokens: skipped (NaN, left out of a task's mean), never scored 0 as if it did not repeat
    assert math.isnan(rep_n("a", 2)) and math.isnan(rep_n("a b c", 4)) and math.isnan(rep_n("", 2))
    assert rep_n("a b c", 3) == 0.0


def test_self_bleu_is_intra_response_and_skips_short_sentences():
    looping = "The answer is 4 today. The answer is 4 today. The answer is 4 today."
    varied = "First add the numbers together. Then check the carry digit! Finally write 42 down there."
    assert self_bleu4(looping) == pytest.approx(1.0)
    assert self_bleu4(varied) < 0.2
    s = sentences_of(varied)
    assert [len(x) for x in s] == [6, 6, 6] and s[0][0] == "first"  # lowercased, punctuation a token
    smooth = SmoothingFunction().method1
    expected = sum(sentence_bleu(s[:i] + s[i + 1:], x, weights=(0.25,) * 4, smoothing_function=smooth)
                   for i, x in enumerate(s)) / 3
    assert self_bleu4(varied) == pytest.approx(expected)
    # fewer than 2 sentences, or no sentence of 4 tokens with another of 4 to compare with: skipped (NaN)
    assert math.isnan(self_bleu4("Only one sentence here."))
    assert math.isnan(self_bleu4("Yes. No. Maybe so."))
    # a short sentence is neither scored nor a reference: the score is the long ones' against each other
    with_short = "The answer is 4 today. Ok. The answer is 4 today."
    assert self_bleu4(with_short) == pytest.approx(1.0)
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
