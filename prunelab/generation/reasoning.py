"""Reasoning models: how a chat template turns thinking on or off, where the reasoning ends in an output, and the
thinking and answer budgets.

Two formats are known, read from the chat template itself:

    think tags  <think> ... </think> then the answer (Qwen3, Qwen3.5, DeepSeek-R1 distills, OLMo-3-Think, SmolLM3);
                the switch, where the template has one, is `enable_thinking`
    harmony     <|channel|>analysis<|message|> ... <|end|><|start|>assistant<|channel|>final<|message|> then the answer
                (gpt-oss); it always reasons, `reasoning_effort` (low, medium, high) says how much

`thinking: default` renders the template as it is; `on` / `off` pass the switch and are refused, naming the template,
where there is none (or, for harmony, where the model cannot stop reasoning).

Budgets: an output that reasons gets `thinking` tokens for its reasoning (the end marker included) and then
`answer` tokens for its answer. The backends generate up to `thinking + answer` tokens and `split` cuts the output
at the two budgets. Decoding is causal, so this gives exactly the tokens a run stopped at each budget would give;
what it costs is the tokens generated past a budget, never a different output. An output whose reasoning does not
end within its budget has no answer and is recorded as cut inside its thinking (`cut_in_thinking`), not as a wrong
answer that failed to parse.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from prunelab.errors import ConfigError

THINKING_MODES = ("default", "on", "off")


@dataclass(frozen=True)
class ReasoningFormat:
    name: str
    start: str  # what opens the reasoning
    end: str  # what ends it: the answer follows
    switch: str | None  # the template variable that turns thinking on or off (None: it has none)
    can_stop: bool = True  # the model can answer without reasoning

    def template_kwargs(self, mode: str, effort: str | None, where: str) -> dict:
        """What `apply_chat_template` is given for thinking `mode` (and gpt-oss's effort); a ConfigError naming
        `where` (the template's owner) when the template cannot do what is asked."""
        if mode not in THINKING_MODES:
            raise ConfigError(f"generation.thinking is {mode!r}; allowed: {', '.join(THINKING_MODES)}")
        out = {}
        if effort is not None:
            if self.name != HARMONY.name:
                raise ConfigError(f"generation.reasoning_effort applies to harmony templates (gpt-oss); {where}'s "
                                  f"template uses {self.name}")
            out["reasoning_effort"] = effort
        if mode == "default":
            return out
        if self.switch == "enable_thinking":
            return {**out, "enable_thinking": mode == "on"}
        if mode == "off" and not self.can_stop:
            raise ConfigError(f"generation.thinking is off, but {where} ({self.name}) always reasons; its template "
                              "only sets how much (generation.reasoning_effort: low, medium, high)")
        if mode == "on" and not self.can_stop:
            return out
        raise ConfigError(f"generation.thinking is {mode}, but {where}'s chat template has no switch for thinking "
                          "(no enable_thinking): use thinking: default")


THINK_TAGS = ReasoningFormat("think tags", "<think>", "</think>", "enable_thinking")
# harmony's reasoning is the analysis message; the answer is the final one, which starts a new assistant message
HARMONY = ReasoningFormat("harmony", "<|channel|>analysis<|message|>",
                          "<|end|><|start|>assistant<|channel|>final<|message|>", None, can_stop=False)


def reasoning_format(template: str | None) -> ReasoningFormat | None:
    """The format a chat template's model reasons in, or None for a model that does not reason."""
    if not template:
        return None
    if "<|channel|>" in template and "reasoning_effort" in template:
        return HARMONY
    if "</think>" in template:
        switch = "enable_thinking" if "enable_thinking" in template else None
        return ReasoningFormat(THINK_TAGS.name, THINK_TAGS.start, THINK_TAGS.end, switch)
    return None


def check_thinking(tokenizer, mode: str, effort: str | None, where: str) -> ReasoningFormat | None:
    """The model's reasoning format, after checking that its template can do what `mode` and `effort` ask (a
    ConfigError otherwise, before anything is written)."""
    fmt = reasoning_format(getattr(tokenizer, "chat_template", None))
    if fmt is None:
        if mode != "default" or effort is not None:
            field = "thinking" if mode != "default" else "reasoning_effort"
            raise ConfigError(f"generation.{field} is set, but {where}'s chat template has no reasoning format "
                              "(no <think> tags, no harmony channels): it does not reason; use thinking: default")
        return None
    fmt.template_kwargs(mode, effort, where)
    return fmt


def opens_reasoning(prompt: str, fmt: ReasoningFormat | None) -> bool:
    """Whether a rendered prompt leaves the model inside its reasoning (a template that writes the opening tag
    itself, as DeepSeek-R1's does)."""
    return fmt is not None and prompt.rfind(fmt.start) > prompt.rfind(fmt.end)


@dataclass(frozen=True)
class Budgets:
    """What the backends need to split an output: the format's markers and the two budgets, in tokens."""

    start: str
    end: str
    thinking: int
    answer: int

    @property
    def total(self) -> int:
        return self.thinking + self.answer


@dataclass(frozen=True)
class Split:
    reasoning: list[int]  # the reasoning's tokens, markers included (empty: no reasoning)
    answer: list[int]
    cut_in_thinking: bool  # the reasoning did not end within its budget: no answer
    answer_cut: bool  # the answer reached its budget


def _find(ids: Sequence[int], part: Sequence[int]) -> int | None:
    n = len(part)
    return next((i for i in range(len(ids) - n + 1) if list(ids[i:i + n]) == list(part)), None) if n else None


def split(ids: Sequence[int], start_ids: Sequence[int], end_ids: Sequence[int], opens: bool, budgets: Budgets,
          hit_limit: bool) -> Split:
    """An output's tokens cut at its budgets. `opens`: the prompt left the model inside its reasoning;
    `hit_limit`: generation stopped at `budgets.total` tokens rather than ending."""
    ids = list(ids)
    reasons = opens or (bool(start_ids) and ids[:len(start_ids)] == list(start_ids))
    if not reasons:
        return Split([], ids[:budgets.answer], False, len(ids) > budgets.answer or (len(ids) == budgets.answer
                                                                                  and hit_limit))
    at = _find(ids, end_ids)
    if at is None or at + len(end_ids) > budgets.thinking:
        # an output that ended inside its reasoning before the budget has no answer either; only the budget cuts
        cut = len(ids) >= budgets.thinking
        return Split(ids[:budgets.thinking], [], cut, False)
    after = ids[at + len(end_ids):]
    return Split(ids[:at + len(end_ids)], after[:budgets.answer], False,
                 len(after) > budgets.answer or (len(after) == budgets.answer and hit_limit))


def marker_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def finish_with_reasoning(tokenizer, ids: Sequence[int], opens: bool, budgets: Budgets, reason: str, stop=()):
    """(answer text, reasoning text, finish reason, answer tokens, reasoning tokens, cut inside thinking) of an
    output that may reason: cut at its budgets, the answer cut before its first stop string."""
    from prunelab.generation.base import apply_stop

    start, end = marker_ids(tokenizer, budgets.start), marker_ids(tokenizer, budgets.end)
    parts = split(ids, start, end, opens, budgets, reason == "length")
    text, _ = apply_stop(tokenizer.decode(parts.answer, skip_special_tokens=True), stop)
    body = parts.reasoning  # its text without the markers (think tags are ordinary tokens: decoding keeps them)
    if start and body[:len(start)] == start:
        body = body[len(start):]
    if end and body[-len(end):] == end:
        body = body[:-len(end)]
    reasoning = tokenizer.decode(body, skip_special_tokens=True)
    if parts.cut_in_thinking or parts.answer_cut:
        reason = "length"
    return text.lstrip() if parts.reasoning else text, reasoning.strip(), reason, len(parts.answer), \
        len(parts.reasoning), parts.cut_in_thinking


__all__ = ["Budgets", "HARMONY", "THINKING_MODES", "THINK_TAGS", "ReasoningFormat", "Split",
           "check_thinking", "finish_with_reasoning", "marker_ids", "opens_reasoning", "reasoning_format", "split"]
