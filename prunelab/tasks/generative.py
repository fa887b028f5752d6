"""What a generative task is: items with a tokenized prompt, decoding settings, and a scorer over generations.

Every generative task also reports, per item, degeneration (Rep-2/3/4, intra-response Self-BLEU-4), whether the
output was cut at the token limit (`truncated`), and its length in tokens.

Prompts: for a tokenizer with a chat template (instruct models) the prompt is a user turn (few-shot examples as
earlier turns) rendered by the template, unless `chat="off"`; otherwise a plain completion prompt with the
tokenizer's default special tokens, as lm-eval builds it.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prunelab.data.benchmarks import Benchmark, load_benchmark
from prunelab.errors import ConfigError, DataError
from prunelab.generation.base import Generation, GenerationRequest, Sampling
from prunelab.metrics.degeneration import degeneration
from prunelab.tasks.base import GENERATIVE_KIND, sample_indices

CHAT_MODES = ("auto", "on", "off")
# what a task's scorer read from each output, stored beside the generation (`score_outputs` puts it under SAMPLE_KEY):
# the extracted answer or the assembled program, the gold answer, the outcome, its message, the error class
SAMPLE_KEY = "_sample"
SAMPLE_FIELDS = ("scored", "gold", "outcome", "outcome_message", "error_class")


@dataclass(frozen=True)
class GenItem:
    id: str
    request: GenerationRequest
    reference: dict[str, Any] = field(compare=False, hash=False)


def uses_chat(tokenizer, chat: str) -> bool:
    if chat not in CHAT_MODES:
        raise ConfigError(f"chat is {chat!r}; allowed: {', '.join(CHAT_MODES)}")
    has_template = getattr(tokenizer, "chat_template", None) is not None
    if chat == "on" and not has_template:
        raise ConfigError("chat is 'on' but the model's tokenizer has no chat template; use chat: auto or off")
    return has_template and chat != "off"


def render(tokenizer, turns: Sequence[tuple[str, str]], completion_prompt: str, chat: bool,
           template_kwargs: dict | None = None) -> tuple[str, list[int]]:
    """The prompt text and its token ids: the chat template over `turns` (role, text), given `template_kwargs` (a
    reasoning model's thinking switch), or `completion_prompt`."""
    if chat:
        messages = [{"role": role, "content": text} for role, text in turns]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                             **(template_kwargs or {}))
        return text, tokenizer(text, add_special_tokens=False)["input_ids"]
    return completion_prompt, tokenizer(completion_prompt)["input_ids"]


