"""What a generation backend takes and returns. Prompts travel as token ids (the task tokenizes them once, chat
template included), so every backend sees exactly the same input; the text is kept for the record."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """Greedy when temperature is 0; otherwise sampled, seeded (`seed`) so a rerun draws the same samples."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()  # the output is cut before the first of these; finish_reason "stop"
    samples: int = 1  # generations per item (each its own random stream: request id "<item>#<j>")
    # a reasoning model's budgets (`prunelab.generation.reasoning.Budgets`): max_new_tokens is their total, and each
    # output is cut at them; None: the output is the answer
    reasoning: Any = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationRequest:
    id: str
    prompt: str
    prompt_ids: tuple[int, ...]
    opens_reasoning: bool = False  # the prompt leaves the model inside its reasoning (an opening tag rendered)


@dataclass(frozen=True)
class Generation:
    """One generation, as recorded: the output text (cut at a stop string), why it ended ("stop": end-of-sequence
    token or stop string; "length": `max_new_tokens` reached), token counts, and the latency of the batch that
    produced it (the multi-candidate engine decodes all candidates in one batch: each gets its share of the call's
    time, in proportion to the tokens it decoded). `reused_tokens`: how many leading output tokens were taken from the base model's output instead of
    decoded (the multi-candidate engine; 0 elsewhere)."""

    id: str
    prompt: str
    text: str
    finish_reason: str
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    reused_tokens: int = 0
    reasoning: str | None = None  # a reasoning run's reasoning text (None: not one); `text` is then the answer
    thinking_tokens: int = 0  # of output_tokens, the reasoning's
    cut_in_thinking: bool = False  # the reasoning did not end within its budget: there is no answer

    def record(self) -> dict:
        out = {"item_id": self.id, "prompt": self.prompt, "output": self.text, "finish_reason": self.finish_reason,
               "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "latency_s": self.latency_s,
               "reused_tokens": self.reused_tokens}
        if self.reasoning is not None:
            out |= {"reasoning": self.reasoning, "thinking_tokens": self.thinking_tokens,
                    "cut_in_thinking": self.cut_in_thinking}
        return out


def make_generation(request: GenerationRequest, ids: Sequence[int], tokenizer, sampling: Sampling, reason: str,
                    latency: float, reused: int = 0) -> Generation:
    """A backend's output as recorded: `ids` (without the end-of-sequence token) decoded and cut before the first
    stop string; a reasoning run's split at its budgets into reasoning and answer (`generation.reasoning`)."""
    if sampling.reasoning is None:
        text, _ = apply_stop(tokenizer.decode(list(ids), skip_special_tokens=True), sampling.stop)
        return Generation(request.id, request.prompt, text, reason, len(request.prompt_ids), len(ids), latency,
                          reused_tokens=min(reused, len(ids)))
    from prunelab.generation.reasoning import finish_with_reasoning

    text, reasoning, reason, answer_n, thinking_n, cut = finish_with_reasoning(
        tokenizer, ids, request.opens_reasoning, sampling.reasoning, reason, sampling.stop)
    return Generation(request.id, request.prompt, text, reason, len(request.prompt_ids), answer_n + thinking_n,
                      latency, reused_tokens=min(reused, answer_n + thinking_n), reasoning=reasoning,
                      thinking_tokens=thinking_n, cut_in_thinking=cut)


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` cut before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
