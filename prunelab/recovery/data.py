"""Training examples in TRL's conversational prompt-completion form: the loss falls on the assistant turn only, and
the template's end-of-turn token is inside the completion, so the model learns to stop. Examples longer than
`max_length` are left out (and counted), never truncated: a cut-off answer would teach the model to stop mid-way,
or never. Paired (`paired: true`), both arms train on the same prompts: those with a kept SGR response and an original
answer that both fit, so the arms differ in their answers alone."""

import json

from prunelab.errors import DataError


def completion_message(answer: str, reasoning: str | None, reasoning_format: str | None) -> dict:
    """The assistant turn a response trains as: its answer, after its reasoning where it has one, written the way
    the model's chat template takes it (think tags inline, as Qwen3's template splits them; harmony's `thinking`)."""
    if not reasoning:
        return {"role": "assistant", "content": answer}
    from prunelab.generation.reasoning import HARMONY, THINK_TAGS

    if reasoning_format == HARMONY.name:
        return {"role": "assistant", "content": answer, "thinking": reasoning}
    return {"role": "assistant", "content": f"{THINK_TAGS.start}\n{reasoning}\n{THINK_TAGS.end}\n\n{answer}"}


def training_examples(rows: list[dict], responses: str, reasoning: str = "keep",
                      reasoning_format: str | None = None) -> tuple[list[dict], int]:
    """(examples, rows without that response): `responses` is "sgr" (the base model's answers) or "reference"
    (the corpus's original answers, the external-data baseline). A response's reasoning (a reasoning model's
    corpus) is trained on with `reasoning: keep`, left out with `drop`."""
    out, missing = [], 0
    for r in rows:
        answer = r["response"] if responses == "sgr" else r["reference"]
        if not answer or not answer.strip():
            missing += 1
            continue
        thought = r.get("reasoning") if responses == "sgr" and reasoning == "keep" else None
        out.append({"id": r["id"], "prompt": json.loads(r["messages"]),
                    "completion": [completion_message(answer, thought, reasoning_format)]})
    return out, missing


def check_reasoning_kept(examples: list[dict], rows: list[dict], tokenizer, corpus: str) -> None:
    """With `reasoning: keep`, the chat template must write a response's reasoning into its training text: some
    (DeepSeek-R1's) drop the reasoning of every assistant turn, which would train on answers alone unannounced."""
    thought = {r["id"]: r["reasoning"] for r in rows if r.get("reasoning")}
    example = next((e for e in examples if e["id"] in thought), None)
    if example is None:
        return
    text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    if thought[example["id"]].strip()[:64] not in text:
        raise DataError(f"recover.reasoning is keep, but the chat template drops the reasoning of an assistant turn "
                        f"(corpus {corpus!r}, row {example['id']!r}: its reasoning is not in the rendered training "
                        "text); set recover.reasoning: drop to train on the answers alone")


def example_length(tokenizer, example: dict) -> int:
    ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True, return_dict=True)
    return len(ids["input_ids"])


def fit_length(examples: list[dict], tokenizer, max_length: int, corpus: str) -> tuple[list[dict], int]:
    """(examples of at most `max_length` tokens, how many were longer)."""
    kept = [e for e in examples if example_length(tokenizer, e) <= max_length]
    if not kept:
        raise DataError(f"no training example of corpus {corpus!r} fits training.max_length={max_length} tokens "
                        f"({len(examples)} examples); raise max_length")
    return kept, len(examples) - len(kept)


def select_examples(corpus: str, responses: str, tokenizer, max_length: int, paired: bool = False,
                    reasoning: str = "keep"):
    """(examples, counts): the prompt-completion examples that training on `responses` uses from a finished corpus
    directory, and how many rows were left out and why (the one selection of the recover stage and its workers)."""
    from prunelab.sgr.shards import read_corpus

    rows, meta = read_corpus(corpus, responses)
    examples, missing = training_examples(rows, responses, reasoning, meta.get("reasoning_format"))
    if reasoning == "keep":
        check_reasoning_kept(examples, rows, tokenizer, corpus)
    examples, too_long = fit_length(examples, tokenizer, max_length, corpus)
    counts = {"corpus_rows": len(rows), "without_response": missing, "longer_than_max_length": too_long}
    if paired:
        other = "reference" if responses == "sgr" else "sgr"
        other_rows, _ = read_corpus(corpus, other)
        usable, _ = training_examples(other_rows, other)
        shared = {e["id"] for e in usable if example_length(tokenizer, e) <= max_length}
        counts["not_shared"] = sum(e["id"] not in shared for e in examples)
        examples = [e for e in examples if e["id"] in shared]
        if not examples:
            raise DataError(f"corpus {corpus!r}: no prompt has both a kept SGR response and an original answer "
                            f"within training.max_length={max_length} tokens, which paired training needs; raise "
                            "max_length or sampling.max_new_tokens, or train the arms unpaired (paired: false)")
    return examples, {"examples": len(examples), **counts}
