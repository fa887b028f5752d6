"""Degeneration of generated text as the paper's script computes it (`analysis/calc_self_bleu.py` of
safal312/on-the-limits-of-layer-pruning): repetition (Rep-n) and intra-response Self-BLEU-4.

- Text is lowercased and tokenised with NLTK: Punkt sentences, then the Treebank word tokenizer within each
  (what `nltk.word_tokenize` does).
- Rep-n (Welleck et al., 2019): 1 - distinct n-grams / all n-grams of one response. A response with fewer than n
  tokens is skipped (NaN here, so a task's mean leaves it out), never scored 0.
- Self-BLEU-4 within a response: each sentence of 4 or more tokens is scored with BLEU-4 (NLTK, smoothing method 1)
  against the response's other sentences of 4 or more tokens; the response's score is the mean over the sentences
  scored. A response with fewer than 2 sentences, or no sentence scored, is skipped (NaN).
- The script reports Rep-n x 100; here it is a share (0-1), as Self-BLEU is.

Punkt's English model is a data download that offline machines lack (`nltk.download("punkt_tab")`); without it,
sentences are split by Punkt's algorithm untrained (the same rules without the learned abbreviation list, so "Mr."
may end a sentence). `SENTENCES` says which was used.
"""

import math
from functools import cache

from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

SHORTEST_SENTENCE = 4  # tokens: BLEU-4 needs a 4-gram on both sides


@cache
def _splitter():
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return "punkt (english)", lambda text: nltk.sent_tokenize(text, language="english")
    except LookupError:
        return "punkt (untrained: no English data installed)", PunktSentenceTokenizer().tokenize


def sentences_of(text: str) -> list[list[str]]:
    """The lowercased text's sentences, each a list of word tokens (`nltk.word_tokenize` per sentence)."""
    words = NLTKWordTokenizer()
    return [words.tokenize(s) for s in _splitter()[1](text.lower())]


def tokens_of(text: str) -> list[str]:
    return [w for s in sentences_of(text) for w in s]


def rep_n(text: str, n: int) -> float:
    tokens = tokens_of(text)
    if len(tokens) < n:
        return math.nan
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def self_bleu4(text: str) -> float:
    """Mean BLEU-4 of each sentence against the other sentences of the same response (see the module docstring)."""
    sents = sentences_of(text)
    if len(sents) < 2:
        return math.nan
    smooth = SmoothingFunction().method1
    scores = []
    for i, hypothesis in enumerate(sents):
        references = [s for s in sents[:i] + sents[i + 1 :] if len(s) >= SHORTEST_SENTENCE]
        if len(hypothesis) < SHORTEST_SENTENCE or not references:
            continue
        scores.append(sentence_bleu(references, hypothesis, weights=(0.25,) * 4, smoothing_function=smooth))
    return sum(scores) / len(scores) if scores else math.nan


def degeneration(text: str) -> dict[str, float]:
    return {"rep2": rep_n(text, 2), "rep3": rep_n(text, 3), "rep4": rep_n(text, 4), "self_bleu4": self_bleu4(text)}


def sentence_splitter() -> str:
    """Which sentence splitter this machine uses (recorded with the metrics)."""
    return _splitter()[0]
