"""The arithmetic probe: single-digit problems with three operands, in EleutherAI/arithmetic's format.

Each prompt is a fixed 3-shot prefix plus `Question: What is (a op b) op c? Answer: ` (ending `Answer: -` when the
answer is negative). The target is the answer's first digit; accuracy is whether it has the highest probability of
the ten digit tokens, and `logprob` is its log-probability over the full vocabulary. A model that has lost its
arithmetic circuit drops towards 10% here long before log-likelihood benchmarks move.
"""

import random

from prunelab.errors import DataError
from prunelab.scoring.requests import Request, Scores, encode_pair
from prunelab.tasks.base import Item

FEWSHOT = (
    "Question: What is (4 * 4) * 1? Answer: 16\n"
    "Question: What is (8 + 3) * 5? Answer: 55\n"
    "Question: What is (7 + 5) - 6? Answer: 6\n"
)
OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
DIGITS = "0123456789"
_FEWSHOT_PROBLEMS = {(4, "*", 4, "*", 1), (8, "+", 3, "*", 5), (7, "+", 5, "-", 6)}


def problems(n: int, seed: int) -> list[tuple[int, str, int, str, int]]:
    """n distinct problems (a, op1, b, op2, c), digits 0-9, none equal to a few-shot example; same seed, same list."""
    if not 1 <= n <= 10**3 * 9 - len(_FEWSHOT_PROBLEMS):
        raise DataError(f"arithmetic limit {n} is out of range; allowed: 1..{10**3 * 9 - len(_FEWSHOT_PROBLEMS)}")
    rng = random.Random(seed)
    seen, out = set(_FEWSHOT_PROBLEMS), []
    while len(out) < n:
        p = (rng.randrange(10), rng.choice("+-*"), rng.randrange(10), rng.choice("+-*"), rng.randrange(10))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def answer(p: tuple[int, str, int, str, int]) -> int:
    a, op1, b, op2, c = p
    return OPS[op2](OPS[op1](a, b), c)


def prompt(p: tuple[int, str, int, str, int]) -> str:
    a, op1, b, op2, c = p
    text = f"{FEWSHOT}Question: What is ({a} {op1} {b}) {op2} {c}? Answer: "
    return text + "-" if answer(p) < 0 else text


def digit_request(tokenizer, text: str) -> Request:
    """A next-token request over the ten digits after `text`.

    Tokenizers differ on whether the space before a number is its own token; whatever tokens all ten digit
    continuations share at the start join the context, and each digit must then be exactly one token.
    """
    pairs = [encode_pair(tokenizer, text, d) for d in DIGITS]
    context = list(pairs[0][0])
    conts = [list(c) for _, c in pairs]
    while all(len(c) > 1 for c in conts) and len({c[0] for c in conts}) == 1:
        context.append(conts[0][0])
        conts = [c[1:] for c in conts]
    if any(len(c) != 1 for c in conts) or any(ctx != pairs[0][0] for ctx, _ in pairs):
        raise DataError(
            f"the arithmetic probe needs each digit 0-9 to be one token after the prompt; this tokenizer gives "
            f"{[tokenizer.convert_ids_to_tokens(c) for c in conts]}"
        )
    prefix = tokenizer(FEWSHOT)["input_ids"]
    shared = len(prefix) if context[: len(prefix)] == prefix and len(prefix) < len(context) else 0
    return Request(tuple(context), tuple((c[0],) for c in conts), shared)


class ArithmeticProbe:
    name = "arithmetic"
    primary_metric = "acc"
    metrics = ("acc", "logprob")

    def __init__(self, limit: int | None = 64, seed: int = 1234):
        self.limit = limit or 500
        self.seed = seed

    def items(self, tokenizer) -> list[Item]:
        out = []
        for p in problems(self.limit, self.seed):
            a, op1, b, op2, c = p
            out.append(Item(f"({a}{op1}{b}){op2}{c}", (digit_request(tokenizer, prompt(p)),), int(str(abs(answer(p)))[0])))
        return out

    def score_item(self, item: Item, scores: list[Scores]) -> dict[str, float]:
        (s,) = scores
        best = max(range(10), key=lambda d: s.logprobs[d])
        return {"acc": float(best == item.gold), "logprob": s.logprobs[item.gold]}
