"""What a generation backend takes and returns. Prompts travel as token ids (the task tokenizes them once, chat
template included), so every backend sees exactly the same input; the text is kept for the record."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """Greedy when temperature is 0; otherwise sampled, seeded (`seed`) so a rerun draws the same samples."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()  # the output is cut before the first of these; finish_reason "stop"

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationRequest:
    id: str
    prompt: str
    prompt_ids: tuple[int, ...]


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

    def record(self) -> dict:
        return {"item_id": self.id, "prompt": self.prompt, "output": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "latency_s": self.latency_s,
                "reused_tokens": self.reused_tokens}


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` cut before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
