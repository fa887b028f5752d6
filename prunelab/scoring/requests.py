"""Log-likelihood requests in lm-eval's form, tokenized the way lm-eval's HF backend tokenizes them.

A `Request` is one context with one or more continuations (the choices of a multiple-choice item, or the ten digit
tokens of the arithmetic probe). The engine runs the context once and every continuation on top of it, and can run a
prefix shared by many requests (a fixed few-shot block) once for all of them.
"""

from dataclasses import dataclass

from prunelab.errors import DataError


@dataclass(frozen=True)
class Request:
    context: tuple[int, ...]  # context token ids, BOS included where the tokenizer adds one
    continuations: tuple[tuple[int, ...], ...]  # each non-empty
    prefix_len: int = 0  # leading context tokens equal to a prefix shared by other requests

    def __post_init__(self):
        if not self.context:
            raise DataError("a request has an empty context; give at least one token (lm-eval uses BOS or EOS)")
        if not self.continuations or any(len(c) == 0 for c in self.continuations):
            raise DataError("a request needs at least one continuation, and each continuation at least one token")
        if not 0 <= self.prefix_len < len(self.context):
            raise DataError(f"prefix_len {self.prefix_len} must be below the context length {len(self.context)}")


@dataclass(frozen=True)
class Scores:
    """Per continuation: summed log-probability and whether greedy decoding would produce it (lm-eval's pair)."""

    logprobs: tuple[float, ...]
    greedy: tuple[bool, ...]


def encode(tokenizer, text: str) -> list[int]:
    """Tokenizes like lm-eval's HFLM.tok_encode with default settings (the tokenizer decides about BOS)."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(text)["input_ids"]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair` for causal models: trailing spaces move to the continuation, whole-string split."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def _prefix_len(context_ids: list[int], prefix_ids: list[int] | None) -> int:
    # Share the prefix only where tokenization agrees; otherwise this request runs its context in full.
    if prefix_ids and len(prefix_ids) < len(context_ids) and context_ids[: len(prefix_ids)] == prefix_ids:
        return len(prefix_ids)
    return 0


def choice_request(tokenizer, context: str, choices: list[str], shared_prefix: str | None = None) -> Request:
    """A multiple-choice request: context + each choice, tokenized exactly as lm-eval does."""
    if not context:
        raise DataError("empty context in a multiple-choice request")
    pairs = [encode_pair(tokenizer, context, choice) for choice in choices]
    context_ids = pairs[0][0]
    if any(ctx != context_ids for ctx, _ in pairs):  # cannot happen with lm-eval's split; guard the invariant
        raise DataError(f"choices of one item tokenize to different contexts: {context!r}")
    if any(len(cont) == 0 for _, cont in pairs):
        raise DataError(f"a choice tokenizes to no tokens after context {context[-40:]!r}: {choices!r}")
    prefix_ids = encode(tokenizer, shared_prefix) if shared_prefix else None
    return Request(tuple(context_ids), tuple(tuple(c) for _, c in pairs), _prefix_len(context_ids, prefix_ids))


def next_token_request(tokenizer, context: str, token_ids: list[int], shared_prefix: str | None = None) -> Request:
    """Scores single next tokens after `context` as written (no trailing-space move): the probe's digit choice."""
    context_ids = encode(tokenizer, context)
    prefix_ids = encode(tokenizer, shared_prefix) if shared_prefix else None
    return Request(tuple(context_ids), tuple((t,) for t in token_ids), _prefix_len(context_ids, prefix_ids))
