"""Which prompts the base model answers: a seeded sample of the corpus, each rendered with the chat template, with
duplicates, over-long prompts and prompts that contain a benchmark test item left out (and counted)."""

import json
from dataclasses import dataclass, field

from prunelab.data.prompts import Prompt, load_prompts
from prunelab.data.sampling import sample_indices
from prunelab.errors import DataError
from prunelab.generation.reasoning import opens_reasoning
from prunelab.tasks.overlap import find_overlaps
from prunelab.tasks.training_prompts import parse_task_source, task_prompts


@dataclass(frozen=True)
class PlannedPrompt:
    prompt: Prompt
    prompt_ids: tuple[int, ...]  # the chat-template rendering, tokenized once, as every backend receives it
    opens_reasoning: bool = False  # the rendering leaves the model inside its reasoning (an opening tag written)


@dataclass
class Selection:
    prompts: list[PlannedPrompt]
    counts: dict[str, int] = field(default_factory=dict)


def corpus_prompts(source: str) -> list[Prompt]:
    """The prompts of `prompts.source`: a task's training split asked as the task asks (`task:NAME[@DATASET]`), or
    a prompt corpus (`load_prompts`)."""
    task = parse_task_source(source)
    return task_prompts(*task) if task else load_prompts(source)


def render(tokenizer, prompt: Prompt, template_kwargs: dict | None = None) -> list[int]:
    """Prompt token ids under the tokenizer's chat template, generation prompt added, given `template_kwargs` (a
    reasoning model's switch); special tokens come from the template alone (a second BOS would shift every Llama 3,
    Gemma and Mistral answer)."""
    out = tokenizer.apply_chat_template(prompt.chat(), add_generation_prompt=True, tokenize=True, return_dict=True,
                                        **(template_kwargs or {}))
    return list(out["input_ids"])


def select_prompts(prompts: list[Prompt], tokenizer, limit: int | None, seed: int, max_prompt_tokens: int,
                   exclude_tasks: list[str], source: str = "corpus", template_kwargs: dict | None = None,
                   reasoning=None) -> Selection:
    """The first `limit` prompts of a seeded shuffle that are new, short enough and disjoint from the test tasks,
    rendered with `template_kwargs`; `reasoning` (the model's `ReasoningFormat`, None: it does not reason here)
    says whether a rendering leaves the model inside its reasoning.

    Prompts are examined in chunks (a few times what is still missing), so a 256-prompt sample of a 17k-prompt corpus
    renders and checks a few hundred prompts, not all of them."""
    order = sample_indices(len(prompts), None, seed)
    counts = {"examined": 0, "duplicate": 0, "too_long": 0, "test_overlap": 0}
    seen: set[str] = set()
    kept: list[PlannedPrompt] = []
    pos = 0
    while pos < len(order) and (limit is None or len(kept) < limit):
        want = len(order) if limit is None else max(32, 2 * (limit - len(kept)))
        chunk = [prompts[i] for i in order[pos : pos + want]]
        pos += len(chunk)
        counts["examined"] += len(chunk)
        fresh = []
        for p in chunk:
            key = json.dumps(p.messages)
            if key in seen:
                counts["duplicate"] += 1
            else:
                seen.add(key)
                fresh.append(p)
        overlaps = find_overlaps([p.text for p in fresh], exclude_tasks)
        counts["test_overlap"] += len(overlaps)
        for i, p in enumerate(fresh):
            if i in overlaps:
                continue
            ids = render(tokenizer, p, template_kwargs)
            if len(ids) > max_prompt_tokens:
                counts["too_long"] += 1
                continue
            opens = reasoning is not None and opens_reasoning(tokenizer.decode(ids), reasoning)
            kept.append(PlannedPrompt(p, tuple(ids), opens))
            if limit is not None and len(kept) == limit:
                break
    if not kept:
        raise DataError(f"no prompt of {source!r} is left after filtering ({len(prompts)} in the corpus; examined "
                        f"{counts['examined']}: {counts['duplicate']} duplicates, {counts['too_long']} longer than "
                        f"prompts.max_prompt_tokens={max_prompt_tokens}, {counts['test_overlap']} containing a test "
                        "item); raise max_prompt_tokens or choose another corpus")
    counts["selected"] = len(kept)
    return Selection(kept, counts)