class GenerativeTask:
    """Shared by the generative tasks: data, seeded subsampling with disjoint few-shot examples, decoding settings,
    and the per-item metrics every generative task reports. Subclasses define `data` (their benchmark's
    `Benchmark`: where its rows come from, its columns, the text that identifies an item), `primary_metric`,
    `task_metrics`, `default_max_new_tokens`, `prompt()` and `score_outputs()`."""

    kind = GENERATIVE_KIND
    name: str  # the benchmark's name, unless a subclass names itself
    data: Benchmark

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "data" in cls.__dict__ and "name" not in cls.__dict__:
            cls.name = cls.data.name
    primary_metric: str
    task_metrics: tuple[str, ...]
    default_max_new_tokens: int

    def __init__(self, limit: int | None = None, seed: int = 1234, num_fewshot: int = 0, chat: str = "auto",
                 max_new_tokens: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                 dataset: str | None = None, thinking: str = "default", thinking_budget: int = 4096,
                 reasoning_effort: str | None = None, samples: int = 1, pass_at: list[int] | None = None):
        self.limit, self.seed, self.num_fewshot, self.chat = limit, seed, num_fewshot, chat
        self.dataset = dataset
        self.max_new_tokens = max_new_tokens or self.default_max_new_tokens  # the answer's budget
        self.temperature, self.top_p = temperature, top_p
        self.thinking, self.thinking_budget, self.reasoning_effort = thinking, thinking_budget, reasoning_effort
        self.reasoning = None  # the model's reasoning format, once items() has seen its tokenizer
        self.samples, self.pass_at = samples, pass_at

    pass_fail = False  # the primary metric is 1 or 0 per output (pass@k applies)
    votes = False  # outputs give an answer that samples can vote on (maj@k)

    @property
    def metrics(self) -> tuple[str, ...]:
        from prunelab.metrics.sampled import sample_counts, sampled_metrics

        reasoning = ("thinking_tokens", "answer_tokens", "cut_in_thinking") if self.reasoning else ()
        sampled = sampled_metrics(self.primary_metric, self.samples, sample_counts(self.samples, self.pass_at),
                                  self.pass_fail, self.votes) if self.samples > 1 else ()
        return (*self.task_metrics, "truncated", "output_tokens", *reasoning, "rep2", "rep3", "rep4", "self_bleu4",
                *sampled)

    @property
    def label(self) -> str:
        """The task's name in tables (code tasks add which tests they ran)."""
        return self.name

    @property
    def source(self) -> str:
        """Where the items come from: the packaged copy, or the hub id / directory given as `dataset`."""
        if self.dataset is not None:
            return f"dataset {self.dataset!r}"
        return self.data.packaged_source

    def test_texts(self) -> list[str]:
        """The identifying text of every test item of the packaged split (all of it, not a sample): what
        calibration, selection and recovery prompts must not contain (`prunelab.tasks.overlap`)."""
        return [row[self.data.test_text] for row in load_benchmark(self.data)] if self.data.test_text else []

    def stop(self, chat: bool) -> tuple[str, ...]:
        return ()

    def shot_answer(self, row: dict) -> str:
        """The answer a chat model is shown for a row when it is a few-shot example (and what a task-aligned
        training prompt's reference answer is)."""
        raise NotImplementedError

    def sampling(self, chat: bool) -> Sampling:
        """How each item is decoded; for a reasoning model (chat), the thinking budget before the answer's."""
        if chat and self.reasoning is not None:
            from prunelab.generation.reasoning import Budgets

            budgets = Budgets(self.reasoning.start, self.reasoning.end, self.thinking_budget, self.max_new_tokens)
            return Sampling(max_new_tokens=budgets.total, temperature=self.temperature, top_p=self.top_p,
                            seed=self.seed, stop=self.stop(chat), samples=self.samples, reasoning=budgets)
        return Sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                        seed=self.seed, stop=self.stop(chat), samples=self.samples)

    def load_rows(self) -> list[dict]:
        return load_benchmark(self.data, self.dataset)

    def rows(self) -> tuple[list[dict], list[dict]]:
        """(evaluated rows, few-shot rows): a seeded sample, and few-shot examples never evaluated."""
        rows = self.load_rows()
        shots = sample_indices(len(rows), self.num_fewshot, self.seed + 1) if self.num_fewshot else []
        if len(shots) < self.num_fewshot or len(shots) >= len(rows):
            raise DataError(f"{self.name}: {len(rows)} rows cannot give {self.num_fewshot} few-shot examples and "
                            "leave items to evaluate")
        chosen = sample_indices(len(rows), self.limit, self.seed, exclude=shots)
        return [rows[i] for i in chosen], [rows[i] for i in shots]

    def check_reasoning(self, tokenizer, where: str) -> None:
        """Finds the model's reasoning format and checks the thinking settings against its template (a ConfigError
        naming `where` otherwise); sets `reasoning` (None: the model does not reason, or asks no chat)."""
        from prunelab.generation.reasoning import check_thinking

        chat = uses_chat(tokenizer, self.chat)
        if not chat and (self.thinking != "default" or self.reasoning_effort is not None):
            raise ConfigError(f"generation.thinking / reasoning_effort are set, but {self.name} asks {where} without "
                              "its chat template (tasks.chat off, or no template): thinking needs the chat template")
        fmt = check_thinking(tokenizer, self.thinking, self.reasoning_effort, where) if chat else None
        self._template_kwargs = fmt.template_kwargs(self.thinking, self.reasoning_effort, where) if fmt else {}
        # thinking off: the template closes the reasoning itself, and the output is the answer, as a plain model's
        self.reasoning = fmt if self.thinking != "off" else None

    def items(self, tokenizer) -> list[GenItem]:
        from prunelab.generation.reasoning import opens_reasoning

        chat = uses_chat(tokenizer, self.chat)
        self.check_reasoning(tokenizer, getattr(tokenizer, "name_or_path", "") or "the model")
        kwargs = self._template_kwargs
        evaluated, shots = self.rows()
        out = []
        for row in evaluated:
            turns, completion = self.prompt(row, shots)
            text, ids = render(tokenizer, turns, completion, chat, kwargs)
            request = GenerationRequest(f"{self.name}-{row['id']}", text, tuple(ids),
                                        opens_reasoning=opens_reasoning(text, self.reasoning))
            out.append(GenItem(request.id, request, {**row, "chat": chat}))
        return out

    def score(self, items: Sequence[GenItem], generations: Sequence[Generation],
              progress: bool = False) -> list[dict[str, float]]:
        """Per-item metrics, in the order of `items`."""
        return self.score_with_samples(items, generations, progress)[0]

    def score_with_samples(self, items: Sequence[GenItem], generations: Sequence[Generation],
                           progress: bool = False) -> tuple[list[dict[str, float]], list[dict[str, str | None]]]:
        """(per-item metrics, per-output samples: what was scored from each output, `SAMPLE_FIELDS`). With n samples
        per item (`generations` holds n per item, in order), each item's metrics fold its samples'
        (`metrics.sampled`)."""
        n = len(generations) // max(1, len(items))
        if n > 1:
            return self._fold(items, generations, n, progress)
        return self._score_each(items, generations, progress)

    def _fold(self, items, generations, n: int, progress: bool):
        from prunelab.metrics.sampled import fold_samples, sample_counts

        metrics, samples = self._score_each([it for it in items for _ in range(n)], generations, progress)
        ks = sample_counts(n, self.pass_at)
        invalid = getattr(self, "invalid_answer", None)
        folded = [fold_samples(metrics[i * n:(i + 1) * n],
                               [self.vote(s["scored"]) for s in samples[i * n:(i + 1) * n]] if self.votes else None,
                               self.primary_metric, ks, self.pass_fail, invalid) for i in range(len(items))]
        return folded, samples

    def vote(self, scored: str | None) -> str | None:
        """The answer a sample casts in a majority vote (what it was scored on, normalised as its grader compares)."""
        return scored

    def _score_each(self, items, generations, progress: bool):
        task_scores = self.score_outputs(items, generations, progress)
        out, samples = [], []
        for gen, scores in zip(generations, task_scores):
            scores = dict(scores)
            sample = {k: None for k in SAMPLE_FIELDS} | scores.pop(SAMPLE_KEY, {})
            common = {"truncated": float(gen.finish_reason == "length"), "output_tokens": float(gen.output_tokens)}
            if gen.reasoning is not None:
                common |= {"thinking_tokens": float(gen.thinking_tokens),
                           "answer_tokens": float(gen.output_tokens - gen.thinking_tokens),
                           "cut_in_thinking": float(gen.cut_in_thinking)}
                if gen.cut_in_thinking:  # no answer to grade: said as such, not as a wrong one that did not parse
                    sample |= {"outcome": "cut in thinking", "outcome_message": "the reasoning did not end within "
                               "generation.thinking_budget tokens; nothing was answered"}
            out.append({**scores, **common, **degeneration(gen.text)})
            samples.append(sample)
        return out, samples

    def prompt(self, row: dict, shots: list[dict]) -> tuple[list[tuple[str, str]], str]:
        """(chat turns, completion prompt) for one row, with `shots` as few-shot examples."""
        raise NotImplementedError

    def score_outputs(self, items, generations, progress: bool) -> list[dict[str, float]]:
        raise NotImplementedError
