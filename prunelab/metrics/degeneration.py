"""Degeneration of generated text: repetition (Rep-n) and intra-response Self-BLEU-4.

Rep-n (Welleck et al., 2019): 1 - distinct n-grams / all n-grams of one response; 0 for no repetition, towards 1
for a response that loops. Self-BLEU-4 within a response: each sentence scored with BLEU-4 against the response's
other sentences as references (NLTK, smoothing method 1), averaged; high when the response repeats itself.
Tokens are whitespace-separated words; sentences are split on ., ! and ? followed by space or newline, and on
newlines (NLTK's punkt splitter needs a data download that offline machines do not have).
"""

import re

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def rep_n(text: str, n: int) -> float:
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def sentences(text: str) -> list[list[str]]:
    return [s.split() for s in _SENTENCE_END.split(text) if s.strip()]


def self_bleu4(text: str) -> float:
    """Mean BLEU-4 of each sentence against the other sentences of the same response; 0 with fewer than 2."""
    sents = sentences(text)
    if len(sents) < 2:
        return 0.0
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(sents[:i] + sents[i + 1 :], s, smoothing_function=smooth) for i, s in enumerate(sents)]
    return sum(scores) / len(scores)


def degeneration(text: str) -> dict[str, float]:
    return {"rep2": rep_n(text, 2), "rep3": rep_n(text, 3), "rep4": rep_n(text, 4), "self_bleu4": self_bleu4(text)}
